"""The evaluate job end to end with a real model: SmolLM2-135M through llama.cpp, offline,
one problem of each benchmark, with and without the demo bank."""

from __future__ import annotations

import json

import pytest
from conftest import data_dir, require_smollm2
from test_config import compose_eval
from test_evaluate_scripted import load_samples


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    require_smollm2()
    from memcollab_eval.evaluation.job import evaluate

    out = tmp_path_factory.mktemp("real")
    cfg = compose_eval(["+target=smollm2_135m", "+bank=demo_handmade", "retrieval=no_model_filter", f"data_dir={data_dir()}", "limit=1",
                        "max_gen_toks=96", f"output_dir={out}", "+target.model_args.n_threads=1"])
    return out, evaluate(cfg, out)


def test_memory_reaches_the_real_models_prompt_and_verifiers_score_it(real_run):
    run_dir, rows = real_run
    assert [r.n for r in rows] == [1, 1, 1, 1]
    injected = 0
    for bench in ("math500", "gsm8k", "mbpp", "humaneval"):
        (plain,) = load_samples(run_dir, f"{bench}_nomemory")
        (mem,) = load_samples(run_dir, f"{bench}_memcollab")
        prompt = mem["arguments"]["gen_args_0"]["arg_0"]
        assert "<|im_start|>" in prompt  # SmolLM2's own chat template rendered the prompt
        for sample in (plain, mem):
            verdict = sample["doc"]["memcollab_verdict"]
            assert verdict["status"] in {"pass", "fail", "no_answer", "timeout"}
            assert sample["acc"] == (1.0 if verdict["status"] == "pass" else 0.0)
            assert sample["resps"][0][0].strip(), "the model produced no text"
        if mem["doc"]["memcollab_retrieved"]:  # a JSON list of the entries (text, sources, id, score)
            injected += 1
            assert mem["doc"]["memcollab_memory"].strip() in prompt
            assert "enforce" not in plain["arguments"]["gen_args_0"]["arg_0"]
    assert injected >= 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["generation_requests"] == 8 and 0.0 <= summary["truncation_rate"] <= 1.0


def test_the_run_record_cites_the_model_file(real_run):
    """The embedded GGUF is cited by its pinned sha256 (verified when it was assembled), and the
    record has llama.cpp's speed and the sampler settings it filled in for the greedy requests."""
    from memcollab_eval.models.embedded import EMBEDDED_MODELS

    run_dir, _ = real_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "llama_cpp"
    assert summary["model"]["sha256"] == EMBEDDED_MODELS["smollm2_135m"].sha256
    assert summary["model"]["path"].endswith(EMBEDDED_MODELS["smollm2_135m"].filename)
    gen = summary["generation"]
    assert gen["completion_tokens"] > 0 and gen["tokens_per_second"] > 0 and gen["tokens_per_second_per_request"] > 0
    defaults = summary["sampling"]["backend_defaults"]
    assert defaults["temperature"] == 0.0 and defaults["top_k"] == 0 and defaults["repeat_penalty"] == 1.0
    assert (run_dir / "report.html").is_file()


def test_prompting_retrieval_with_the_real_model(tmp_path):
    """``retrieval=prompting`` hands the llama.cpp model to retrieval, inside the task config that
    lm-eval deep-copies: the run must go through with the one model (its locks and context cannot
    be copied), and the model's picks, or none, reach the memory twin's prompt."""
    require_smollm2()
    from memcollab_eval.embedding import MINILM, encoder_problems
    from memcollab_eval.evaluation.job import evaluate

    if encoder_problems(MINILM.name):
        pytest.skip(encoder_problems(MINILM.name)[0])
    cfg = compose_eval(["+target=smollm2_135m", "+bank=demo_handmade", "retrieval=prompting", f"data_dir={data_dir()}",
                        "limit=2", "benchmarks=[gsm8k]", "max_gen_toks=48", f"output_dir={tmp_path}",
                        "+target.model_args.n_threads=1"])
    (row,) = evaluate(cfg, tmp_path)
    assert row.n == 2
    for mem in load_samples(tmp_path, "gsm8k_memcollab"):
        prompt = mem["arguments"]["gen_args_0"]["arg_0"]
        assert "helpful lessons" not in prompt  # the selection exchange stays out of the task prompt
        assert len(mem["doc"]["memcollab_retrieved"]) <= 3
        for r in mem["doc"]["memcollab_retrieved"]:
            assert r["text"] in prompt
