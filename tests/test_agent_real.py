"""One real agent episode: SmolLM2-135M through llama.cpp, offline, one GSM8K problem with
``protocol=agent``; the transcript must be logged and scored (the model's quality is not
the point: it is weak at the task)."""

from __future__ import annotations

import json

from conftest import data_dir, require_smollm2
from test_config import compose_eval
from test_evaluate_scripted import load_samples


def test_a_real_model_episode_is_logged_and_scored(tmp_path):
    require_smollm2()
    from memcollab_eval.agent import decode_transcript
    from memcollab_eval.evaluation.job import evaluate

    cfg = compose_eval(["+target=smollm2_135m", "+bank=none", "protocol=agent", "agent.max_turns=2",
                        "benchmarks=[gsm8k]", "limit=1", "max_gen_toks=48", f"data_dir={data_dir()}",
                        f"output_dir={tmp_path}", "+target.model_args.n_threads=1"])
    (row,) = evaluate(cfg, tmp_path)
    (sample,) = load_samples(tmp_path, "gsm8k_nomemory")
    episode = decode_transcript(sample["resps"][0][0])
    assert episode is not None and 1 <= episode.turns <= 2
    assert episode.stopped in {"final", "max_turns"}
    assistant = [m["content"] for m in episode.data["messages"] if m["role"] == "assistant"]
    assert len(assistant) == episode.turns and any(a.strip() for a in assistant)
    verdict = sample["doc"]["memcollab_verdict"]
    assert verdict["status"] in {"pass", "fail", "no_answer"}
    assert sample["acc"] == (1.0 if verdict["status"] == "pass" else 0.0)
    assert sample["turns"] == float(episode.turns) == row.turns_nomemory
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocol"] == "agent"
    assert summary["generation_requests"] == episode.turns  # one llama.cpp call per turn
