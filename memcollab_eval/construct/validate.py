"""Held-out validation: keep a category's entries only if they do not hurt the target.

A pilot here saw ungated memory from a 1.5B summarizer take a 0.5B target from 24/30 to
15/30 on HumanEval. So, optionally, each category group of candidate entries is tried by
the target on a few held-out training problems of that category (never in the pool, never
an evaluation problem), with and without the memory; a group that breaks more problems
than it fixes is dropped. Results per group go into the manifest.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from memcollab_eval.adapters import get_spec
from memcollab_eval.bank.store import BankManifest, MemoryBank, entry_from_dict
from memcollab_eval.construct.categories import PoolCategorizer
from memcollab_eval.construct.pools import POOL_SOURCES, PoolProblem, categorized, eval_texts, load_source, normalise
from memcollab_eval.jsonl_store import append_records, read_records
from memcollab_eval.retrieve import RetrievalConfig, Retriever, render_memory
from memcollab_eval.scoring import score_response


@dataclass(frozen=True)
class GroupResult:
    category: str
    problems: int
    fixed: int
    broken: int

    @property
    def keep(self) -> bool:
        return self.broken <= self.fixed


def heldout_problems(sizes: dict[str, int | None], pool: list[PoolProblem], data_dir: str, seed: int,
                     categories: set[str], per_category: int, retag: PoolCategorizer | None = None,
                     scan: int | None = None) -> dict[str, list[PoolProblem]]:
    """Up to ``per_category`` training problems per category, outside the pool and every eval set.

    ``retag`` (``categorizer=llm``): the problems' categories are the model's, asked a batch at a
    time in the same seeded order; a source is read until every wanted category is full or ``scan``
    of its problems were categorized (a model answer costs a generation, and GSM8K train alone has
    7,473 problems)."""
    taken = {p.id for p in pool}
    evals = eval_texts(data_dir)
    found: dict[str, list[PoolProblem]] = defaultdict(list)

    def take(problems: list[PoolProblem]) -> None:
        for problem in retag.apply(problems) if retag is not None else problems:
            if problem.category in categories and len(found[problem.category]) < per_category:
                found[problem.category].append(problem)

    def full() -> bool:
        return all(len(found[c]) >= per_category for c in categories)

    for source in sorted(s for s, n in sizes.items() if n != 0):
        spec = get_spec(POOL_SOURCES[source][0])
        rows = load_source(source, data_dir)
        random.Random(f"{seed}:heldout:{source}").shuffle(rows)
        buffer: list[PoolProblem] = []
        scanned = 0
        for pid, row in rows:
            text = spec.text(row)
            if pid in taken or normalise(text) in evals:
                continue
            problem = categorized(source, pid, row)
            if retag is None:
                take([problem])
                continue
            if full() or (scan is not None and scanned >= scan):
                break
            buffer.append(problem)
            scanned += 1
            if len(buffer) >= retag.batch:
                take(buffer)
                buffer = []
        if buffer:
            take(buffer)
    return found


def _group_bank(entries: list[dict]) -> MemoryBank:
    manifest = BankManifest(name="validation", version=1, sha256="", n_entries=len(entries), sources=[],
                            summarizer="", config={})
    return MemoryBank(manifest, tuple(entry_from_dict(e) for e in entries))


def validate_groups(entries: list[dict], heldout: dict[str, list[PoolProblem]], generate_fn, work: Path,
                    gen_kwargs_for, sandbox) -> dict[str, GroupResult]:
    """Run the target on each group's held-out problems without and with the group's memory.

    ``generate_fn(prompts, gen_kwargs) -> list[str]``; outcomes are cached in
    ``validation.jsonl`` so an interrupted validation resumes.
    """
    path = work / "validation.jsonl"
    done = {(r["problem_id"], r["memory"]): r for r in read_records(path, ("problem_id", "memory", "passed"))}
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        groups[e["category"]].append(e)
    results = {}
    for category, group in sorted(groups.items()):
        retriever = Retriever(_group_bank(group), RetrievalConfig(model_filter=False, min_score=0.0), "")
        fixed = broken = 0
        problems = heldout.get(category, [])
        for p in problems:
            spec = get_spec(p.benchmark)
            # the group is one category already: rank within it, as evaluation would
            memory = render_memory(retriever.retrieve(spec.text(p.doc), category=None))
            outcome = {}
            for label, prompt in (("without", spec.prompt(p.doc)),
                                  ("with", (memory + "\n\n" if memory else "") + spec.prompt(p.doc))):
                key = (p.id, f"{label}:{category}")
                if key not in done:
                    text = generate_fn([prompt], gen_kwargs_for(spec))[0]
                    verdict = score_response(spec, p.doc, text, sandbox=sandbox)
                    done[key] = {"problem_id": p.id, "memory": key[1], "passed": verdict.passed}
                    append_records(path, [done[key]])
                outcome[label] = done[key]["passed"]
            fixed += outcome["with"] and not outcome["without"]
            broken += outcome["without"] and not outcome["with"]
        results[category] = GroupResult(category, len(problems), fixed, broken)
    return results


def summary(results: dict[str, GroupResult]) -> dict[str, dict]:
    return {c: {"problems": r.problems, "fixed": r.fixed, "broken": r.broken, "kept": r.keep}
            for c, r in sorted(results.items())}


__all__ = ["GroupResult", "heldout_problems", "summary", "validate_groups"]
