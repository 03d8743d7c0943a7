"""End-to-end evaluate job through lm-eval with the scripted test double (no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import data_dir
from test_config import compose_eval

from memcollab_eval.sample_fields import RETRIEVED_KEYS

ANSWER = "Let me think.\nThe answer is $\\boxed{18}$.\n```python\ndef f():\n    return 1\n```"


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    from memcollab_eval.evaluation.job import evaluate

    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    out = tmp_path_factory.mktemp("run")
    # the demo bank's entries involve the embedded Qwen models: take one's identity
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b",
                        f"data_dir={data_dir()}", "limit=3", f"output_dir={out}"])
    cfg.target.model_args["default"] = ANSWER
    rows = evaluate(cfg, out)
    return out, rows


def load_samples(run_dir: Path, task: str) -> list[dict]:
    files = list(run_dir.rglob(f"samples_{task}_*.jsonl"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines()]


def test_results_files_and_summary(scripted_run):
    run_dir, rows = scripted_run
    assert list(run_dir.rglob("results_*.json"))
    assert [r.benchmark for r in rows] == ["math500", "gsm8k", "mbpp", "humaneval"]
    assert all(r.n == 3 for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target"] == "qwen25_coder_05b" and summary["bank"] == "demo_handmade"


def test_memory_reaches_the_prompt_only_in_the_memory_variant(scripted_run):
    run_dir, _ = scripted_run
    injected = 0
    for bench in ("math500", "gsm8k", "mbpp", "humaneval"):
        for plain, mem in zip(load_samples(run_dir, f"{bench}_nomemory"), load_samples(run_dir, f"{bench}_memcollab"), strict=False):
            plain_prompt = plain["arguments"]["gen_args_0"]["arg_0"]
            mem_prompt = mem["arguments"]["gen_args_0"]["arg_0"]
            assert "enforce" not in plain_prompt
            assert mem["doc"]["memcollab_prompt"] in mem_prompt and plain["doc"]["memcollab_prompt"] in plain_prompt
            retrieved = mem["doc"]["memcollab_retrieved"]
            assert isinstance(retrieved, list) and plain["doc"]["memcollab_retrieved"] == []
            if retrieved:
                injected += 1
                # each entry as logged: id and score beside the text put in the prompt and its sources
                assert all(set(r) == set(RETRIEVED_KEYS) and r["text"] in mem_prompt and r["preferred_model"]
                           for r in retrieved)
                assert mem_prompt.replace(mem["doc"]["memcollab_memory"], "", 1) == plain_prompt
                assert all("enforce" in line for line in mem["doc"]["memcollab_memory"].splitlines()[1:] if line)
    assert injected > 0, "no memory was injected anywhere"


def test_verifiers_scored_every_sample(scripted_run):
    run_dir, _ = scripted_run
    gsm = load_samples(run_dir, "gsm8k_nomemory")
    assert all(s["doc"]["memcollab_verdict"]["extracted"] == "18" for s in gsm)
    assert [s["acc"] for s in gsm] == [1.0 if s["doc"]["answer"].split("####")[-1].strip() == "18" else 0.0 for s in gsm]
    code = load_samples(run_dir, "humaneval_nomemory")
    assert all(s["doc"]["memcollab_verdict"]["status"] == "fail" for s in code)


def test_request_cache_is_per_target_and_replays_responses(tmp_path):
    from memcollab_eval.evaluation.job import evaluate

    def run(answer: str, identity: str) -> dict:
        cfg = compose_eval(["+target=scripted", "+bank=none", f"target.identity={identity}", "use_cache=true",
                            f"data_dir={data_dir()}", "limit=1", "benchmarks=[gsm8k]", f"output_dir={tmp_path}"])
        cfg.target.model_args["default"] = answer
        out = tmp_path / f"run-{identity}-{answer[-4:]}"
        evaluate(cfg, out)
        return load_samples(out, "gsm8k_nomemory")[0]

    first = run("The answer is $\\boxed{18}$.", "model_a")
    replayed = run("The answer is $\\boxed{99}$.", "model_a")
    other = run("The answer is $\\boxed{99}$.", "model_b")
    assert first["resps"] == replayed["resps"]  # served from model_a's cache
    assert other["resps"] != first["resps"]  # model_b has a cache of its own
    assert sorted(p.name for p in (tmp_path / "cache").iterdir())[:2] == ["model_a_rank0.db", "model_b_rank0.db"]


def test_run_record_headline_and_report(scripted_run):
    """summary.json / summary.md say what produced the numbers; report.html is written beside them."""
    run_dir, rows = scripted_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "memcollab_scripted" and summary["seed"] == 1234 and summary["limit"] == 3
    bank = summary["bank_record"]
    assert bank["name"] == "demo_handmade" and bank["version"] >= 1 and bank["entries"] == 40
    assert len(bank["sha256"]) == 64
    assert summary["model"]["sha256"] is None and "no local model file" in summary["model"]["sha256_source"]
    assert summary["sampling"]["generation_kwargs"]["gsm8k"]["do_sample"] is False
    assert summary["wall_seconds"] > 0 and summary["generation"]["requests"] == 24
    assert summary["retrieval"]["min_score"] == 0.05 and summary["retrieval"]["top_k"] == 3
    reached = sum(r["reach"]["reached"] for r in summary["rows"])
    assert summary["headline"].startswith(f"Memory reached {reached} of the 12 prompts")
    md = (run_dir / "summary.md").read_text()
    assert summary["headline"] in md and "## Run record" in md and bank["sha256"] in md
    page = (run_dir / "report.html").read_text()
    assert page.count("class='problem") == 12 and "<mark>Lessons from past solutions" in page


def test_the_run_record_names_the_bank_version_the_run_retrieved_from(tmp_path, monkeypatch):
    """A new bank version written while a run goes on (here: after generation, before the record)
    does not change what the record says: the bank is read once, at the start."""
    import shutil

    from memcollab_eval.bank.versions import Retirement, retire
    from memcollab_eval.evaluation import job

    bank = tmp_path / "bank"
    shutil.copytree(Path(job.__file__).parents[1] / "banks" / "demo_handmade", bank)
    before = json.loads((bank / "manifest.json").read_text())
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", f"bank.path={bank}", "limit=1",
                        "benchmarks=[gsm8k]", "target.identity=qwen25_coder_05b", f"output_dir={tmp_path / 'out'}"])
    cfg.target.model_args["default"] = ANSWER
    collect = job.collect

    def collect_after_a_retire(*args, **kwargs):
        first = json.loads((bank / "entries.jsonl").read_text().splitlines()[0])["id"]
        retire(bank, [Retirement(first, "written during the run")])
        return collect(*args, **kwargs)

    monkeypatch.setattr(job, "collect", collect_after_a_retire)
    job.evaluate(cfg, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "summary.json").read_text())["bank_record"]
    assert (record["version"], record["sha256"]) == (before["version"], before["sha256"])
    assert (bank / "v2" / "manifest.json").exists()  # the new version was written


def test_the_run_record_counts_live_and_retired_entries(tmp_path):
    """demo_v3 v2 keeps its retired entry for history: the record says how many retrieval could use."""
    from memcollab_eval.evaluation.job import evaluate

    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    cfg = compose_eval(["+target=scripted", "+bank=demo", "target.identity=qwen25_coder_05b", "limit=1",
                        "benchmarks=[gsm8k]", f"data_dir={data_dir()}", f"output_dir={tmp_path}"])
    cfg.target.model_args["default"] = ANSWER
    evaluate(cfg, tmp_path)
    record = json.loads((tmp_path / "summary.json").read_text())["bank_record"]
    assert record["version"] == 2
    assert (record["entries"], record["live_entries"], record["retired_entries"]) == (3, 2, 1)
    assert "3 entries, 1 retired" in (tmp_path / "summary.md").read_text()
