"""Trajectories made by another build's process, taken into this build's work directory.

Why: a pool of a few hundred problems takes hours of one CPU core per source model, and one work
directory admits one build at a time (its lock). With ``stop_after=trajectories`` each source can be
generated in a work directory of its own, on its own core or machine, and the main build then takes
those records (``trajectories_from=[DIR, ...]``) instead of generating them again.

A record is taken only when nothing about it can differ from one this build would make: the other
directory holds the same pool (``pool.jsonl`` byte for byte) and its trajectories were made with the
same generation settings (``trajectories.meta.json``); otherwise the build stops and names the file.
Records keep their own seconds and token counts, so the manifest's costs still count them, and each
import is logged in ``trajectories.imports.jsonl``. The other directory is only read: a build may
still be writing there (a torn last line is skipped, not truncated).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from memcollab_eval.construct.pools import PoolError
from memcollab_eval.construct.records import Key, Trajectory
from memcollab_eval.jsonl_store import StageFileError, append_records

IMPORT_LOG = "trajectories.imports.jsonl"


class TrajectoryImportError(PoolError):
    """Another work directory's trajectories cannot be taken into this build."""


def stored_settings(work: Path) -> dict[str, Any] | None:
    """The generation settings a work directory's trajectories were made with: its
    ``trajectories.meta.json``, or the defaults (greedy, single-turn) for a directory with
    trajectories and no such file; None when it holds no trajectories and no settings yet."""
    meta = work / "trajectories.meta.json"
    if meta.exists():
        return json.loads(meta.read_text())
    path = work / "trajectories.jsonl"
    if path.exists() and path.stat().st_size:
        return {"protocol": "single_turn"}
    return None


def complete_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, record) for every complete line of ``path``, without touching the file."""
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece is "" or a torn line
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StageFileError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise StageFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def check_source(work: Path, other: Path, wanted: dict[str, Any]) -> None:
    """Refuse a directory whose records could differ from this build's."""
    if not (other / "trajectories.jsonl").exists():
        raise TrajectoryImportError(f"trajectories_from: {other} has no trajectories.jsonl")
    ours, theirs = work / "pool.jsonl", other / "pool.jsonl"
    if not theirs.exists() or theirs.read_bytes() != ours.read_bytes():
        raise TrajectoryImportError(f"trajectories_from: {theirs} is not the pool of this build ({ours}); "
                           f"only trajectories of the same pool (same pool config and seed) can be taken")
    have = stored_settings(other)
    if have is None:
        raise TrajectoryImportError(f"trajectories_from: {other / 'trajectories.jsonl'} holds no trajectories yet")
    if have != wanted:
        raise TrajectoryImportError(f"trajectories_from: {other / 'trajectories.meta.json'}: made with "
                           f"{json.dumps(have, sort_keys=True)}, this build makes {json.dumps(wanted, sort_keys=True)}")


def import_trajectories(work: Path, others: list[str], wanted: dict[str, Any], done: dict[Key, Trajectory],
                        keep: Callable[[Key], bool]) -> dict[str, int]:
    """Append to ``work``'s trajectories every record of ``others`` that this build wants (``keep``)
    and does not have yet; updates ``done`` and returns the number taken per directory."""
    taken: dict[str, int] = {}
    for name in others:
        other = Path(name)
        if other.resolve() == work.resolve():
            raise TrajectoryImportError(f"trajectories_from: {other} is this build's own work_dir")
        check_source(work, other, wanted)
        path = other / "trajectories.jsonl"
        new: list[Trajectory] = []
        for number, record in complete_records(path):
            missing = [f for f in Trajectory.REQUIRED if f not in record]
            if missing:
                raise StageFileError(f"{path}:{number}: missing field {missing[0]!r} "
                                     f"(required: {list(Trajectory.REQUIRED)})")
            traj = Trajectory.from_json(record)
            if keep(traj.key) and traj.key not in done:
                done[traj.key] = traj
                new.append(traj)
        append_records(work / "trajectories.jsonl", [t.to_json() for t in new])
        if new:
            append_records(work / IMPORT_LOG, [{"from": str(other.resolve()), "records": len(new),
                                                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}])
        taken[name] = len(new)
    return taken


def imported_total(work: Path) -> int:
    """Trajectories this work directory took from others, over every invocation."""
    log_path = work / IMPORT_LOG
    if not log_path.exists():
        return 0
    return sum(int(r.get("records", 0)) for _, r in complete_records(log_path))
