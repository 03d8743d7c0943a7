"""Bank CI gates: each check fails on a crafted bad bank and passes on the demo bank; diff; gate
with the scripted double (pass, fail against an all-correct baseline, wrong-target baseline)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import data_dir, read_jsonl

from memcollab_eval.bank.checks import eval_source_reason
from memcollab_eval.bank.store import load_bank, save_bank
from memcollab_eval.ci.bank_cli import main

DEMO = Path(__file__).resolve().parent.parent / "memcollab_eval" / "banks" / "demo_handmade"
ENTRY = {"id": "e1", "enforce": "checking the units of every quantity before adding them",
         "avoid": "adding a length in feet to a length in inches", "category": "Prealgebra",
         "subcategory": "unit conversion", "preferred_model": "model_a", "unpreferred_model": "model_b",
         "source_benchmark": "math_train", "source_problem_id": "train/prealgebra/1.json"}


def entry(id: str, **fields) -> dict:
    return {**ENTRY, "id": id, **fields}


def make_bank(path: Path, entries: list[dict]) -> Path:
    save_bank(path, entries, name=path.name, created_at="2025-01-01T00:00:00+00:00")
    return path


def demo_entries() -> list[dict]:
    return [e.to_dict() for e in load_bank(DEMO).entries]


def check(bank: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["check", str(bank), "--data-dir", str(data_dir()), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module", autouse=True)
def needs_data():
    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")


def test_demo_bank_passes_with_coverage_table(capsys):
    code, out = check(DEMO, capsys)
    assert code == 0, out
    assert "| category | qwen25_coder_05b > qwen25_coder_15b | qwen25_coder_15b > qwen25_coder_05b | total |" in out
    assert "| Prealgebra | 1 | 12 | 13 |" in out and "| total | 4 | 36 | 40 |" in out
    assert "OK:" in out and "ERROR" not in out and "WARNING" not in out


def test_python_m_bank_entry_point():
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.bank", "check", str(DEMO), "--data-dir",
                           str(data_dir())], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "coverage of" in proc.stdout


def test_bad_sha256(tmp_path, capsys):
    bank = make_bank(tmp_path / "b", demo_entries())
    path = bank / "entries.jsonl"
    path.write_text(path.read_text().replace("re-reading which quantity", "re-reading what quantity"))
    code, out = check(bank, capsys)
    assert code == 1
    assert f"ERROR [sha256] {bank / 'manifest.json'}: manifest sha256" in out and "does not match" in out


def test_bad_lines_are_all_reported_with_line_and_id(tmp_path, capsys):
    bank = make_bank(tmp_path / "b", [entry("a"), entry("b", enforce="x " * 3), entry("c", enforce="other")])
    lines = (bank / "entries.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["avoid"]
    lines[1] = json.dumps(broken)
    lines[2] = lines[2][:-5]  # truncated JSON
    (bank / "entries.jsonl").write_text("\n".join(lines) + "\n")
    code, out = check(bank, capsys)
    assert code == 1
    assert f"ERROR [schema] {bank / 'entries.jsonl'}:2 entry 'b': missing field 'avoid'" in out
    assert f"ERROR [schema] {bank / 'entries.jsonl'}:3: invalid JSON" in out
    assert "[sha256]" in out


def test_exact_and_near_duplicates(tmp_path, capsys):
    lessons = demo_entries()[:6]
    exact = {**lessons[0], "id": "copy", "enforce": lessons[0]["enforce"].upper() + "!"}
    near = {**lessons[2], "id": "near", "enforce": lessons[2]["enforce"].replace("before", "prior to")}
    bank = make_bank(tmp_path / "b", [*lessons, exact, near])
    code, out = check(bank, capsys)
    assert code == 1
    assert f"{bank / 'entries.jsonl'}:7 entry 'copy': same normalised text as entry 'demo-001' (line 1)" in out
    assert "ERROR [near-duplicate]" in out and ":8 entry 'near': TF-IDF cosine" in out and "'demo-003' (line 3)" in out
    assert out.count("ERROR") == 2  # the distinct demo lessons are not near duplicates of each other


def test_leaked_evaluation_problem_text(tmp_path, capsys):
    question = read_jsonl("gsm8k/test.jsonl")[5]["question"]
    humaneval = read_jsonl("humaneval/HumanEval.jsonl")[3]
    words = question.split()[:10]
    bank = make_bank(tmp_path / "b", [
        entry("leak-gsm", enforce="remember that " + " ".join(words)),
        entry("leak-he", avoid="forgetting " + " ".join(humaneval["prompt"].split('"""')[1].split()[:9])),
        entry("fine", enforce="checking the units of every quantity before adding them together"),
    ])
    code, out = check(bank, capsys)
    assert code == 1
    assert "ERROR [leak]" in out and ":1 entry 'leak-gsm': field 'enforce' shares >= 8 consecutive words" in out
    assert "with evaluation problem gsm8k/test/" in out
    assert ":2 entry 'leak-he': field 'avoid'" in out and "HumanEval/3" in out
    assert "'fine'" not in out


