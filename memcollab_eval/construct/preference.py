"""The preference rule: which trajectory is preferred, and which ones it is contrasted with.

MemCollab: the strongest source model's trajectory is preferred; if it failed and another
model succeeded, the strongest successful one is preferred instead. The preferred
trajectory is paired with every failed trajectory of the other models. A problem where all
fail, or all pass, yields no pair; the reason is recorded. The other memory sources the
paper compares against are variations of the same rule (self-contrast, self-memory) or
ablations applied to its output (random or reversed preferred side).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from memcollab_eval.construct.records import Key


@dataclass(frozen=True)
class Pair:
    problem_id: str
    preferred: Key
    unpreferred: Key | None  # None: self-memory (a success distilled without contrast)
    rule: str


@dataclass(frozen=True)
class NoPair:
    problem_id: str
    reason: str


def memcollab_pairs(problem_ids: Sequence[str], passed: Mapping[Key, bool], models: Sequence[str]
                    ) -> tuple[list[Pair], list[NoPair]]:
    """Cross-model pairs; ``models`` is ordered strongest first; one sample per model."""
    pairs, skipped = [], []
    for pid in problem_ids:
        keys = [(pid, m, 0) for m in models if (pid, m, 0) in passed]
        if len(keys) < 2:
            skipped.append(NoPair(pid, "fewer than two verified trajectories"))
            continue
        winners = [k for k in keys if passed[k]]
        losers = [k for k in keys if not passed[k]]
        if not winners:
            skipped.append(NoPair(pid, "all models failed"))
            continue
        if not losers:
            skipped.append(NoPair(pid, "all models passed"))
            continue
        preferred = winners[0]
        rule = "strongest passed" if preferred == keys[0] else "strongest failed, weaker passed"
        pairs.extend(Pair(pid, preferred, loser, rule) for loser in losers)
    return pairs, skipped


def self_contrast_pairs(problem_ids: Sequence[str], passed: Mapping[Key, bool], model: str, samples: int
                        ) -> tuple[list[Pair], list[NoPair]]:
    """One model's own passing vs failing samples of the same problem (first of each)."""
    pairs, skipped = [], []
    for pid in problem_ids:
        keys = [(pid, model, s) for s in range(samples) if (pid, model, s) in passed]
        winners = [k for k in keys if passed[k]]
        losers = [k for k in keys if not passed[k]]
        if not winners or not losers:
            skipped.append(NoPair(pid, "all samples failed" if not winners else "all samples passed"))
            continue
        pairs.append(Pair(pid, winners[0], losers[0], "own pass vs own fail"))
    return pairs, skipped


def self_memory_items(problem_ids: Sequence[str], passed: Mapping[Key, bool], model: str
                      ) -> tuple[list[Pair], list[NoPair]]:
    """Self-memory: each of the model's successes alone, distilled without contrast."""
    pairs, skipped = [], []
    for pid in problem_ids:
        key = (pid, model, 0)
        if passed.get(key):
            pairs.append(Pair(pid, key, None, "own success"))
        else:
            skipped.append(NoPair(pid, "the model failed" if key in passed else "no verified trajectory"))
    return pairs, skipped


def apply_ablation(pairs: Sequence[Pair], mode: str, seed: int) -> list[Pair]:
    """``none``; ``reversed``: swap sides; ``random``: a seeded coin flip decides the preferred side."""
    if mode == "none":
        return list(pairs)
    if mode not in ("reversed", "random"):
        raise ValueError(f"unknown preference ablation {mode!r}; valid: none, reversed, random")
    rng = random.Random(seed)
    out = []
    for p in pairs:
        if p.unpreferred is None:
            raise ValueError("preference ablations need contrastive pairs, not self-memory")
        swap = True if mode == "reversed" else rng.random() < 0.5
        out.append(Pair(p.problem_id, p.unpreferred, p.preferred, f"{mode}: {p.rule}") if swap else p)
    return out
