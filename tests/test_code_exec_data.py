"""The sandbox on real benchmark data: every canonical solution passes, wrong ones fail."""

from __future__ import annotations

import pytest
from conftest import read_jsonl

from memcollab_eval.adapters import function_under_test
from memcollab_eval.verify import run_codes


def mbpp_item(program: str, row: dict) -> dict:
    """As scoring runs MBPP: setup code as support, the reference's function as entry point."""
    return {"program": program, "test": "\n".join(row["test_list"]) + "\n", "support": row["test_setup_code"],
            "entry_point": function_under_test(row["code"], row["test_list"])}


def humaneval_item(program: str, row: dict) -> tuple[str, str, str, str]:
    """As scoring runs HumanEval: the prompt is the support code (helpers such as ``poly``)."""
    return (program, row["test"], row["entry_point"], row["prompt"])


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(sandbox):
    rows = read_jsonl("humaneval/HumanEval.jsonl")
    assert len(rows) == 164
    items = [humaneval_item(r["prompt"] + r["canonical_solution"], r) for r in rows]
    verdicts = run_codes(items, pool=sandbox)
    failed = {r["task_id"]: v.detail[:200] for r, v in zip(rows, verdicts, strict=False) if not v.passed}
    assert not failed, failed


@pytest.mark.slow
def test_humaneval_empty_bodies_fail(sandbox):
    rows = read_jsonl("humaneval/HumanEval.jsonl")
    items = [humaneval_item(r["prompt"] + "    pass\n", r) for r in rows]
    verdicts = run_codes(items, pool=sandbox)
    passed = [r["task_id"] for r, v in zip(rows, verdicts, strict=False) if v.passed]
    assert passed == [], passed


@pytest.mark.slow
def test_humaneval_solution_swapped_with_another_task_fails(sandbox):
    rows = read_jsonl("humaneval/HumanEval.jsonl")
    shifted = rows[1:] + rows[:1]
    items = [humaneval_item(r["prompt"] + "    pass\n\n" + o["prompt"] + o["canonical_solution"], r)
             for r, o in zip(rows, shifted, strict=False)]
    verdicts = run_codes(items, pool=sandbox)
    passed = [r["task_id"] for r, v in zip(rows, verdicts, strict=False) if v.passed]
    assert passed == [], passed


@pytest.mark.slow
def test_all_mbpp_canonical_solutions_pass(sandbox):
    rows = read_jsonl("mbpp/mbpp.jsonl")
    assert len(rows) == 974
    verdicts = run_codes([mbpp_item(r["code"], r) for r in rows], pool=sandbox, timeout=30.0)
    failed = {r["task_id"]: (v.status, v.detail[:200]) for r, v in zip(rows, verdicts, strict=False) if not v.passed}
    assert not failed, failed


@pytest.mark.slow
def test_mbpp_solution_swapped_with_another_task_fails(sandbox):
    rows = read_jsonl("mbpp/mbpp.jsonl")[:100]
    shifted = rows[1:] + rows[:1]
    verdicts = run_codes([mbpp_item(other["code"], r) for r, other in zip(rows, shifted, strict=False)], pool=sandbox)
    assert sum(v.passed for v in verdicts) == 0


@pytest.mark.slow
def test_mbpp_empty_solutions_fail(sandbox):
    rows = read_jsonl("mbpp/mbpp.jsonl")
    verdicts = run_codes([mbpp_item("", r) for r in rows], pool=sandbox)
    passed = [r["task_id"] for r, v in zip(rows, verdicts, strict=False) if v.passed]
    assert passed == [], passed


def test_run_code_public_api():
    from memcollab_eval.verify import run_code

    assert run_code("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n").passed
    verdict = run_code("def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5\n", timeout=5)
    assert verdict.status == "fail"


def test_run_codes_rejects_malformed_items():
    with pytest.raises(ValueError, match="item 1: missing field"):
        run_codes([("x = 1", "pass"), {"program": "x = 1"}])
