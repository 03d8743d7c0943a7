"""Tests for the math answer checker (memcollab_eval.verify.math_answer)."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import read_jsonl

from memcollab_eval.verify import math_answer
from memcollab_eval.verify.math_answer import check_answer, check_answers, extract_answer
from memcollab_eval.verify.verdict import Verdict

GOLDEN = Path(__file__).parent / "data" / "math_golden.jsonl"
# Slow for sympy (it tries to evaluate 9^387420489) but interruptible by the alarm. Not a
# pure power tower: those are decided by their number of digits (test_power_tower_fails_fast).
PATHOLOGICAL = r"The answer is $\boxed{9^{9^{9}} + 1}$."


def _golden_cases() -> list[dict[str, str]]:
    with open(GOLDEN, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_jsonl(relative: str) -> list[dict]:
    return read_jsonl(relative)  # the evaluation sets shipped in the package


def _statuses(verdicts: list[Verdict]) -> list[str]:
    return [v.status for v in verdicts]


# ---------------------------------------------------------------- golden cases


def test_golden_file_is_well_formed() -> None:
    cases = _golden_cases()
    assert len(cases) >= 60
    for case in cases:
        assert set(case) == {"response", "gold", "kind", "expected", "why"}, case
        assert case["kind"] in ("math", "gsm8k") and case["expected"] in ("pass", "fail", "no_answer")
    expected = {case["expected"] for case in cases}
    assert expected == {"pass", "fail", "no_answer"}


@pytest.mark.parametrize("case", _golden_cases(), ids=lambda case: case["why"])
def test_golden(case: dict[str, str]) -> None:
    verdict = check_answer(case["response"], case["gold"], case["kind"])
    assert verdict.status == case["expected"], verdict


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("response", "kind", "expected"),
    [
        (r"so $\boxed{\frac{a}{\sqrt{b}}}$ wait no $\boxed{\dfrac{1}{2}}$", "math", r"\dfrac{1}{2}"),
        (r"\fbox{7}", "math", "7"),
        (r"$\boxed 5$.", "math", "5"),
        (r"$\boxed{1}$, $\boxed{2}$", "math", "1, 2"),
        (r"\boxed{1} \boxed{2} \boxed{3} \boxed{5}", "math", "5"),  # attempts: the last one counts
        (r"$\boxed{1}$ $\boxed{2}$", "math", "2"),
        (r"\boxed{1}; \boxed{2} \quad \boxed{3}", "math", "1, 2, 3"),
        (r"$\boxed{4}$ ... so again $\boxed{4}$", "math", "4"),
        ("Step 1 ... 3 + 4 = 7\n#### 7", "gsm8k", "7"),
        ("The final answer is $1,234.50. I hope it is correct.", "gsm8k", "1234.50"),
        ("The answer is: $\\frac{3}{4}$.", "math", r"\frac{3}{4}"),
        ("Final Answer: The final answer is $(1,2)$. I hope it is correct.", "math", "(1,2)"),
        ("She ends with 12 apples and 5 pears", "gsm8k", "5"),
        ("The answer is 18 dollars.", "gsm8k", "18"),
        ("no numbers here", "math", None),
        ("", "gsm8k", None),
    ],
)
def test_extract_answer(response: str, kind: str, expected: str | None) -> None:
    assert extract_answer(response, kind) == expected


def test_gold_may_be_full_gsm8k_answer_or_bare_number() -> None:
    field = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"
    assert check_answer("The answer is 72.", field, "gsm8k").passed
    assert check_answer("The answer is 72.", "72", "gsm8k").passed
    assert check_answer("The answer is 71.", field, "gsm8k").status == "fail"


# ------------------------------------------------------------- API behaviour


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_answer("1", "1", "mmlu"),
        lambda: check_answers([("1", "1", "Math")]),
        lambda: extract_answer("1", "code"),
    ],
)
def test_bad_kind_raises_value_error_naming_valid_kinds(call) -> None:
    with pytest.raises(ValueError, match="math, gsm8k"):
        call()


def test_non_positive_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        check_answer("1", "1", timeout=0)


def test_exception_becomes_error_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(pred: str, gold: str) -> tuple[bool, str]:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(math_answer, "_math_equal", boom)
    verdict = check_answer(r"\boxed{x+1}", "x+1")
    assert verdict.status == "error"
    assert "RuntimeError: sympy exploded" in verdict.detail
    assert verdict.extracted == "x+1"


def test_check_answers_preserves_order_and_accepts_dicts() -> None:
    items = [
        (PATHOLOGICAL, "1", "math"),  # slowest first, so later items finish earlier
        (r"\boxed{\frac12}", "0.5", "math"),
        ("nothing to see", "3", "math"),
        ("#### 1,000", "1000", "gsm8k"),
        (r"\boxed{3}", "4", "math"),
    ]
    expected = ["timeout", "pass", "no_answer", "pass", "fail"]
    assert _statuses(check_answers(items, workers=2, timeout=0.5)) == expected
    as_dicts = [{"response": r, "gold": g, "kind": k} for r, g, k in items]
    assert _statuses(check_answers(as_dicts, workers=0, timeout=0.5)) == expected
    assert check_answers([], workers=2) == []


def test_progress_bar_can_be_forced(capsys: pytest.CaptureFixture[str]) -> None:
    verdicts = check_answers([(r"\boxed{2}", "2", "math")] * 3, workers=1, progress=True)
    assert all(v.passed for v in verdicts)
    assert "math checks" in capsys.readouterr().err


# ------------------------------------------------------------- size edge cases


def test_integers_beyond_the_int_string_limit_compare_exactly() -> None:
    big = "7" * 5000  # Python refuses int(str) beyond 4,300 digits
    assert check_answer(rf"so $\boxed{{{big}}}$", big).status == "pass"
    assert check_answer(f"The answer is {big}", big, kind="gsm8k").status == "pass"
    off_by_one = check_answer(rf"\boxed{{{big[:-1]}8}}", big)
    assert off_by_one.status == "fail", off_by_one


@pytest.mark.parametrize(("response", "gold"), [
    (r"\boxed{9^{9^{9^9}}}", "5"), (r"\boxed{9^{9^{9}}}", "1"), (r"\boxed{10^{10^{10}}}", "100"), ("3", r"2^{10^{20}}"),
])
def test_power_tower_fails_fast(response: str, gold: str) -> None:
    start = time.monotonic()
    verdict = check_answer(response, gold, timeout=3.0)
    assert verdict.status == "fail" and "digits" in verdict.detail, verdict
    assert time.monotonic() - start < 1.0


def test_small_powers_still_go_to_math_verify() -> None:
    assert check_answer(r"\boxed{2^{10}}", "1024").status == "pass"
    assert check_answer(r"\boxed{10^{60}}", "1" + "0" * 60).status == "pass"
    assert check_answer(r"\boxed{10^{60}}", "1" + "0" * 59).status == "fail"


# -------------------------------------------------------------------- timeouts


def test_timeout_in_process_on_pathological_input() -> None:
    start = time.monotonic()
    verdict = check_answer(PATHOLOGICAL, "1", timeout=0.5)
    assert verdict.status == "timeout"
    assert time.monotonic() - start < 3


def test_timeout_in_process_on_slow_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(pred: str, gold: str) -> tuple[bool, str]:
        time.sleep(30)
        return True, ""

    monkeypatch.setattr(math_answer, "_math_equal", slow)
    start = time.monotonic()
    verdict = check_answer(r"\boxed{x}", "x", timeout=0.3)
    assert verdict.status == "timeout" and verdict.extracted == "x"
    assert time.monotonic() - start < 2


def _ignores_alarm(response: str, gold: str, kind: str, timeout: float) -> Verdict:
    """Stands in for a check stuck in C code: SIGALRM is blocked, so the worker's
    own alarm cannot stop it and only the pool's hard limit can."""
    if response == "hang":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    if response == "die":
        os._exit(3)
    return math_answer._check_here(response, gold, kind, timeout)


