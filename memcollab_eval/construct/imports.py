"""Trajectories and summarizer replies made by another build's process, taken into this build's work directory.

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

Two processes can share one source model or the summarizer: one takes its to-do list forward,
the other in reverse (``work_order=reverse``), each taking the other's records before every batch,
so they meet in the middle. Summarizer replies (``distill_from``) are taken only from a directory
whose distillation settings (``distill.meta.json``) are this build's, with the same prompt version,
and only for a pair whose two trajectories there are this build's, text for text. The evidence gates'
outcomes (``evidence_from``: re-solve and held-out answers) are taken from a directory whose gates ran
with this build's settings (``evidence.meta.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from memcollab_eval.construct.pools import PoolError
from memcollab_eval.construct.records import DistillRecord, Key, Trajectory
from memcollab_eval.jsonl_store import StageFileError, append_records, write_atomic

IMPORT_LOG = "trajectories.imports.jsonl"
DISTILL_IMPORT_LOG = "distill.imports.jsonl"
DISTILL_META = "distill.meta.json"


class TrajectoryImportError(PoolError):
    """Another work directory's trajectories cannot be taken into this build."""


class DistillImportError(PoolError):
    """Summarizer replies made with other settings: not taken, and not mixed into one directory."""


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


def other_dir(work: Path, name: str, option: str, error: type[PoolError]) -> Path:
    """The directory ``option`` names, refused when it is missing or this build's own."""
    other = Path(name)
    if other.resolve() == work.resolve():
        raise error(f"{option}: {other} is this build's own work_dir")
    if not other.is_dir():
        raise error(f"{option}: {other} is not a directory")
    return other


def check_source(work: Path, other: Path, wanted: dict[str, Any]) -> bool:
    """Refuse a directory whose records could differ from this build's; False when it holds none
    yet (a process started beside this one may not have written any: it is looked at again later)."""
    ours, theirs = work / "pool.jsonl", other / "pool.jsonl"
    if theirs.exists() and theirs.read_bytes() != ours.read_bytes():
        raise TrajectoryImportError(f"trajectories_from: {theirs} is not the pool of this build ({ours}); "
                           f"only trajectories of the same pool (same pool config and seed) can be taken")
    have = stored_settings(other)
    if have is None or not theirs.exists() or not (other / "trajectories.jsonl").exists():
        return False
    if have != wanted:
        raise TrajectoryImportError(f"trajectories_from: {other / 'trajectories.meta.json'}: made with "
                           f"{json.dumps(have, sort_keys=True)}, this build makes {json.dumps(wanted, sort_keys=True)}")
    return True


def import_trajectories(work: Path, others: list[str], wanted: dict[str, Any], done: dict[Key, Trajectory],
                        keep: Callable[[Key], bool]) -> dict[str, int]:
    """Append to ``work``'s trajectories every record of ``others`` that this build wants (``keep``)
    and does not have yet; updates ``done`` and returns the number taken per directory."""
    taken: dict[str, int] = {}
    for name in others:
        other = other_dir(work, name, "trajectories_from", TrajectoryImportError)
        if not check_source(work, other, wanted):
            taken[name] = 0
            continue
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
        log_import(work, IMPORT_LOG, other, len(new))
        taken[name] = len(new)
    return taken


def log_import(work: Path, log_name: str, other: Path, records: int) -> None:
    if records:
        append_records(work / log_name, [{"from": str(other.resolve()), "records": records,
                                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}])


def has_records(directory: Path, record_files: tuple[str, ...]) -> bool:
    """Whether any of a stage's record files in ``directory`` holds something."""
    return any((directory / f).exists() and (directory / f).stat().st_size for f in record_files)


def check_settings(work: Path, meta_name: str, record_files: tuple[str, ...], wanted: dict[str, Any],
                   error: type[PoolError]) -> None:
    """Record a work directory's settings for a stage (``meta_name``) when its first records are made,
    and refuse to add records made with other settings to it. A directory whose records predate the
    settings file keeps none, and is not checked."""
    meta = work / meta_name
    if meta.exists():
        have = json.loads(meta.read_text())
        if have != wanted:
            raise error(f"{meta}: this work directory's records were made with {json.dumps(have, sort_keys=True)}, "
                        f"this build makes {json.dumps(wanted, sort_keys=True)}; use another work_dir")
    elif not has_records(work, record_files):
        write_atomic(meta, json.dumps(wanted, sort_keys=True))


def other_settings_match(other: Path, meta_name: str, record_files: tuple[str, ...], wanted: dict[str, Any],
                         option: str, error: type[PoolError]) -> bool:
    """Whether another directory's records of a stage may be taken: True when its settings file says
    they were made with this build's settings, False when it has made none yet (looked at again
    later); refused, naming the file, when the settings differ or cannot be checked."""
    meta = other / meta_name
    if not meta.exists():
        if has_records(other, record_files):
            raise error(f"{option}: {other} has records but no {meta_name} (made before records kept their "
                        "settings): they cannot be checked, so none is taken")
        return False
    have = json.loads(meta.read_text())
    if have != wanted:
        raise error(f"{option}: {meta}: made with {json.dumps(have, sort_keys=True)}, "
                    f"this build makes {json.dumps(wanted, sort_keys=True)}")
    return True