def test_entries_sourced_from_evaluation_problems(tmp_path, capsys):
    bank = make_bank(tmp_path / "b", [
        entry("m", source_problem_id="test/algebra/1.json", enforce="one"),
        entry("h", source_problem_id="HumanEval/12", enforce="two"),
        entry("p", source_problem_id="mbpp/15", enforce="three"),
        entry("ok1", source_problem_id="mbpp/700", enforce="four"),
        entry("ok2", source_problem_id="train/algebra/1.json", enforce="five"),
    ])
    code, out = check(bank, capsys)
    assert code == 1
    assert ":1 entry 'm': source_problem_id 'test/algebra/1.json' is a MATH test-split id" in out
    assert ":2 entry 'h'" in out and ":3 entry 'p': source_problem_id 'mbpp/15' is an MBPP test id" in out
    assert "'ok1'" not in out and "'ok2'" not in out
    gsm_id = "gsm8k/test/7009722920"
    assert eval_source_reason(gsm_id) and eval_source_reason("my/own/id", frozenset({"my/own/id"}))


def test_empty_categories_warn_and_fail_only_with_strict(tmp_path, capsys):
    bank = make_bank(tmp_path / "b", [entry("a"), entry("b", enforce="something else", category="Algebra",
                                                         subcategory="quadratics")])
    code, out = check(bank, capsys)
    assert code == 0, out
    assert "WARNING [empty-category]" in out and "math category 'Geometry' has no entries" in out
    assert "code category" not in out  # the bank covers no code category: that domain is not judged
    code, out = check(bank, capsys, "--strict")
    assert code == 1 and "--strict" in out


def test_missing_data_dir_is_a_usage_error(tmp_path, capsys):
    code = main(["check", str(DEMO), "--data-dir", str(tmp_path)])
    assert code == 2 and "--data-dir" in capsys.readouterr().err


