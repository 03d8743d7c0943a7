"""Uncertainty for the leaderboard and the bank gate: bootstrap CIs, paired deltas, McNemar.

Why a percentile bootstrap over problems: evaluation subsets are small (often tens of problems)
and outcomes are 0/1, so normal-approximation intervals misbehave near 0 and 1; resampling
problems is exactly "another draw of problems from this benchmark". Why paired deltas: the
memory variant and the no-memory row answer the *same* problems (matched by ``memcollab_id``),
so resampling per-problem differences removes problem difficulty from the variance and gives
far tighter intervals than comparing two independent accuracies. The "average" column is a
macro mean over benchmarks, bootstrapped by resampling within each benchmark (stratified), so a
large benchmark does not drown a small one. Every resampling stream is seeded from the global
seed plus a key naming the cell, so a cell's interval does not change when other runs are added.

The second half applies these to the runs read by :mod:`memcollab_eval.leaderboard.runs`: one
``LeaderboardRow`` per (memory source, benchmark) cell and per macro average.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from memcollab_eval.config import BENCHMARK_NAMES
from memcollab_eval.leaderboard.records import AVERAGE, NO_MEMORY, LeaderboardRow, Run, TaskResult, differing_keys

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% bootstrap interval (``low``/``high`` None when not bootstrapped)."""

    value: float
    low: float | None
    high: float | None
    n: int


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def _interval(draws: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def stratified_mean(groups: Sequence[Sequence[float]], *, iters: int, seed: int, key: str) -> Estimate | None:
    """Macro mean of the group means, with a bootstrap CI that resamples within each group.

    With one group this is the plain percentile bootstrap of a mean. Empty groups are ignored;
    ``None`` when there is no data at all.
    """
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not arrays:
        return None
    value = float(np.mean([a.mean() for a in arrays]))
    n = sum(len(a) for a in arrays)
    if iters <= 0:
        return Estimate(value, None, None, n)
    rng = _rng(seed, key)
    draws = np.zeros(iters)
    for a in arrays:
        draws += a[rng.integers(0, len(a), size=(iters, len(a)))].mean(axis=1)
    return Estimate(value, *_interval(draws / len(arrays)), n)


def bootstrap_mean(values: Sequence[float], *, iters: int, seed: int, key: str) -> Estimate | None:
    """Mean of per-problem outcomes with a percentile bootstrap CI over problems."""
    return stratified_mean([values], iters=iters, seed=seed, key=key)


def paired_differences(with_memory: Mapping[str, float], baseline: Mapping[str, float]) -> list[float]:
    """Per-problem ``with_memory - baseline`` over the problem ids both saw (sorted by id, so
    the result does not depend on file order)."""
    return [with_memory[i] - baseline[i] for i in sorted(set(with_memory) & set(baseline))]


def paired_delta(pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], *, iters: int, seed: int,
                 key: str) -> Estimate | None:
    """Macro mean over benchmarks of the paired accuracy difference, with a stratified paired
    bootstrap CI (one ``(with_memory, baseline)`` pair of id->outcome maps per benchmark).
    ``None`` when no problem id is shared."""
    return stratified_mean([paired_differences(m, b) for m, b in pairs], iters=iters, seed=seed, key=key)


def mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


T = TypeVar("T")


def partition_compatible(items: Sequence[T], conflicts: Callable[[T, T], Sequence[str]]) -> list[list[T]]:
    """Greedy partition (in the given order) into groups whose members conflict pairwise on
    nothing: results are only pooled or compared inside a group."""
    groups: list[list[T]] = []
    for item in items:
        home = next((g for g in groups if not any(conflicts(item, m) for m in g)), None)
        if home is None:
            groups.append([item])
        else:
            home.append(item)
    return groups


@dataclass(frozen=True)
class Flips:
    """Per-problem changes between two sets of outcomes on the same problems."""

    fixed: tuple[str, ...]   # wrong before, right now
    broken: tuple[str, ...]  # right before, wrong now
    n: int                   # problems compared

    @property
    def p_value(self) -> float:
        return mcnemar_exact(len(self.fixed), len(self.broken))


def flips(before: Mapping[str, float], after: Mapping[str, float]) -> Flips:
    common = sorted(set(before) & set(after))
    fixed = tuple(i for i in common if before[i] < 0.5 <= after[i])
    broken = tuple(i for i in common if after[i] < 0.5 <= before[i])
    return Flips(fixed, broken, len(common))


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar test (a sign test on the discordant pairs): the probability,
    under "the bank changes nothing", of a split at least this uneven. 1.0 with no flips."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# ---- the leaderboard's tables --------------------------------------------------------------

def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
    """Settings groups, oldest run first: members agree pairwise on every shared setting
    (see ``leaderboard.differing_keys``), so only comparable runs are pooled or paired."""
    return partition_compatible(sorted(runs, key=lambda r: r.date), differing_keys)


