"""The leaderboard's records: a finished run as read from lm-eval's files, and the table rows.

Kept apart from loading (runs.py), statistics (stats.py) and rendering (render.py) so each of
those builds on these types and none has to import another's module to get them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

NO_MEMORY = "no memory"
AVERAGE = "average"
UNKNOWN = "unknown"


class LeaderboardError(Exception):
    """Nothing usable was found; reported as a one-line error, exit code 2."""


@dataclass(frozen=True)
class Sample:
    id: str
    acc: float
    abstained: bool | None
    memory_chars: int
    memory_tokens: int | None
    turns: float | None
    agent: bool = False  # answered through the multi-turn agent protocol (a logged episode)
    agent_protocol: int | None = None  # the protocol version that episode ran under


@dataclass(frozen=True)
class TaskResult:
    benchmark: str
    with_memory: bool
    accuracy: float
    n: int
    abstain_rate: float | None  # from the aggregate metric, used when samples were not logged
    samples: tuple[Sample, ...]

    def outcomes(self) -> dict[str, float]:
        return {s.id: s.acc for s in self.samples}


@dataclass(frozen=True)
class Run:
    path: Path            # the run directory (with .hydra) or the folder of the results file
    results_file: Path
    date: float
    target: str
    target_origin: str    # "hydra" | "metadata" | "model_args" | "unknown"
    bank: str
    source: str           # row name of this run's memory variant
    settings: Mapping[str, str]
    tasks: tuple[TaskResult, ...]
    label: str = ""       # short name in tables: the path below the runs' common parent
    commit: str = ""      # lm-eval's git_hash: the commit of the repository the run was started in


@dataclass(frozen=True)
class LeaderboardRow:
    group: str
    target: str
    source: str
    benchmark: str
    n: int
    accuracy: float
    ci_low: float | None
    ci_high: float | None
    delta_vs_nomemory: float | None
    delta_ci_low: float | None
    delta_ci_high: float | None
    n_paired: int
    abstain_rate: float | None
    added_prompt_tokens_est: float | None
    tokens_estimated: bool
    turns: float | None
    runs: str
    note: str = ""
    target_origin: str = "hydra"  # where the target name came from (see Run.target_origin)


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[LeaderboardRow, ...]
    tables: tuple[tuple[str, str, str], ...]  # (group, target, target origin)
    groups: tuple[tuple[str, tuple[Run, ...]], ...]  # settings groups: (name, runs); name "" when only one
    group_settings: Mapping[str, Mapping[str, str]]
    notes: tuple[str, ...]
    runs: tuple[Run, ...]
    iters: int
    seed: int


ROW_FIELDS = tuple(f.name for f in fields(LeaderboardRow))


def differing_keys(a: Run, b: Run) -> list[str]:
    """Settings that differ between two runs (the backend only matters for the same target)."""
    keys = [k for k in a.settings if k in b.settings and a.settings[k] != b.settings[k]]
    return [k for k in keys if k != "backend" or a.target == b.target]
