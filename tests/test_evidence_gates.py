"""The evidence gates' machinery: held-out validation that stops trying a lesson once it cannot be
admitted (gates.validate_stop_early), two processes sharing the gates (evidence_from), and the
re-solve placebo.

The target here is a plain function that answers each (problem, lesson) from a table, so every
flip pattern can be set up and the generated prompts counted; the build-level tests in
test_build.py run the same gates through the scripted double and a real model.
"""

from __future__ import annotations

import json
import random

import pytest
from conftest import FIXTURE_POOLS

from memcollab_eval.construct.evidence import HeldoutRule, flip_rates, validate_lessons
from memcollab_eval.construct.pools import PoolProblem
from memcollab_eval.retrieve import MEMORY_HEADER

RULES = [HeldoutRule("net", 1, 1), HeldoutRule("sign_test", alpha=0.05), HeldoutRule("sign_test", alpha=0.3)]


def _problems(n: int) -> list[PoolProblem]:
    rows = [json.loads(line) for line in (FIXTURE_POOLS / "gsm8k" / "train.jsonl").read_text().splitlines()][:n]
    assert len(rows) == n, "the fixture pool has fewer GSM8K rows than the test needs"
    return [PoolProblem(f"gsm8k/train/{i}", "gsm8k", "gsm8k_train", "Prealgebra", "word", row)
            for i, row in enumerate(rows)]


def _lesson(name: str) -> dict:
    return {"source_problem_id": f"src-{name}", "enforce": f"check step {name}", "avoid": f"skipping step {name}",
            "category": "Prealgebra", "subcategory": "word", "id": name, "preferred_model": "strong",
            "unpreferred_model": "weak", "source_benchmark": "gsm8k"}


class TableTarget:
    """Answers right or wrong as a table says: ``base[i]`` without memory, ``with_[lesson][i]`` with it.
    Counts the prompts it was asked, by lesson (None: without memory)."""

    def __init__(self, problems, base, with_):
        self.problems, self.base, self.with_ = problems, base, with_
        self.asked: dict[str | None, int] = {}

    def __call__(self, prompts, kwargs):
        texts = []
        for prompt in prompts:
            lesson = next((name for name in self.with_ if MEMORY_HEADER in prompt and f"check step {name};" in prompt),
                          None)
            i = next(i for i, p in enumerate(self.problems) if p.doc["question"] in prompt)
            right = self.with_[lesson][i] if lesson else self.base[i]
            answer = self.problems[i].doc["answer"].split("####")[-1].strip()
            texts.append(f"The answer is {answer}." if right else "The answer is -7.")
            self.asked[lesson] = self.asked.get(lesson, 0) + 1
        return texts, 0.5 * len(prompts), 3 * len(prompts)


def _run(tmp_path, problems, base, with_, stop_early, batch=8):
    target = TableTarget(problems, base, with_)
    work = tmp_path / ("early" if stop_early else "all")
    work.mkdir()
    outcomes, seconds, tokens = validate_lessons([_lesson(n) for n in with_], {"Prealgebra": problems}, work,
                                                 target, lambda spec: {"until": []}, None, stop_early=stop_early,
                                                 batch=batch)
    return outcomes, target.asked


def test_a_lesson_that_flips_nothing_is_refused_after_the_problems_the_target_fails(tmp_path):
    problems = _problems(6)
    base = [False, True, False, True, False, True]
    outcomes, asked = _run(tmp_path, problems, base, {"null": base}, RULES[0], batch=1)
    (o,) = outcomes.values()
    assert asked == {None: 6, "null": 3}  # the three problems it passes were never asked with the lesson
    assert o.problems == ("gsm8k/train/0", "gsm8k/train/2", "gsm8k/train/4")
    assert o.untried == ("gsm8k/train/1", "gsm8k/train/3", "gsm8k/train/5")
    assert not o.admitted(RULES[0]) and o.fixed == () and o.broken == ()
    assert flip_rates([o]) == {"fixed": 0, "tried_on_failing": 3, "fix_rate": 0.0,
                               "broken": 0, "tried_on_passing": 0, "break_rate": None}


def test_a_lesson_that_can_still_pass_is_tried_on_every_problem_and_keeps_its_full_evidence(tmp_path):
    problems = _problems(6)
    base = [False, True, False, True, False, True]
    fixes = [True, True, False, True, True, True]
    early, asked = _run(tmp_path, problems, base, {"good": fixes}, RULES[0], batch=1)
    (tmp_path / "x").mkdir()
    full, _ = _run(tmp_path / "x", problems, base, {"good": fixes}, None)
    assert asked == {None: 6, "good": 6}
    assert early == full
    (o,) = early.values()
    assert o.admitted(RULES[0]) and o.fixed == ("gsm8k/train/0", "gsm8k/train/4") and o.untried == ()
    # listed in the category's order, as banks built before early stopping list them (their bytes stay)
    assert o.problems == tuple(p.id for p in problems)
    assert flip_rates([o]) == {"fixed": 2, "tried_on_failing": 3, "fix_rate": 0.6667,
                               "broken": 0, "tried_on_passing": 3, "break_rate": 0.0}