def test_diff(tmp_path, capsys):
    old = make_bank(tmp_path / "old", [entry("a"), entry("b", enforce="second"), entry("c", enforce="third")])
    new = make_bank(tmp_path / "new", [entry("a"), entry("b", enforce="second, edited", category="Algebra",
                                                         subcategory="quadratics"), entry("d", enforce="fourth")])
    assert main(["diff", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "added (1):\n  + d [Prealgebra / unit conversion] model_a > model_b" in out
    assert "removed (1):\n  - c " in out
    assert "changed (1):\n  ~ b: enforce: 'second' -> 'second, edited'; category: 'Prealgebra' -> 'Algebra'" in out
    assert "Prealgebra | model_a > model_b: 3 -> 2 (-1)" in out and "Algebra | model_a > model_b: 0 -> 1 (+1)" in out


# ---- gate ----------------------------------------------------------------------------------

RIGHT_ON_GSM8K_0 = r"target.model_args.default='The answer is \boxed{18}.'"  # GSM8K test problem 0's answer


def gate(tmp_path: Path, *extra: str) -> int:
    return main(["gate", str(DEMO), "--target", "scripted", "--identity", "qwen25_coder_05b", "--benchmarks",
                 "gsm8k,mbpp", "--limit", "2", "--data-dir", str(data_dir()), "--output-dir",
                 str(tmp_path / "gate"), *extra])


@pytest.fixture(scope="module")
def first_gate(tmp_path_factory) -> tuple[Path, str]:
    """One gate run that writes a baseline and compares with its own no-memory twin."""
    tmp = tmp_path_factory.mktemp("gate")
    path, out = tmp / "baseline.json", io.StringIO()
    with contextlib.redirect_stdout(out):
        assert gate(tmp, "--write-baseline", str(path), "--baseline", "nomemory") == 0
    return path, out.getvalue()


@pytest.fixture(scope="module")
def baseline(first_gate) -> Path:
    return first_gate[0]


def test_written_baseline_format(baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == "memcollab-gate-baseline/1"
    assert (data["target"], data["backend"], data["bank"]) == ("qwen25_coder_05b", "memcollab_scripted", "demo_handmade")
    assert data["benchmarks"] == {"gsm8k": {"gsm8k/test/5113244079": 0, "gsm8k/test/7009722920": 0},
                                  "mbpp": {"mbpp/11": 0, "mbpp/12": 0}}


def test_gate_passes_and_lists_fixed_problems(baseline, tmp_path, capsys):
    assert gate(tmp_path, "--baseline", str(baseline), "--override", RIGHT_ON_GSM8K_0) == 0
    out = capsys.readouterr().out
    assert "| gsm8k | 2 | 0.0 | 50.0 | +50.0 | 1 | 0 | 1 |" in out
    assert "  + gsm8k: gsm8k/test/7009722920" in out and "PASS" in out
    report = json.loads(next((tmp_path / "gate").rglob("gate.json")).read_text())
    assert report["passed"] and report["gsm8k"]["fixed"] == ["gsm8k/test/7009722920"]


def test_gate_fails_against_an_all_correct_baseline(baseline, tmp_path, capsys):
    data = json.loads(baseline.read_text())
    data["benchmarks"] = {b: {i: 1 for i in o} for b, o in data["benchmarks"].items()}
    perfect = tmp_path / "perfect.json"
    perfect.write_text(json.dumps(data))
    assert gate(tmp_path, "--baseline", str(perfect)) == 1
    out = capsys.readouterr().out
    assert "| all | 4 | 100.0 | 0.0 | -100.0 | 0 | 4 | 0.125 |" in out
    assert "  - mbpp: mbpp/12" in out and "FAIL: accuracy with the bank 0.0% is below the baseline 100.0%" in out


def test_gate_refuses_a_baseline_of_another_target(baseline, tmp_path, capsys):
    data = json.loads(baseline.read_text())
    data["target"] = "llama3_8b"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert gate(tmp_path, "--baseline", str(other)) == 2
    assert "baseline's target is 'llama3_8b'" in capsys.readouterr().err
    assert not (tmp_path / "gate").exists()  # refused before evaluating anything


def test_gate_against_the_runs_own_no_memory_twin(first_gate):
    out = first_gate[1]
    assert "| gsm8k | 2 | 0.0 | 0.0 | +0.0 | 0 | 0 | 1 |" in out and "PASS" in out and "wrote baseline" in out


def test_ci_example_is_valid_yaml():
    import yaml

    text = (Path(__file__).resolve().parent.parent / "docs" / "ci_bank_gate.md").read_text()
    workflow = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    steps = " ".join(str(s.get("run", "")) for s in workflow["jobs"]["bank-gate"]["steps"])
    assert "memcollab_eval.bank check" in steps and "memcollab_eval.bank gate" in steps


# ---- attribute -----------------------------------------------------------------------------

RUNS = Path(__file__).resolve().parent / "data" / "runs"
# the golden fixture run of the demo bank with retrieval=no_model_filter (tests/data/runs/make_runs.py):
# math500 problem 3 broken, one MBPP and one HumanEval problem fixed, nothing flips where no memory was added
NOFILTER_RUN = RUNS / "qwen25_coder_05b" / "demo" / "2026-11-26_07-10-38"


def test_attribute_counts_flips_per_retrieved_entry():
    from memcollab_eval.leaderboard.attribution import attribute

    a = attribute(NOFILTER_RUN)
    by_id = {e.entry_id: e for e in a.effects}
    assert (a.paired, a.with_memory, a.fixed_without_memory, a.broken_without_memory) == (16, 14, 0, 0)
    assert (by_id["demo-027"].retrieved, by_id["demo-027"].broken, by_id["demo-027"].benchmarks) == (1, 1, {"math500": 1})
    assert (by_id["demo-030"].fixed, by_id["demo-030"].benchmarks) == (2, {"humaneval": 1, "mbpp": 1})
    assert by_id["demo-031"].fixed_ids == [i for i in by_id["demo-030"].fixed_ids if i.startswith("mbpp/")]
    assert a.effects[0].entry_id == "demo-027" and a.effects[-1].entry_id == "demo-030"  # most harmful first
    assert sum(e.retrieved for e in a.effects) >= a.with_memory
    assert a.bank_dir.name == DEMO.name and a.texts["demo-030"].startswith("enforce handling empty strings")


def test_attribute_cli_reports_flips_where_no_memory_was_added(tmp_path, capsys):
    out = tmp_path / "report" / "attribution.md"
    assert main(["attribute", str(RUNS / "qwen25_coder_05b" / "demo" / "2026-11-26_07-10-25"), "--out", str(out)]) == 0
    report = out.read_text()
    assert "memory was added to 14" in report and "still flipped (1 fixed, 0 broken)" in report
    assert "| demo-033 | 2 | 0 | 1 | -1 | humaneval 2 | enforce building a new list" in report


def test_attribute_without_hydra_config_needs_bank_for_texts(capsys):
    assert main(["attribute", str(RUNS / "lm_eval_cli")]) == 0
    out = capsys.readouterr().out
    assert "| demo-007 | 2 | 1 | 0 | +1 | gsm8k 2 | - | - |" in out and "pass --bank" in out
    assert main(["attribute", str(RUNS / "lm_eval_cli"), "--bank", str(DEMO)]) == 0
    assert "| demo-007 | 2 | 1 | 0 | +1 | gsm8k 2 | enforce keeping money received" in capsys.readouterr().out


def test_attribute_errors_name_the_file_and_line(tmp_path, capsys):
    src = next((RUNS / "lm_eval_cli").rglob("samples_gsm8k_memcollab_*.jsonl"))
    run = tmp_path / "run"
    run.mkdir()
    (run / src.name).write_bytes(src.read_bytes())
    assert main(["attribute", str(run)]) == 2
    assert "gsm8k has no no-memory twin (samples_gsm8k_nomemory_*.jsonl)" in capsys.readouterr().err
    twin = run / src.name.replace("_memcollab_", "_nomemory_")
    lines = next((RUNS / "lm_eval_cli").rglob("samples_gsm8k_nomemory_*.jsonl")).read_text().splitlines()
    twin.write_text("\n".join([lines[0], lines[1][:40], *lines[2:]]) + "\n")
    assert main(["attribute", str(run)]) == 2
    assert f"{twin} line 2: invalid JSON" in capsys.readouterr().err
    assert main(["attribute", str(tmp_path / "missing")]) == 2
