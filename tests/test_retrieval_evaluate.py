"""The retrieval modes through the whole evaluate job (lm-eval, the scripted test double as the
target): the embedding ranker with the packaged encoder, and prompting-based retrieval, where the
job hands the model it built to retrieval and the double answers the selection prompts."""

from __future__ import annotations

import json
import os

import pytest
from conftest import data_dir
from test_config import compose_eval
from test_evaluate_scripted import ANSWER, load_samples

from memcollab_eval.embedding import MINILM, encoder_problems


@pytest.fixture(scope="module", autouse=True)
def packaged_encoder():
    problems = encoder_problems(MINILM.name)
    if problems:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the packaged encoder: {problems[0]}")
        pytest.skip(problems[0])
    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")


def run(tmp_path, retrieval: str, *extra: str):
    from memcollab_eval.evaluation.job import evaluate

    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b",
                        f"data_dir={data_dir()}", "limit=3", "benchmarks=[gsm8k,mbpp]", f"output_dir={tmp_path}",
                        f"retrieval={retrieval}", *extra])
    cfg.target.model_args["default"] = ANSWER
    evaluate(cfg, tmp_path)
    return cfg


def test_embedding_ranker_end_to_end(tmp_path):
    run(tmp_path, "embedding")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["retrieval"]["ranker"] == "embedding" and summary["retrieval"]["min_score"] == MINILM.min_score
    got = [s["doc"]["memcollab_retrieved"] for s in load_samples(tmp_path, "gsm8k_memcollab")]
    assert any(got), "no GSM8K problem got a lesson"
    for retrieved in got:
        assert len(retrieved) <= 3
        assert all(MINILM.min_score <= r["score"] <= 1.05 for r in retrieved)  # cosine (+ subcategory bonus)


def test_prompting_retrieval_asks_the_target_model(tmp_path):
    rules = tmp_path / "rules.json"
    # The selection prompt ends with this instruction; the double picks lesson 2 then lesson 1.
    rules.write_text(json.dumps([["Answer with the numbers of the helpful lessons", "2, 1"]]))
    run(tmp_path, "prompting", f"+target.model_args.rules={rules}")
    for bench in ("gsm8k", "mbpp"):
        samples = load_samples(tmp_path, f"{bench}_memcollab")
        assert len(samples) == 3
        for s in samples:
            retrieved = s["doc"]["memcollab_retrieved"]
            assert len(retrieved) == 2  # the model's two picks, in its order: shortlist's 2nd, then its 1st
            assert retrieved[0]["score"] <= retrieved[1]["score"]
            prompt = s["arguments"]["gen_args_0"]["arg_0"]
            assert all(r["text"] in prompt for r in retrieved)
            assert "helpful lessons" not in prompt  # the selection exchange stays out of the task prompt


def test_prompting_retrieval_when_the_model_picks_none(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([["Answer with the numbers of the helpful lessons", "none"]]))
    run(tmp_path, "prompting", f"+target.model_args.rules={rules}")
    samples = load_samples(tmp_path, "gsm8k_memcollab")
    assert all(s["doc"]["memcollab_retrieved"] == [] and s["doc"]["memcollab_memory"] == "" for s in samples)
    # the run's report says why: the model was shown candidates and picked none (not a threshold or category)
    summary = next(tmp_path.rglob("summary.md")).read_text()
    assert "given no entry by the target model" in summary, summary[-1500:]