def test_no_lesson_is_asked_when_the_target_passes_every_problem(tmp_path):
    problems = _problems(4)
    outcomes, asked = _run(tmp_path, problems, [True] * 4, {"a": [True] * 4, "b": [False] * 4}, RULES[1])
    assert asked == {None: 4}
    assert all(not o.admitted(RULES[1]) and o.problems == () for o in outcomes.values())


@pytest.mark.parametrize("seed", range(6))
def test_stopping_early_never_changes_a_decision(tmp_path, seed):
    """Random flip tables, every rule: the lessons admitted with early stopping are exactly the ones
    admitted with every problem tried, with the same evidence, and fewer prompts are generated."""
    rng = random.Random(seed)
    problems = _problems(8)
    base = [rng.random() < 0.4 for _ in problems]
    with_ = {}
    for k in range(10):  # lessons from harmful to helpful
        fix, brk = rng.choice([0.0, 0.2, 0.6, 1.0]), rng.choice([0.0, 0.0, 0.2, 0.5])
        with_[f"l{k}"] = [(rng.random() >= brk) if b else (rng.random() < fix) for b in base]
    for r, rule in enumerate(RULES):
        run = tmp_path / f"s{seed}r{r}"
        run.mkdir()
        early, asked_early = _run(run, problems, base, with_, rule)
        full, asked_full = _run(run, problems, base, with_, None)
        for key, o in full.items():
            assert early[key].admitted(rule) == o.admitted(rule), (rule, o)
            if o.admitted(rule):
                assert early[key] == o
        assert sum(asked_early.values()) < sum(asked_full.values()) == len(problems) * (len(with_) + 1)


# ---- two processes sharing the held-out gate (evidence_from, work_order=reverse) ----------------

def _sharing(work, other):
    """The take_others a build passes when ``evidence_from=[other]``."""
    from memcollab_eval.construct.imports import check_evidence_settings, import_evidence

    settings = {"validate_target": "table", "seed": 1}
    check_evidence_settings(work, settings)
    return lambda name, key_of, have: import_evidence(work, [str(other)], settings, name, key_of, have)


def _table(seed: int, problems, lessons: int):
    rng = random.Random(seed)
    base = [rng.random() < 0.4 for _ in problems]
    return base, {f"l{k}": [(rng.random() >= 0.2) if b else (rng.random() < rng.choice([0.0, 0.5, 1.0]))
                            for b in base] for k in range(lessons)}


def test_a_second_process_takes_the_first_ones_answers_and_asks_nothing_again(tmp_path):
    problems = _problems(8)
    base, with_ = _table(3, problems, 6)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = TableTarget(problems, base, with_)
    want, _, _ = validate_lessons([_lesson(n) for n in with_], {"Prealgebra": problems}, a, first,
                                  lambda spec: {"until": []}, None, stop_early=RULES[1], take_others=_sharing(a, b))
    second = TableTarget(problems, base, with_)
    got, _, _ = validate_lessons([_lesson(n) for n in with_], {"Prealgebra": problems}, b, second,
                                 lambda spec: {"until": []}, None, stop_early=RULES[1], reverse=True,
                                 take_others=_sharing(b, a))
    assert second.asked == {} and got == want
    assert sorted((a / "validation_lessons.jsonl").read_text().splitlines()) == \
        sorted((b / "validation_lessons.jsonl").read_text().splitlines())


def _side(work: str, other: str, reverse: bool, seed: int, lessons: int) -> None:
    """One of the two processes of the test below (run as ``python -c``): validates the table's lessons
    in ``work``, taking ``other``'s answers, and writes what its target was asked to ``work/asked.json``."""
    import time
    from pathlib import Path

    class Slow(TableTarget):  # a round takes a while, as with a real model, so the two overlap
        def __call__(self, prompts, kwargs):
            time.sleep(0.2)
            return super().__call__(prompts, kwargs)

    problems = _problems(8)
    base, with_ = _table(seed, problems, lessons)
    target = Slow(problems, base, with_)
    w = Path(work)
    outcomes, _, _ = validate_lessons([_lesson(n) for n in with_], {"Prealgebra": problems}, w, target,
                                      lambda spec: {"until": []}, None, stop_early=RULES[0], reverse=reverse,
                                      take_others=_sharing(w, Path(other)))
    (w / "asked.json").write_text(json.dumps({"asked": {str(k): v for k, v in target.asked.items()},
                                              "admitted": sorted(k for k, o in outcomes.items()
                                                                 if o.admitted(RULES[0]))}))


