"""Append-only JSONL files that survive ``kill -9``: the contract between pipeline stages.

Every record is keyed (e.g. by ``(problem_id, model, sample_idx)``), so a stage that is
rerun reads what is already there and only computes the rest. A crash can leave at most a
partial LAST line (no trailing newline): it is dropped with a warning and recomputed. A
malformed line anywhere else is corruption, and reading stops with an error naming the
file, the line and the field, without touching the file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StageFileError(ValueError):
    """A stage file is corrupted or does not match the expected record shape."""


def read_records(path: Path, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """All complete records of ``path`` ([] if absent); a torn final line is discarded."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    if torn:
        log.warning("%s: dropping an incomplete last line (interrupted write); it will be recomputed", path)
        _truncate_to(path, len(raw) - len(lines[-1]))
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StageFileError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise StageFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        missing = [f for f in required if f not in record]
        if missing:
            raise StageFileError(f"{path}:{number}: missing field {missing[0]!r} (required: {list(required)})")
        records.append(record)
    return records


def _truncate_to(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append whole lines and fsync, so a record is either fully there or not at all."""
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    if not data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def stage_bytes(target: Path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``target`` and fsync it; return the temp path.

    The caller publishes it with ``os.replace`` (a bank publishes two files in a reasoned
    order, so staging and publishing are separate steps); on any error the temp file is
    removed, so neither a partial ``target`` nor a stray temp file is left behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; stage files and banks are shared data
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temp file in the same dir + rename)."""
    tmp = stage_bytes(path, text.encode("utf-8"))
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