def check_distill_settings(work: Path, wanted: dict[str, Any]) -> None:
    """Distillation's settings (the prompt version is kept per reply, so a new version is allowed:
    its replies never replace the old ones)."""
    check_settings(work, DISTILL_META, ("distill.jsonl",), wanted, DistillImportError)


def import_distill(work: Path, others: list[str], wanted: dict[str, Any], version: str,
                   done: dict[tuple[str, int], DistillRecord], pair_keys: dict[str, tuple[Key, ...]],
                   trajs: dict[Key, Trajectory]) -> dict[str, int]:
    """Append to ``work``'s ``distill.jsonl`` every reply of ``others`` for a pair of this build
    (``pair_keys``: pair id -> its trajectory keys) that this build lacks; a reply is taken only
    when the other directory's trajectories of its pair are this build's. Updates ``done``."""
    taken: dict[str, int] = {}
    for name in others:
        other = other_dir(work, name, "distill_from", DistillImportError)
        path = other / "distill.jsonl"
        if not other_settings_match(other, DISTILL_META, ("distill.jsonl",), wanted, "distill_from",
                                    DistillImportError) or not path.exists():
            taken[name] = 0
            continue
        theirs: dict[Key, str] = {}
        if (other / "trajectories.jsonl").exists():
            theirs = {(r["problem_id"], r["model"], int(r["sample_idx"])): r["text"]
                      for _, r in complete_records(other / "trajectories.jsonl") if "text" in r}
        new: list[DistillRecord] = []
        for number, record in complete_records(path):
            try:
                reply = DistillRecord.from_json(record)
            except ValueError as exc:
                raise StageFileError(f"{path}:{number}: {exc}") from None
            key = (reply.pair, reply.sample)
            if reply.prompt_version != version or reply.pair not in pair_keys or key in done:
                continue
            if any(theirs.get(k) != trajs[k].text for k in pair_keys[reply.pair]):
                continue  # the other directory distilled another text of this pair
            done[key] = reply
            new.append(reply)
        append_records(work / "distill.jsonl", [r.to_json() for r in new])
        log_import(work, DISTILL_IMPORT_LOG, other, len(new))
        taken[name] = len(new)
    return taken


EVIDENCE_META = "evidence.meta.json"
EVIDENCE_IMPORT_LOG = "evidence.imports.jsonl"
EVIDENCE_FILES = ("resolve.jsonl", "validation_lessons.jsonl")


class EvidenceImportError(PoolError):
    """Gate outcomes made with other settings: not taken, and not mixed into one directory."""


def check_evidence_settings(work: Path, wanted: dict[str, Any]) -> None:
    """The evidence gates' settings (held-out target, seed, batching): a held-out answer is recorded by
    problem and lesson only, so answers of another target must never join this directory's."""
    check_settings(work, EVIDENCE_META, EVIDENCE_FILES, wanted, EvidenceImportError)


def import_evidence(work: Path, others: list[str], wanted: dict[str, Any], file_name: str,
                    key_of: Callable[[dict[str, Any]], Any], have: Callable[[Any], bool],
                    ) -> tuple[list[dict[str, Any]], set]:
    """Append to ``work``'s ``file_name`` (``resolve.jsonl`` or ``validation_lessons.jsonl``) every
    record of ``others`` whose key (``key_of``) this build does not ``have``. Returns them, and the keys
    of the records the other process made itself (``by``: its directory; taken or not, what it has been
    working on, not what it took from this one). Taken only
    from a directory whose gates ran with this build's settings (``evidence.meta.json``): an outcome is
    a fact about a lesson, a problem and the model that answered, whichever process asked."""
    new: list[dict[str, Any]] = []
    there: set = set()
    seen: set = set()  # keys taken by this call (two other directories may hold the same outcome)
    for name in others:
        other = other_dir(work, name, "evidence_from", EvidenceImportError)
        path = other / file_name
        if not other_settings_match(other, EVIDENCE_META, EVIDENCE_FILES, wanted, "evidence_from",
                                    EvidenceImportError) or not path.exists():
            continue  # nothing made there yet: looked at again before the next batch
        taken: list[dict[str, Any]] = []
        made_there = str(other.resolve())
        for _, record in complete_records(path):
            key = key_of(record)
            if record.get("by") == made_there:
                there.add(key)
            if not have(key) and key not in seen:
                seen.add(key)
                taken.append(record)
        append_records(work / file_name, taken)
        log_import(work, EVIDENCE_IMPORT_LOG, other, len(taken))
        new.extend(taken)
    return new, there


def imported_total(work: Path, log_name: str = IMPORT_LOG) -> int:
    """Records this work directory took from others (trajectories, or with ``DISTILL_IMPORT_LOG``
    summarizer replies), over every invocation."""
    log_path = work / log_name
    if not log_path.exists():
        return 0
    return sum(int(r.get("records", 0)) for _, r in complete_records(log_path))