def test_pool_kills_a_worker_that_ignores_the_alarm_and_carries_on() -> None:
    jobs = [(r, "2", "math", 0.3) for r in ["hang", r"\boxed{2}", "hang", r"\boxed{3}", r"\boxed{2}"]]
    start = time.monotonic()
    verdicts = math_answer._run_pool(jobs, workers=2, progress=False, check=_ignores_alarm)
    assert _statuses(verdicts) == ["timeout", "pass", "timeout", "fail", "pass"]
    assert "killed" in verdicts[0].detail
    assert time.monotonic() - start < 10


def test_pool_reports_a_dead_worker_as_error_and_carries_on() -> None:
    jobs = [(r, "2", "math", 1.0) for r in [r"\boxed{2}", "die", r"\boxed{2}", r"\boxed{5}"]]
    verdicts = math_answer._run_pool(jobs, workers=1, progress=False, check=_ignores_alarm)
    assert _statuses(verdicts) == ["pass", "error", "pass", "fail"]
    assert "worker died" in verdicts[1].detail


# --------------------------------------------------------------------- threads


def test_check_answer_from_other_threads() -> None:
    # A cold math-verify parse in a fresh worker takes ~0.3 s alone, more beside two other
    # workers on 2 cores: the answers that must finish get room, the pathological one 0.5 s.
    cases = [(r"\boxed{\frac{1}{2}}", "0.5", "pass", 5.0), (r"\boxed{3}", "4", "fail", 5.0),
             (PATHOLOGICAL, "1", "timeout", 0.5)]
    results: dict[int, Verdict] = {}

    def run(i: int, response: str, gold: str, timeout: float) -> None:
        results[i] = check_answer(response, gold, timeout=timeout)

    threads = [threading.Thread(target=run, args=(i, r, g, t)) for i, (r, g, _, t) in enumerate(cases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [results[i].status for i in range(len(cases))] == [expected for _, _, expected, _ in cases]


def test_in_process_batch_from_a_thread_falls_back_to_a_worker() -> None:
    results: list[Verdict] = []
    items = [(r"\boxed{2}", "2", "math"), (r"\boxed{2}", "3", "math")]
    thread = threading.Thread(target=lambda: results.extend(check_answers(items, workers=0)))
    thread.start()
    thread.join(timeout=60)
    assert _statuses(results) == ["pass", "fail"]


# -------------------------------------------------------------------- real data


def _perturb_first_digit(answer: str) -> str:
    digit = re.search(r"\d", answer)
    assert digit is not None
    return answer[: digit.start()] + str((int(digit.group()) + 1) % 10) + answer[digit.end() :]


@pytest.mark.slow
def test_math500_golds_verify_themselves_and_perturbed_golds_fail() -> None:
    golds = [row["answer"] for row in _read_jsonl("math500/test.jsonl")]
    assert len(golds) == 500
    verdicts = check_answers([(f"The answer is $\\boxed{{{g}}}$.", g, "math") for g in golds], workers=2)
    failures = [(g, v) for g, v in zip(golds, verdicts, strict=True) if not v.passed]
    assert not failures, failures[:10]

    perturbed = [(g, _perturb_first_digit(g)) for g in golds if re.search(r"\d", g)]
    verdicts = check_answers([(f"$\\boxed{{{p}}}$", g, "math") for g, p in perturbed], workers=2)
    wrongly_passed = [(g, p) for (g, p), v in zip(perturbed, verdicts, strict=True) if v.status != "fail"]
    assert len(perturbed) > 400 and not wrongly_passed, wrongly_passed[:10]


@pytest.mark.slow
def test_gsm8k_golds_verify_themselves_and_off_by_one_fails() -> None:
    fields = [row["answer"] for row in _read_jsonl("gsm8k/test.jsonl")]
    assert len(fields) == 1319
    numbers = [field.rsplit("####", 1)[1].strip() for field in fields]

    own_text = check_answers([(f, f, "gsm8k") for f in fields], workers=2)
    assert sum(v.passed for v in own_text) == 1319, [v for v in own_text if not v.passed][:5]

    stated = check_answers([(f"The answer is {n}.", f, "gsm8k") for n, f in zip(numbers, fields, strict=True)], workers=2)
    assert sum(v.passed for v in stated) == 1319, [v for v in stated if not v.passed][:5]

    off_by_one = [f"The answer is {int(n.replace(',', '')) + 1}." for n in numbers]
    wrong = check_answers([(r, f, "gsm8k") for r, f in zip(off_by_one, fields, strict=True)], workers=2)
    assert _statuses(wrong) == ["fail"] * 1319
