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

from memcollab_eval.adapters import BenchmarkSpec, get_spec
from memcollab_eval.bank.store import entry_from_dict
from memcollab_eval.construct.pools import PoolProblem
from memcollab_eval.jsonl_store import append_records, read_records
from memcollab_eval.retrieve import Retrieved, render_memory
from memcollab_eval.scoring import score_response

RESOLVE_BATCH = 8  # re-solve prompts per call: llama_cpp's default n_parallel
# generate(prompts, gen_kwargs) -> (texts, seconds, completion tokens); one call per batch of prompts
GenerateFn = Callable[[list[str], dict[str, Any]], tuple[list[str], float, int]]


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


def resolve_lessons(candidates: Sequence[tuple[dict, str]], problems: dict[str, PoolProblem], work: Path,
                    generate_for: Callable[[str], GenerateFn], kwargs_for: Callable[[BenchmarkSpec, int], dict],
                    samples: int, sandbox: Any) -> dict[str, ResolveOutcome]:
    """Re-solve each ``(entry, model)``: ``model`` (a source config name) answers the entry's source
    problem with the entry in its prompt, ``samples`` times. Returns outcomes by lesson key."""
    path = work / "resolve.jsonl"
    done = {(r["key"], r["model"], int(r["sample"])): r
            for r in read_records(path, ("key", "model", "sample", "status"))}
    out: dict[str, ResolveOutcome] = {}
    for model in sorted({m for _, m in candidates}):
        mine = [entry for entry, m in candidates if m == model]
        unique = list({lesson_key(entry): entry for entry in mine}.values())  # a lesson is re-solved once
        todo = [(entry, s) for entry in unique for s in range(samples) if (lesson_key(entry), model, s) not in done]
        # one call per (benchmark, sample) group of up to RESOLVE_BATCH prompts, so a batching backend decodes
        # them together; each group's records are appended when it ends (an interruption loses one group at most)
        groups: dict[tuple[str, int], list[dict]] = {}
        for entry, s in todo:
            groups.setdefault((problems[entry["source_problem_id"]].benchmark, s), []).append(entry)
        generate = generate_for(model) if todo else None
        for (benchmark, s), group in sorted(groups.items()):
            spec = get_spec(benchmark)
            for start in range(0, len(group), RESOLVE_BATCH):
                chunk = group[start:start + RESOLVE_BATCH]
                chunk_problems = [problems[entry["source_problem_id"]] for entry in chunk]
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
                done.update({(r["key"], model, s): r for r in records})
        for entry in mine:
            key = lesson_key(entry)
            records = [done[(key, model, s)] for s in range(samples)]
            out[key] = ResolveOutcome(key, model, entry["source_problem_id"], samples,
                                      sum(r["status"] == "pass" for r in records),
                                      sum(float(r.get("seconds") or 0) for r in records),
                                      sum(int(r.get("completion_tokens") or 0) for r in records))
    return out


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
    key: str
    problems: tuple[str, ...]
    fixed: tuple[str, ...]
    broken: tuple[str, ...]

    def admitted(self, rule: HeldoutRule) -> bool:
        return rule.admits(len(self.fixed), len(self.broken))

    def evidence(self, identity: str, rule: HeldoutRule) -> dict[str, Any]:
        out = {"target": identity, "problems": list(self.problems), "fixed": list(self.fixed),
               "broken": list(self.broken), "rule": rule.text()}
        if rule.kind == "sign_test":
            out["p_value"] = round(sign_test_p(len(self.fixed), len(self.broken)), 6)
        return out


def validate_lessons(entries: Sequence[dict], heldout: dict[str, list[PoolProblem]], work: Path,
                     generate: GenerateFn, kwargs_for: Callable[[BenchmarkSpec], dict],
                     sandbox: Any) -> tuple[dict[str, HeldoutOutcome], float, int]:
    """Each entry against its category's held-out problems, without and with it (the answers
    without memory are shared by every lesson of the category). Returns outcomes by lesson key,
    and the seconds and completion tokens this call generated."""
    path = work / "validation_lessons.jsonl"
    done = {(r["problem_id"], r["memory"]): bool(r["passed"])
            for r in read_records(path, ("problem_id", "memory", "passed"))}
    spent_seconds, spent_tokens = 0.0, 0

    def outcomes(problems: list[PoolProblem], label: str, build_prompt: Callable[[PoolProblem], str]) -> dict:
        nonlocal spent_seconds, spent_tokens
        todo = [p for p in problems if (p.id, label) not in done]
        by_spec: dict[str, list[PoolProblem]] = {}
        for p in todo:
            by_spec.setdefault(p.benchmark, []).append(p)
        for benchmark, group in sorted(by_spec.items()):
            spec = get_spec(benchmark)
            texts, seconds, tokens = generate([build_prompt(p) for p in group], kwargs_for(spec))
            spent_seconds, spent_tokens = spent_seconds + seconds, spent_tokens + tokens
            records = []
            for p, text in zip(group, texts, strict=True):
                passed = score_response(spec, p.doc, text, sandbox=sandbox).passed
                done[(p.id, label)] = passed
                records.append({"problem_id": p.id, "memory": label, "passed": passed})
            append_records(path, records)
        return {p.id: done[(p.id, label)] for p in problems}

    results: dict[str, HeldoutOutcome] = {}
    for entry in entries:
        problems = heldout.get(entry["category"], [])
        key = lesson_key(entry)
        without = outcomes(problems, "without", lambda p: get_spec(p.benchmark).prompt(p.doc))
        with_it = outcomes(problems, f"with:{key}",
                           lambda p, e=entry: with_lesson(e, get_spec(p.benchmark).prompt(p.doc)))
        results[key] = HeldoutOutcome(
            key, tuple(p.id for p in problems),
            tuple(p.id for p in problems if with_it[p.id] and not without[p.id]),
            tuple(p.id for p in problems if without[p.id] and not with_it[p.id]))
    return results, spent_seconds, spent_tokens


__all__ = ["HELDOUT_RULES", "HeldoutOutcome", "HeldoutRule", "sign_test_p", "ResolveOutcome", "lesson_key", "resolve_lessons", "validate_lessons", "with_lesson"]
