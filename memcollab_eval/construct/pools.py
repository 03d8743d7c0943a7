"""Problem pools for bank building: training splits only, never an evaluation problem.

Each pool problem is kept in the schema of the benchmark it is prompted and scored like
(MATH train rows look like MATH500 rows, GSM8K train like GSM8K test, MBPP train like MBPP
test), so bank building uses exactly the evaluation's prompts and verifiers. A leakage
check refuses any pool sharing a problem with MATH500, GSM8K test, MBPP test or HumanEval
(exact and whitespace/case-normalised text).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcollab_eval.adapters import get_spec
from memcollab_eval.categorize import categorize
from memcollab_eval.construct.open_task import concept_rows, task_spec
from memcollab_eval.packaged_data import packaged_file

# source name -> (benchmark whose prompt/scorer it uses, local files relative to the data dir)
POOL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "math_train": ("math500", ("math_train/train.jsonl",)),
    "gsm8k_train": ("gsm8k", ("gsm8k/train.jsonl",)),
    "mbpp_train": ("mbpp", ("mbpp/train.jsonl", "mbpp/validation.jsonl", "mbpp/prompt.jsonl")),
}
# open-ended sources ship with the package (no data_dir); each row names its own benchmark
OPEN_SOURCES = {"concepts": concept_rows}
EVAL_FILES = {"math500": "math500/test.jsonl", "gsm8k": "gsm8k/test.jsonl", "mbpp": "mbpp/test.jsonl",
              "humaneval": "humaneval/HumanEval.jsonl"}


class PoolError(ValueError):
    """A pool that cannot be built: bad config, missing data, or leakage into evaluation sets."""


@dataclass(frozen=True)
class PoolProblem:
    """One training problem, in the row schema of the benchmark that prompts and scores it."""

    id: str
    benchmark: str
    source: str
    category: str
    subcategory: str
    doc: dict[str, Any] = field(hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "benchmark": self.benchmark, "source": self.source, "category": self.category,
                "subcategory": self.subcategory, "doc": self.doc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PoolProblem":
        return cls(d["id"], d["benchmark"], d["source"], d["category"], d["subcategory"], d["doc"])


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


POOL_DATA_HINT = ("training pools are read from MEMCOLLAB_DATA_DIR (or data_dir=), a folder with "
                  "math_train/train.jsonl, gsm8k/train.jsonl and mbpp/{train,validation,prompt}.jsonl; they are not "
                  "shipped with the package and not fetched from the Hugging Face hub")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise PoolError(f"pool data file {path} not found: {POOL_DATA_HINT}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _as_benchmark_row(source: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(problem id, row in the benchmark's schema)."""
    if source == "math_train":
        row = {**row, "subject": row.get("subject", row.get("type", ""))}
    return get_spec(POOL_SOURCES[source][0]).problem_id(row, split="train"), row


def categorized(source: str, pid: str, row: dict[str, Any], benchmark: str | None = None) -> PoolProblem:
    """A training row as a pool problem, with the categorizer evaluation uses (MATH: its subject)."""
    spec = task_spec(benchmark or POOL_SOURCES[source][0])
    cat = categorize(spec.text(row), domain=spec.domain, benchmark=spec.name,
                     subject=spec.subject(row))
    return PoolProblem(pid, spec.name, source, cat.category, cat.subcategory, row)


def load_source(source: str, data_dir: str) -> list[tuple[str, dict[str, Any]]]:
    if source in OPEN_SOURCES:
        return [(pid, row) for pid, _, row in OPEN_SOURCES[source]()]
    if source not in POOL_SOURCES:
        raise PoolError(f"unknown pool source {source!r}; valid: {sorted([*POOL_SOURCES, *OPEN_SOURCES])}")
    rows: list[tuple[str, dict[str, Any]]] = []
    for rel in POOL_SOURCES[source][1]:
        rows.extend(_as_benchmark_row(source, r) for r in _read_jsonl(Path(data_dir) / rel))
    return rows


def eval_texts(data_dir: str | None) -> dict[str, str]:
    """Normalised text of every evaluation problem -> its benchmark and id (for leakage checks):
    ``data_dir``'s copy of an evaluation set when it has one, else the package's own."""
    out: dict[str, str] = {}
    for bench, rel in EVAL_FILES.items():
        spec = get_spec(bench)
        local = Path(data_dir) / rel if data_dir else None
        for row in _read_jsonl(local if local is not None and local.exists() else packaged_file(rel)):
            pid = row.get("unique_id") or row.get("task_id") or row["question"][:40]
            out[normalise(spec.text(row))] = f"{bench}:{pid}"
    return out


def check_leakage(problems: list[PoolProblem], data_dir: str, evals: dict[str, str] | None = None) -> None:
    """Refuse a pool that shares a problem with any evaluation set."""
    evals = evals if evals is not None else eval_texts(data_dir)
    leaks = []
    for p in problems:
        text = task_spec(p.benchmark).text(p.doc)
        hit = evals.get(text) or evals.get(normalise(text))
        if hit:
            leaks.append(f"{p.id} == {hit}")
    if leaks:
        shown = "; ".join(leaks[:10]) + (f"; ... ({len(leaks)} in all)" if len(leaks) > 10 else "")
        raise PoolError(f"refusing a pool that shares problems with evaluation sets: {shown}")


def build_pool(sizes: dict[str, int | None], data_dir: str | None, seed: int,
               excluded: dict[str, list[str]] | None = None) -> list[PoolProblem]:
    """Seeded sample of each source (``None`` = all of it), categorized, leakage-checked.

    Training rows whose text is also an evaluation problem (MBPP's train split repeats
    some test problems) are removed before sampling and listed in ``excluded``; the final
    leakage check then guards the result.
    """
    problems: list[PoolProblem] = []
    evals = eval_texts(data_dir)
    for source in sorted(sizes):
        size = sizes[source]
        if size == 0:
            continue
        benchmark_of = {pid: b for pid, b, _ in OPEN_SOURCES[source]()} if source in OPEN_SOURCES else {}
        rows, overlap = [], []
        for pid, row in load_source(source, data_dir):
            spec = task_spec(benchmark_of.get(pid) or POOL_SOURCES[source][0])
            (overlap if normalise(spec.text(row)) in evals else rows).append((pid, row))
        if excluded is not None and overlap:
            excluded[source] = [pid for pid, _ in overlap]
        if size is not None and size < len(rows):
            rows = random.Random(f"{seed}:{source}").sample(rows, size)
        problems.extend(categorized(source, pid, row, benchmark_of.get(pid)) for pid, row in rows)
    if not problems:
        raise PoolError(f"the pool is empty: every source size is 0 ({sizes})")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise PoolError("the pool has duplicate problem ids")
    check_leakage(problems, data_dir, evals)
    return problems
