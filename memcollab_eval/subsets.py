"""Which problems of each benchmark a run evaluates.

lm-eval's ``limit`` takes the first N documents of every task. Comparisons at CPU scale want
more control: the whole of HumanEval but 60 problems of GSM8K (``limits``), and a seeded
random sample rather than the head of the file (``subset=seeded``), whose first rows may be
easier or harder than the rest. The chosen indices go to ``simple_evaluate(samples=...)``;
both twins of a benchmark get the same ones, and the same seed gives the same problems on
every machine (Python's ``random`` seeded with a string is stable across versions).
"""

from __future__ import annotations

import random
from pathlib import Path

from memcollab_eval.adapters import get_spec

SUBSETS = ("first", "seeded")


def subset_problems(benchmarks: list[str], limit: int | None, limits: dict[str, int | None], subset: str) -> list[str]:
    """Everything wrong with the subset settings, as messages (empty when usable)."""
    problems = []
    if subset not in SUBSETS:
        problems.append(f"subset must be one of {list(SUBSETS)}, got {subset!r}")
    if limit is not None and limit < 1:
        problems.append(f"limit must be >= 1 or null (the whole split), got {limit}")
    for name, value in limits.items():
        if name not in benchmarks:
            problems.append(f"limits.{name}: {name!r} is not among benchmarks={benchmarks}")
        elif value is not None and value < 1:
            problems.append(f"limits.{name} must be >= 1 or null (the whole split), got {value}")
    return problems


def benchmark_size(benchmark: str, data_dir: str | None) -> int:
    """Number of test documents, counted in the local JSONL (``data_dir``'s, else the package's own)."""
    fields = get_spec(benchmark).dataset_fields(data_dir)
    path = Path(fields["dataset_kwargs"]["data_files"]["test"])
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def problem_indices(benchmark: str, size: int, limit: int | None, subset: str, seed: int) -> list[int]:
    """Sorted document indices: all of them, the first ``limit``, or a seeded sample of ``limit``."""
    if limit is None or limit >= size:
        return list(range(size))
    if subset == "first":
        return list(range(limit))
    return sorted(random.Random(f"{seed}/{benchmark}").sample(range(size), limit))


def uses_samples(limits: dict[str, int | None], subset: str) -> bool:
    """Whether lm-eval's plain ``limit`` cannot express the selection."""
    return bool(limits) or subset != "first"


def selected_samples(benchmarks: list[str], task_names: dict[str, list[str]], data_dir: str | None,
                     limit: int | None, limits: dict[str, int | None], subset: str,
                     seed: int) -> dict[str, list[int]]:
    """``simple_evaluate(samples=...)``: task name -> indices, the same for a benchmark's twins."""
    chosen: dict[str, list[int]] = {}
    for benchmark in benchmarks:
        indices = benchmark_indices(benchmark, data_dir, limit, limits, subset, seed)
        for task in task_names[benchmark]:
            chosen[task] = indices
    return chosen


def benchmark_indices(benchmark: str, data_dir: str | None, limit: int | None, limits: dict[str, int | None],
                      subset: str, seed: int) -> list[int]:
    """The doc indices of one benchmark a run scores (``limits`` overrides ``limit`` per benchmark)."""
    n = limits[benchmark] if benchmark in limits else limit
    return problem_indices(benchmark, benchmark_size(benchmark, data_dir), n, subset, seed)


def describe(limit: int | None, limits: dict[str, int | None], subset: str) -> str:
    """One line for summaries and leaderboards, e.g. ``60 seeded (humaneval: all)``."""
    def count(n: int | None) -> str:
        return "all" if n is None else str(n)

    text = count(limit) + ("" if subset == "first" else f" {subset}")
    if limits:
        text += " (" + ", ".join(f"{k}: {count(v)}" for k, v in sorted(limits.items())) + ")"
    return text
