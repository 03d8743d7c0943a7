"""The preference rule: which trajectory is preferred, and which ones it is contrasted with.

MemCollab: the strongest source model's trajectory is preferred; if it failed and another
model succeeded, the strongest successful one is preferred instead. The preferred
trajectory is paired with every failed trajectory of the other models. A problem where all
fail, or all pass, yields no pair; the reason is recorded. The other memory sources the
paper compares against are variations of the same rule (self-contrast, self-memory) or
ablations applied to its output (random or reversed preferred side).

The signal that decides "passed" is pluggable (``preference=`` in the build config): the verifier
(the rule above, the default), a judge model's rubric scores (:func:`judge_pairs`: the highest
score is preferred and paired with every trajectory scored at least ``margin`` lower, ties going
to the stronger model, as the verifier rule prefers it), or human labels (:func:`label_pairs`:
exactly the labelled pairs). A pair records the signal that made it, so its distillation and its
entries say where the preference came from.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from memcollab_eval.construct.labels import Label
from memcollab_eval.construct.records import Key

SIGNALS = ("verifier", "judge", "labels")


@dataclass(frozen=True)
class Pair:
    problem_id: str
    preferred: Key
    unpreferred: Key | None  # None: self-memory (a success distilled without contrast)
    rule: str
    signal: str = "verifier"  # what chose the sides: verifier | judge | labels
    scores: tuple[int, int | None] | None = None  # judge: (preferred, unpreferred) scores
    label: str = ""  # labels: the file and line the pair came from


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
        flipped = None if p.scores is None else (p.scores[1], p.scores[0])
        out.append(replace(p, preferred=p.unpreferred, unpreferred=p.preferred, rule=f"{mode}: {p.rule}",
                           scores=flipped) if swap else p)  # type: ignore[arg-type]
    return out


def judge_pairs(problem_ids: Sequence[str], scores: Mapping[Key, int], candidates: Sequence[Sequence[Key]],
                margin: int) -> tuple[list[Pair], list[NoPair]]:
    """Pairs from judge scores. ``candidates`` holds, per problem (in ``problem_ids`` order), the
    trajectories that compete, in preference order for ties (strongest source first, or sample
    order); those without a score (the judge's reply named none) take no part."""
    pairs, skipped = [], []
    for pid, keys in zip(problem_ids, candidates, strict=True):
        scored = [k for k in keys if scores.get(k) is not None]
        if len(scored) < 2:
            unscored = len(keys) - len(scored)
            skipped.append(NoPair(pid, "fewer than two judged trajectories" +
                                  (f" ({unscored} judge replies named no score)" if unscored else "")))
            continue
        best = max(scores[k] for k in scored)
        preferred = next(k for k in scored if scores[k] == best)
        losers = [k for k in scored if scores[k] <= best - margin]
        if not losers:
            skipped.append(NoPair(pid, f"judge scores within the margin ({margin}) of each other"))
            continue
        pairs.extend(Pair(pid, preferred, k, f"judge {best} > {scores[k]}", "judge", (best, scores[k]))
                     for k in losers)
    return pairs, skipped


def judge_self_items(problem_ids: Sequence[str], scores: Mapping[Key, int], model: str, pass_score: int
                     ) -> tuple[list[Pair], list[NoPair]]:
    """Self-memory with a judge: each trajectory scored at least ``pass_score`` counts as a success."""
    pairs, skipped = [], []
    for pid in problem_ids:
        key = (pid, model, 0)
        score = scores.get(key)
        if score is not None and score >= pass_score:
            pairs.append(Pair(pid, key, None, f"judge {score} >= {pass_score}", "judge", (score, None)))
        else:
            skipped.append(NoPair(pid, "no judged trajectory" if score is None else
                                  f"judge score {score} below {pass_score}"))
    return pairs, skipped


def label_pairs(problem_ids: Sequence[str], labels: Sequence[Label], available: set[Key]
                ) -> tuple[list[Pair], list[NoPair]]:
    """Exactly the labelled pairs, in pool order and then file order; a problem without a label
    yields no pair, and so does a label whose trajectory this build has none of."""
    by_problem: dict[str, list[Label]] = {}
    for label in labels:
        by_problem.setdefault(label.problem_id, []).append(label)
    pairs, skipped = [], []
    for pid in problem_ids:
        mine = by_problem.get(pid, [])
        usable = [x for x in mine if x.preferred in available and x.unpreferred in available]
        if not usable:
            skipped.append(NoPair(pid, "no human label" if not mine else "labelled trajectories were not generated"))
            continue
        pairs.extend(Pair(pid, x.preferred, x.unpreferred, f"human label ({x.where})", "labels", label=x.where)
                     for x in usable)
    return pairs, skipped
