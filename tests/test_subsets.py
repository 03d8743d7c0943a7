"""Per-benchmark limits and seeded subsets: which problems a run evaluates."""

from __future__ import annotations

import json

import pytest
from conftest import data_dir
from test_config import compose_eval
from test_evaluate_scripted import load_samples


def test_indices_first_seeded_and_whole_split():
    from memcollab_eval.subsets import problem_indices

    assert problem_indices("gsm8k", 10, 3, "first", 1) == [0, 1, 2]
    assert problem_indices("gsm8k", 10, None, "seeded", 1) == list(range(10))
    assert problem_indices("gsm8k", 10, 50, "seeded", 1) == list(range(10))
    a = problem_indices("gsm8k", 1000, 20, "seeded", 1234)
    assert a == problem_indices("gsm8k", 1000, 20, "seeded", 1234)  # same seed, same problems
    assert a == sorted(set(a)) and len(a) == 20 and a != list(range(20))
    assert a != problem_indices("gsm8k", 1000, 20, "seeded", 99)
    assert a != problem_indices("mbpp", 1000, 20, "seeded", 1234)  # each benchmark its own draw
    # a larger sample with the same seed is not required to contain the smaller one; only stability is promised
    assert problem_indices("gsm8k", 1319, 10, "seeded", 1234) == [63, 254, 305, 671, 781, 1030, 1056, 1180, 1310, 1313]


def test_settings_problems_are_named():
    from memcollab_eval.subsets import subset_problems

    assert subset_problems(["gsm8k"], 5, {}, "first") == []
    msgs = subset_problems(["gsm8k"], 0, {"humaneval": None, "gsm8k": -1}, "random")
    text = "\n".join(msgs)
    assert "subset must be one of ['first', 'seeded'], got 'random'" in text
    assert "limit must be >= 1" in text
    assert "limits.humaneval: 'humaneval' is not among benchmarks" in text
    assert "limits.gsm8k must be >= 1" in text


def test_describe():
    from memcollab_eval.subsets import describe

    assert describe(12, {}, "first") == "12"
    assert describe(60, {"humaneval": None}, "seeded") == "60 seeded (humaneval: all)"


def test_sizes_are_counted_from_local_files():
    from memcollab_eval.subsets import benchmark_size

    if not (data_dir() / "humaneval" / "HumanEval.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    assert benchmark_size("humaneval", str(data_dir())) == 164
    assert benchmark_size("gsm8k", str(data_dir())) == 1319


def test_seeded_run_with_a_per_benchmark_limit(tmp_path):
    """Through the real lm-eval path: each twin sees the same seeded problems; the override wins."""
    from memcollab_eval.evaluation.job import evaluate
    from memcollab_eval.subsets import problem_indices

    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b",
                        f"data_dir={data_dir()}", "benchmarks=[gsm8k,humaneval]", "limit=3", "+limits.humaneval=2",
                        "subset=seeded", f"output_dir={tmp_path}"])
    rows = evaluate(cfg, tmp_path)
    assert {r.benchmark: r.n for r in rows} == {"gsm8k": 3, "humaneval": 2}
    gsm_rows = [json.loads(line) for line in (data_dir() / "gsm8k" / "test.jsonl").read_text().splitlines()]
    wanted = [gsm_rows[i]["question"] for i in problem_indices("gsm8k", len(gsm_rows), 3, "seeded", cfg.seed)]
    for twin in ("gsm8k_nomemory", "gsm8k_memcollab"):
        assert sorted(s["doc"]["question"] for s in load_samples(tmp_path, twin)) == sorted(wanted)
    he = [s["doc"]["task_id"] for s in load_samples(tmp_path, "humaneval_nomemory")]
    assert he == [s["doc"]["task_id"] for s in load_samples(tmp_path, "humaneval_memcollab")] and len(he) == 2
    assert json.loads((tmp_path / "summary.json").read_text())["problems"] == "3 seeded (humaneval: 2)"


def test_bad_subset_settings_stop_before_the_model_loads(tmp_path):
    from memcollab_eval.evaluation.job import UsageError, evaluate

    cfg = compose_eval(["+target=scripted", "+bank=none", "benchmarks=[gsm8k]", "+limits.mbpp=4",
                        "subset=shuffled", f"output_dir={tmp_path}"])
    with pytest.raises(UsageError) as err:
        evaluate(cfg, tmp_path)
    assert "limits.mbpp" in str(err.value) and "subset must be one of" in str(err.value)


def test_plain_limits_key_is_accepted_on_the_command_line():
    from memcollab_eval.evaluation.cli import prepare_argv

    assert "+limits.humaneval=null" in prepare_argv(["limits.humaneval=null"])
    assert "+limits.humaneval=null" in prepare_argv(["+limits.humaneval=null"])