def cell_row(group: str, target: str, source: str, bench: str, picked: list[tuple[Run, TaskResult]],
             base: list[tuple[Run, TaskResult]], iters: int, seed: int, note: str = "") -> LeaderboardRow:
    """One cell (one benchmark, or the macro average when ``picked`` holds several)."""
    # The seed key leaves out the settings group: its letter depends on which other runs were read,
    # and a table's intervals must not move when runs of another setting are added beside it.
    key = f"{target}|{source}|{bench}"
    tasks = [t for _, t in picked]
    if all(t.samples for t in tasks):
        acc = stratified_mean([[s.acc for s in sorted(t.samples, key=lambda s: s.id)] for t in tasks],
                              iters=iters, seed=seed, key=key)
    else:
        acc = Estimate(sum(t.accuracy for t in tasks) / len(tasks), None, None, sum(t.n for t in tasks))
    base_by_bench = {t.benchmark: t for _, t in base}
    pairs = [(t.outcomes(), base_by_bench[t.benchmark].outcomes()) for t in tasks
             if source != NO_MEMORY and t.benchmark in base_by_bench]
    delta = paired_delta(pairs, iters=iters, seed=seed, key=key + "|delta") if pairs else None
    samples = [s for t in tasks for s in t.samples]
    abst = [float(s.abstained) for s in samples if s.abstained is not None]
    abstain = None if source == NO_MEMORY else (mean_or_none(abst) if abst else mean_or_none(
        [t.abstain_rate for t in tasks if t.abstain_rate is not None]))
    exact = bool(samples) and all(s.memory_tokens is not None for s in samples)
    tokens = None if source == NO_MEMORY or not samples else mean_or_none(
        [float(s.memory_tokens) if exact else s.memory_chars / 4 for s in samples])  # type: ignore[arg-type]
    return LeaderboardRow(
        group, target, source, bench, acc.n, acc.value, acc.low, acc.high,
        None if delta is None else delta.value, None if delta is None else delta.low,
        None if delta is None else delta.high, 0 if delta is None else delta.n, abstain, tokens,
        tokens is not None and not exact, mean_or_none([s.turns for s in samples if s.turns is not None]),
        " ".join(sorted({r.label for r, _ in picked})), note, picked[0][0].target_origin)


def table_rows(group: str, target: str, runs: list[Run], iters: int, seed: int,
               notes: list[str]) -> list[LeaderboardRow]:
    """The rows of one (settings group, target) table: per memory source and benchmark the
    latest run's cell plus the macro average; repeated runs are named in ``notes``."""
    chosen: dict[tuple[str, str], tuple[Run, TaskResult]] = {}
    ignored: dict[tuple[str, str], list[str]] = {}
    for run in sorted(runs, key=lambda r: r.date):
        for t in run.tasks:
            k = (run.source if t.with_memory else NO_MEMORY, t.benchmark)
            if k in chosen:
                old = chosen[k]
                ignored.setdefault(k, []).append(old[0].label)
                if not t.with_memory and t.samples and old[1].samples:
                    a, b = old[1].outcomes(), t.outcomes()
                    differ = sum(a[i] != b[i] for i in set(a) & set(b))
                    if differ:
                        notes.append(f"{target} / no memory / {k[1]}: repeated no-memory runs disagree on {differ} "
                                     f"problem(s) ({old[0].label} vs {run.label}; non-deterministic decoding?)")
            chosen[k] = (run, t)
    merged: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (source, bench), labels in ignored.items():
        merged.setdefault((source, chosen[(source, bench)][0].label, tuple(labels)), []).append(bench)
    notes += [f"{target} / {source}: run more than once for {', '.join(b)}; using the latest run {used}, "
              f"ignoring {', '.join(old)}" for (source, used, old), b in merged.items()]
    sources = sorted({s for s, _ in chosen}, key=lambda s: (s != NO_MEMORY, s))
    benches = [b for b in BENCHMARK_NAMES if any(bb == b for _, bb in chosen)]
    base = [chosen[(NO_MEMORY, b)] for b in benches if (NO_MEMORY, b) in chosen]
    rows = []
    for source in sources:
        picked = [chosen[(source, b)] for b in benches if (source, b) in chosen]
        rows += [cell_row(group, target, source, t.benchmark, [(r, t)], base, iters, seed) for r, t in picked]
        partial = f"macro mean over {len(picked)} of {len(benches)} benchmarks" if len(picked) < len(benches) else ""
        rows.append(cell_row(group, target, source, AVERAGE, picked, base, iters, seed, partial))
    return rows


__all__ = ["CONFIDENCE", "Estimate", "Flips", "bootstrap_mean", "cell_row", "flips", "group_runs", "mcnemar_exact",
           "mean_or_none", "paired_delta", "paired_differences", "partition_compatible", "stratified_mean", "table_rows"]
