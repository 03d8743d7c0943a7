"""Evidence gates: a lesson enters the bank only when it was seen to help.

Why: the abstraction lint admits any lesson that names no numbers, names or identifiers, and
the CPU-scale comparison found that such banks cost their targets points (docs/reproduction.md).
Two checks ask the question the lint cannot, "does this lesson help anyone?":

* **Re-solve.** The unpreferred model (the one whose failure the lesson was distilled from)
  gets the lesson in its prompt and must now pass the lesson's own source problem: if the
  lesson cannot fix the very mistake it describes, it explains nothing. ``resolve_samples``
  tries (the first as the build decodes, the others sampled at temperature 0.7 with seeds);
  admitted when at least ``resolve_min_pass`` pass. Self-memory lessons have no unpreferred
  trajectory and are not re-solved (their evidence says so).
* **Held-out paired validation, per lesson.** The target (the weakest source by default)
  answers ``validate_per_category`` unseen training problems of the lesson's category
  (outside the pool and every evaluation set) without and with the lesson. Admitted when
  fixed - broken >= ``validate_min_net`` and broken <= ``validate_max_broken`` (``validate_rule=net``),
  or when a one-sided exact sign test on fixed vs broken gives p <= ``validate_alpha``
  (``validate_rule=sign_test``).

Every outcome is a JSONL record in the work directory (``resolve.jsonl``,
``validation_lessons.jsonl``), so an interrupted build resumes without regenerating, and each
admitted entry carries its evidence (results and problem ids) into the bank.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from memcollab_eval.adapters import BenchmarkSpec, get_spec
from memcollab_eval.bank.store import entry_from_dict
from memcollab_eval.construct.pools import POOL_SOURCES, PoolProblem
from memcollab_eval.jsonl_store import append_records, read_records
from memcollab_eval.retrieve import Retrieved, render_memory
from memcollab_eval.scoring import score_response

RESOLVE_BATCH = 8  # re-solve prompts per call: llama_cpp's default n_parallel
# generate(prompts, gen_kwargs) -> (texts, seconds, completion tokens); one call per batch of prompts
GenerateFn = Callable[[list[str], dict[str, Any]], tuple[list[str], float, int]]
# take_others(file name, key of a record, whether this process has a key) -> (the records another process made
# meanwhile (evidence_from), already appended to this work directory's file; the keys of the records that
# process made itself, not those it took from this one); looked at before every batch
TakeOthers = Callable[[str, Callable[[dict], Any], Callable[[Any], bool]], tuple[list[dict], set]]


def lesson_key(entry: dict) -> str:
    """A stable key of a candidate lesson (its source problem and text), independent of its id."""
    text = f"{entry['source_problem_id']}|{entry['enforce']}|{entry['avoid']}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_lesson(entry: dict, prompt: str) -> str:
    """The prompt with this one lesson prepended, rendered exactly as evaluation renders memory."""
    memory = render_memory([Retrieved(entry_from_dict({**entry, "id": entry.get("id") or "candidate"}), 1.0)])
    return memory + "\n\n" + prompt


@dataclass(frozen=True)
class ResolveOutcome:
    key: str
    model: str
    problem_id: str
    samples: int
    passed: int
    seconds: float
    tokens: int

    def admitted(self, min_pass: int) -> bool:
        return self.passed >= min_pass

    def evidence(self, identity: str, min_pass: int) -> dict[str, Any]:
        return {"model": identity, "problem_id": self.problem_id, "passed": self.passed, "samples": self.samples,
                "rule": f"passes at least {min_pass} of {self.samples}"}


def _resolve_key(record: dict) -> tuple[str, str, int]:
    return record["key"], record["model"], int(record["sample"])


def resolve_lessons(candidates: Sequence[tuple[dict, str]], problems: dict[str, PoolProblem], work: Path,
                    generate_for: Callable[[str], GenerateFn], kwargs_for: Callable[[BenchmarkSpec, int], dict],
                    samples: int, sandbox: Any, reverse: bool = False,
                    take_others: TakeOthers | None = None) -> dict[str, ResolveOutcome]:
    """Re-solve each ``(entry, model)``: ``model`` (a source config name) answers the entry's source
    problem with the entry in its prompt, ``samples`` times. Returns outcomes by lesson key.

    ``reverse`` takes the to-do list from its end and ``take_others`` brings in another process's
    outcomes before every batch, so two processes share the work and meet in the middle."""
    path = work / "resolve.jsonl"
    done = {_resolve_key(r): r for r in read_records(path, ("key", "model", "sample", "status"))}

    def pull() -> None:
        if take_others is not None:
            done.update({_resolve_key(r): r for r in take_others("resolve.jsonl", _resolve_key, done.__contains__)[0]})

    out: dict[str, ResolveOutcome] = {}
    for model in sorted({m for _, m in candidates}):
        mine = [entry for entry, m in candidates if m == model]
        unique = list({lesson_key(entry): entry for entry in mine}.values())  # a lesson is re-solved once
        # one call per (benchmark, sample) group of up to RESOLVE_BATCH prompts, so a batching backend decodes
        # them together; each group's records are appended when it ends (an interruption loses one group at most)
        groups: dict[tuple[str, int], list[dict]] = {}
        for entry in unique:
            for s in range(samples):
                groups.setdefault((problems[entry["source_problem_id"]].benchmark, s), []).append(entry)
        queue = [(benchmark, s, entry) for (benchmark, s), group in sorted(groups.items()) for entry in group]
        if reverse:
            queue.reverse()
        generate = None
        while True:
            pull()
            queue = [q for q in queue if (lesson_key(q[2]), model, q[1]) not in done]
            if not queue:
                break
            benchmark, s = queue[0][0], queue[0][1]
            chunk = [entry for b, t, entry in queue if (b, t) == (benchmark, s)][:RESOLVE_BATCH]
            spec = get_spec(benchmark)
            chunk_problems = [problems[entry["source_problem_id"]] for entry in chunk]
            generate = generate or generate_for(model)
            texts, seconds, tokens = generate([with_lesson(entry, spec.prompt(problem.doc))
                                               for entry, problem in zip(chunk, chunk_problems, strict=True)],
                                              kwargs_for(spec, s))
            records = []
            for entry, problem, text in zip(chunk, chunk_problems, texts, strict=True):
                verdict = score_response(spec, problem.doc, text, sandbox=sandbox)
                records.append({"key": lesson_key(entry), "model": model, "sample": s, "problem_id": problem.id,
                                "status": verdict.status, "seconds": round(seconds / len(chunk), 3),
                                "completion_tokens": round(tokens / len(chunk))})
            append_records(path, records)
            done.update({_resolve_key(r): r for r in records})
        for entry in mine:
            key = lesson_key(entry)
            records = [done[(key, model, s)] for s in range(samples)]
            out[key] = ResolveOutcome(key, model, entry["source_problem_id"], samples,
                                      sum(r["status"] == "pass" for r in records),
                                      sum(float(r.get("seconds") or 0) for r in records),
                                      sum(int(r.get("completion_tokens") or 0) for r in records))
    return out


def placebo_lessons(entries: Sequence[dict]) -> dict[str, dict]:
    """A control for re-solve: for each lesson (by key), its own source problem with another pair's
    lesson text instead of its own. The other lesson is from another source problem of the same
    source (else of the same domain, math or code), so it has the form and domain of a lesson but
    is not about this problem's mistake: the next such lesson in key order (wrapping), so the
    choice is fixed. Lessons with no such partner get no control.

    Why: a model this small answers differently whenever its prompt changes, so some failed
    problems pass again with any text prepended. A lesson's re-solve shows something only if it
    passes more often than a lesson from elsewhere does on the same problem."""
    def domain(source: str) -> str:
        benchmark = POOL_SOURCES[source][0] if source in POOL_SOURCES else source
        return get_spec(benchmark).domain

    unique = sorted({lesson_key(e): e for e in entries}.items())
    out: dict[str, dict] = {}
    for i, (key, entry) in enumerate(unique):
        others = [o for _, o in unique[i + 1:] + unique[:i] if o["source_problem_id"] != entry["source_problem_id"]
                  and (o["enforce"], o["avoid"]) != (entry["enforce"], entry["avoid"])]  # a same text is no control
        other = next((o for o in others if o["source_benchmark"] == entry["source_benchmark"]),
                     next((o for o in others if domain(o["source_benchmark"]) == domain(entry["source_benchmark"])),
                          None))
        if other is not None:
            out[key] = {**entry, "enforce": other["enforce"], "avoid": other["avoid"]}
    return out


def placebo_report(own: dict[str, ResolveOutcome], control: dict[str, ResolveOutcome],
                   placebos: dict[str, dict]) -> dict[str, Any]:
    """Re-solve with each lesson's own text against its placebo, paired by lesson: how many passed
    (at least one sample) each way, and the exact sign test on the discordant lessons."""
    pairs = [(own[k].passed > 0, control[lesson_key(placebos[k])].passed > 0) for k in sorted(placebos) if k in own]
    own_only = sum(a and not b for a, b in pairs)
    placebo_only = sum(b and not a for a, b in pairs)
    return {"lessons": len(pairs), "own_passed": sum(a for a, _ in pairs), "placebo_passed": sum(b for _, b in pairs),
            "own_only": own_only, "placebo_only": placebo_only,
            "p_value_own_better": round(sign_test_p(own_only, placebo_only), 6),
            "placebo": "another pair's lesson (another problem of the same source, else of the same domain) "
                       "on the lesson's own source problem"}


HELDOUT_RULES = ("net", "sign_test")


def sign_test_p(fixed: int, broken: int) -> float:
    """One-sided exact sign test on the discordant pairs: the chance of at least ``fixed`` fixes among
    ``fixed + broken`` flips if the lesson were as likely to break as to fix (each flip a fair coin).
    1.0 when nothing flipped."""
    n = fixed + broken
    return sum(math.comb(n, k) for k in range(fixed, n + 1)) / 2 ** n if n else 1.0


@dataclass(frozen=True)
class HeldoutRule:
    """When held-out flips admit a lesson. ``net``: fixed - broken >= min_net and broken <= max_broken
    (a count rule: on 10 problems, 1 fix and 0 breaks passes, which noise alone often gives).
    ``sign_test``: the exact sign test's p <= alpha (5 fixed and 0 broken give p = 0.031, so it asks
    for more problems per category)."""

    kind: str = "net"
    min_net: int = 1
    max_broken: int = 1
    alpha: float = 0.05

    def admits(self, fixed: int, broken: int) -> bool:
        if self.kind == "sign_test":
            return fixed > broken and sign_test_p(fixed, broken) <= self.alpha
        return fixed - broken >= self.min_net and broken <= self.max_broken

    def text(self) -> str:
        if self.kind == "sign_test":
            return f"one-sided exact sign test on fixed vs broken, p <= {self.alpha}"
        return f"fixed - broken >= {self.min_net} and broken <= {self.max_broken}"


@dataclass(frozen=True)
class HeldoutOutcome:
    """One lesson's paired held-out result. ``problems`` are the ones it was tried on: all of its
    category's, unless the build stopped early because no answer still to come could admit it
    (``untried`` then names the problems left out)."""

    key: str
    problems: tuple[str, ...]
    fixed: tuple[str, ...]
    broken: tuple[str, ...]
    untried: tuple[str, ...] = ()
    failing_tried: int = 0  # of ``problems``, how many the target fails without memory (the ones that can be fixed)

    def admitted(self, rule: HeldoutRule) -> bool:
        return not self.untried and rule.admits(len(self.fixed), len(self.broken))

    def evidence(self, identity: str, rule: HeldoutRule) -> dict[str, Any]:
        out = {"target": identity, "problems": list(self.problems), "fixed": list(self.fixed),
               "broken": list(self.broken), "rule": rule.text()}
        if rule.kind == "sign_test":
            out["p_value"] = round(sign_test_p(len(self.fixed), len(self.broken)), 6)
        return out


@dataclass
class _LessonTrial:
    """A lesson on its way through its category's held-out problems, in the order they are tried:
    the problems the target fails without memory first (only they can be fixed), then the ones it
    passes (only they can be broken)."""

    entry: dict
    key: str
    order: list[PoolProblem]
    tried: int = 0
    fixed: int = 0
    broken: int = 0
    fixable_left: int = 0
    closed: bool = False


def validate_lessons(entries: Sequence[dict], heldout: dict[str, list[PoolProblem]], work: Path,
                     generate: GenerateFn, kwargs_for: Callable[[BenchmarkSpec], dict],
                     sandbox: Any, stop_early: HeldoutRule | None = None, batch: int = RESOLVE_BATCH,
                     reverse: bool = False, take_others: TakeOthers | None = None,
                     ) -> tuple[dict[str, HeldoutOutcome], float, int]:
    """Each entry against its category's held-out problems, without and with it (the answers
    without memory are shared by every lesson of the category). Returns outcomes by lesson key,
    and the seconds and completion tokens this call generated.

    With ``stop_early`` (the rule that will judge the outcomes) a lesson stops being tried as soon
    as even its best case, every problem still to try that fails without memory fixed and nothing
    more broken, would not be admitted. The rule's decisions are the same as with every problem
    tried (both rules only get easier to pass with more fixes and fewer breaks); what is saved is
    the generation. Most candidate lessons flip nothing, so they are refused after the problems
    the target fails, and the ones it passes are never asked with them. The lessons still open
    are tried in rounds of ``batch`` prompts: the first ``batch`` open lessons one problem each (fewer
    lessons get more problems each; a batching backend decodes a round in about the time of one).

    ``reverse`` takes the categories and lessons from the end of the list and ``take_others`` brings
    in another process's answers before every round, so two processes meet in the middle; a lesson
    the other process has begun is left to it while this one has others to try."""
    path = work / "validation_lessons.jsonl"
    done = {(r["problem_id"], r["memory"]): bool(r["passed"])
            for r in read_records(path, ("problem_id", "memory", "passed"))}
    spent = [0.0, 0]

    made_by = str(work.resolve())  # each answer names the directory whose process made it (another may take it)
    started_here: set[str] = set()  # the lessons (labels) this call has asked about
    started_there: set[str] = set()  # the labels another process (take_others) has answers for

    def pull() -> None:
        if take_others is not None:
            taken, there = take_others(path.name, lambda r: (r["problem_id"], r["memory"]), done.__contains__)
            for r in taken:
                done[(r["problem_id"], r["memory"])] = bool(r["passed"])
            started_there.update(label for _, label in there)

    def answer(asks: list[tuple[PoolProblem, str, str]]) -> None:
        """Generate and score the (problem, label, prompt) triples not yet recorded, a call per benchmark."""
        by_spec: dict[str, list[tuple[PoolProblem, str, str]]] = {}
        for ask in asks:
            if (ask[0].id, ask[1]) not in done:
                by_spec.setdefault(ask[0].benchmark, []).append(ask)
        for benchmark, group in sorted(by_spec.items()):
            spec = get_spec(benchmark)
            texts, seconds, tokens = generate([prompt for _, _, prompt in group], kwargs_for(spec))
            spent[0] += seconds
            spent[1] += tokens
            records = []
            for (p, label, _), text in zip(group, texts, strict=True):
                passed = score_response(spec, p.doc, text, sandbox=sandbox).passed
                done[(p.id, label)] = passed
                records.append({"problem_id": p.id, "memory": label, "passed": passed, "by": made_by})
            append_records(path, records)

    categories = sorted({e["category"] for e in entries}, reverse=reverse)
    for c in categories:  # the answers without memory, a category at a time
        pull()
        answer([(p, "without", get_spec(p.benchmark).prompt(p.doc)) for p in heldout.get(c, [])])
    pull()
    trials = []
    for entry in {lesson_key(e): e for e in entries}.values():  # a lesson is tried once
        problems = heldout.get(entry["category"], [])
        failing = [p for p in problems if not done[(p.id, "without")]]
        trials.append(_LessonTrial(entry, lesson_key(entry), failing + [p for p in problems if p not in failing],
                                   fixable_left=len(failing)))
    if reverse:
        trials.reverse()

    def settle(trial: _LessonTrial) -> None:
        """Count the recorded answers in order; close the trial when it is through or decided."""
        label = f"with:{trial.key}"
        while not trial.closed:
            if stop_early is not None and not stop_early.admits(trial.fixed + trial.fixable_left, trial.broken):
                trial.closed = True  # even the best case left would be refused
            elif trial.tried == len(trial.order):
                trial.closed = True
            elif (trial.order[trial.tried].id, label) not in done:
                return
            else:
                p = trial.order[trial.tried]
                with_it, without = done[(p.id, label)], done[(p.id, "without")]
                trial.tried += 1
                trial.fixable_left -= not without
                trial.fixed += with_it and not without
                trial.broken += without and not with_it

    for trial in trials:
        settle(trial)
    with tqdm(total=len(trials), desc="held-out validation", unit="lesson", disable=not trials) as bar:
        bar.update(sum(t.closed for t in trials))
        while open_trials := [t for t in trials if not t.closed]:
            # a lesson another process is trying is left to it (both started it: the forward one keeps it),
            # unless nothing else is left to do
            free = [t for t in open_trials if f"with:{t.key}" not in started_there
                    or (not reverse and f"with:{t.key}" in started_here)]
            lead = (free or open_trials)[:batch]
            step = -(-batch // len(lead))  # enough problems per lesson to fill a batch
            started_here.update(f"with:{t.key}" for t in lead)
            if free:
                picks = [(t, t.order[t.tried:t.tried + step]) for t in lead]
            else:  # helping with the other's lessons: from the end of each one's problems, to meet in the middle
                picks = [(t, [p for p in t.order[t.tried:] if (p.id, f"with:{t.key}") not in done][-step:])
                         for t in lead]
            answer([(p, f"with:{t.key}", with_lesson(t.entry, get_spec(p.benchmark).prompt(p.doc)))
                    for t, chosen in picks for p in chosen])
            pull()  # another process may have settled lessons this one has not reached
            for t in open_trials:
                settle(t)
            bar.update(sum(t.closed for t in open_trials))

    results: dict[str, HeldoutOutcome] = {}
    for t in trials:
        # the problems in their category's order, not in the order tried: the evidence (and so the bank's
        # bytes) is the same with and without stopping early
        position = {p.id: i for i, p in enumerate(heldout.get(t.entry["category"], []))}
        tried = sorted(t.order[:t.tried], key=lambda p: position[p.id])
        label = f"with:{t.key}"
        results[t.key] = HeldoutOutcome(
            t.key, tuple(p.id for p in tried),
            tuple(p.id for p in tried if done[(p.id, label)] and not done[(p.id, "without")]),
            tuple(p.id for p in tried if done[(p.id, "without")] and not done[(p.id, label)]),
            tuple(p.id for p in t.order[t.tried:]),
            sum(not done[(p.id, "without")] for p in tried))
    return results, spent[0], spent[1]


def flip_rates(outcomes: Sequence[HeldoutOutcome]) -> dict[str, Any]:
    """Over every lesson tried: how often a lesson fixed a held-out problem the target fails without
    memory, and broke one it passes. The per-lesson rule sees a few problems; these totals show
    whether the candidate lessons move the target at all, and which way."""
    failing = sum(o.failing_tried for o in outcomes)
    passing = sum(len(o.problems) - o.failing_tried for o in outcomes)
    fixed, broken = sum(len(o.fixed) for o in outcomes), sum(len(o.broken) for o in outcomes)
    return {"fixed": fixed, "tried_on_failing": failing, "fix_rate": round(fixed / failing, 4) if failing else None,
            "broken": broken, "tried_on_passing": passing, "break_rate": round(broken / passing, 4) if passing else None}


__all__ = ["HELDOUT_RULES", "HeldoutOutcome", "HeldoutRule", "ResolveOutcome", "TakeOthers", "flip_rates",
           "lesson_key", "placebo_lessons", "placebo_report", "resolve_lessons", "sign_test_p", "validate_lessons", "with_lesson"]