def test_two_processes_meet_in_the_middle_with_the_decisions_of_one(tmp_path):
    """Forward and reverse at once, each taking the other's answers before every round: both generate,
    together they ask about as much as one process does, and both admit what one process admits."""
    import subprocess
    import sys
    from pathlib import Path

    problems = _problems(8)
    base, with_ = _table(5, problems, 24)
    alone = tmp_path / "alone"
    alone.mkdir()
    single = TableTarget(problems, base, with_)
    want, _, _ = validate_lessons([_lesson(n) for n in with_], {"Prealgebra": problems}, alone, single,
                                  lambda spec: {"until": []}, None, stop_early=RULES[0])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tests = Path(__file__).parent
    procs = [subprocess.Popen([sys.executable, "-c", f"import test_evidence_gates as t; "
                               f"t._side({str(w)!r}, {str(o)!r}, {rev}, 5, 24)"],
                              cwd=tests, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w, o, rev in ((a, b, False), (b, a, True))]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    runs = {w.name: json.loads((w / "asked.json").read_text()) for w in (a, b)}
    admitted = sorted(k for k, o in want.items() if o.admitted(RULES[0]))
    assert runs["a"]["admitted"] == runs["b"]["admitted"] == admitted
    made = {k: sum(v for lesson, v in r["asked"].items() if lesson != "None") for k, r in runs.items()}
    alone_made = sum(v for lesson, v in single.asked.items() if lesson)
    assert made["a"] >= 1 and made["b"] >= 1, made
    # made twice: at most the round where the two first meet, and where they meet inside each lesson they share
    assert made["a"] + made["b"] <= alone_made + 3 * 8, (made, alone_made)


def test_answers_of_another_target_are_refused_with_the_file_named(tmp_path):
    from memcollab_eval.construct.imports import EvidenceImportError, check_evidence_settings, import_evidence

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    check_evidence_settings(a, {"validate_target": "small", "seed": 1})
    (a / "validation_lessons.jsonl").write_text('{"problem_id": "p", "memory": "without", "passed": true}\n')
    with pytest.raises(EvidenceImportError, match=r"evidence_from: .*a/evidence.meta.json: made with"):
        import_evidence(b, [str(a)], {"validate_target": "large", "seed": 1}, "validation_lessons.jsonl",
                        lambda r: (r["problem_id"], r["memory"]), lambda k: False)
    with pytest.raises(EvidenceImportError, match=r"a/evidence.meta.json: this work directory's records were made"):
        check_evidence_settings(a, {"validate_target": "large", "seed": 1})


def test_resolve_in_reverse_starts_at_the_end_and_takes_the_other_process_outcomes(tmp_path):
    from memcollab_eval.construct.evidence import resolve_lessons

    problems = _problems(10)
    lessons = [{**_lesson(f"r{i}"), "source_problem_id": p.id} for i, p in enumerate(problems)]
    by_id = {p.id: p for p in problems}
    calls = []

    def generate_for(model):
        def generate(prompts, kwargs):
            calls.append([next(p.id for p in problems if p.doc["question"] in prompt) for prompt in prompts])
            return ["The answer is -7."] * len(prompts), 0.1, 1
        return generate

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = resolve_lessons([(e, "weak") for e in lessons], by_id, a, generate_for, lambda spec, s: {"until": []},
                            1, None, reverse=True, take_others=_sharing(a, b))
    assert calls[0] == [p.id for p in problems[::-1][:8]]  # the first batch is the end of the list
    calls.clear()
    second = resolve_lessons([(e, "weak") for e in lessons], by_id, b, generate_for, lambda spec, s: {"until": []},
                             1, None, take_others=_sharing(b, a))
    assert calls == [] and second == first  # every outcome taken from the other directory


def test_placebo_report_pairs_each_lesson_with_its_placebo():
    from memcollab_eval.construct.evidence import ResolveOutcome, lesson_key, placebo_lessons, placebo_report

    lessons = [{**_lesson(f"p{i}"), "source_problem_id": f"gsm8k/train/{i}", "source_benchmark": "gsm8k_train"}
               for i in range(7)]
    placebos = placebo_lessons(lessons)
    assert set(placebos) == {lesson_key(e) for e in lessons}
    for key, control in placebos.items():
        own = next(e for e in lessons if lesson_key(e) == key)
        assert control["source_problem_id"] == own["source_problem_id"] and control["enforce"] != own["enforce"]
    own = {lesson_key(e): ResolveOutcome(lesson_key(e), "weak", e["source_problem_id"], 1, 1, 0.0, 0) for e in lessons}
    control = {lesson_key(c): ResolveOutcome(lesson_key(c), "weak", c["source_problem_id"], 1, int(i == 0), 0.0, 0)
               for i, c in enumerate(placebos[k] for k in sorted(placebos))}
    report = placebo_report(own, control, placebos)
    assert (report["lessons"], report["own_passed"], report["placebo_passed"]) == (7, 7, 1)
    assert (report["own_only"], report["placebo_only"]) == (6, 0) and report["p_value_own_better"] == 1 / 64
    lone = [{**_lesson("x"), "source_problem_id": "gsm8k/train/0", "source_benchmark": "gsm8k_train"}]
    assert placebo_lessons(lone) == {}  # no other problem's lesson: no control
