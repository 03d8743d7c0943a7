"""New versions of a bank, append-only: retire an entry, or supersede it with a new one.

Why never edit in place: every evaluation run records the sha256 of the bank it read, and the
audit (``bank audit``) maps runs back to versions by that hash. An edited bank would orphan every
run made before the edit, and "which lessons were in force when this number was measured" could no
longer be answered. So a change writes ``<bank>/v<N+1>/`` (entries.jsonl + manifest.json, like any
bank), whose manifest carries ``parent_sha256`` (the sha256 of the parent version's manifest.json,
which itself pins its entries and its own parent: a hash chain) and a ``changelog`` entry (what,
which ids, why, who, when). The bank's top-level files stay its first version, byte for byte.

The new directory is assembled under a temporary name and renamed into place, so a crash leaves no
half-written version, and a concurrent writer that took the same number makes the rename fail
instead of overwriting.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memcollab_eval.bank.store import (
    MANIFEST_FILE,
    BankError,
    MemoryBank,
    MemoryEntry,
    bank_versions,
    entry_from_dict,
    load_bank,
    save_bank,
    sha256_bytes,
)

PROPOSAL_FORMAT = "memcollab-retire-proposal/1"


@dataclass(frozen=True)
class Retirement:
    entry_id: str
    why: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "")


def write_version(bank: MemoryBank, entries: Sequence[MemoryEntry], changelog: Mapping[str, Any]) -> MemoryBank:
    """Write ``entries`` as the next version of ``bank`` (which must be its newest) and return it."""
    if bank.root is None or bank.path is None:
        raise BankError("a new version needs a bank loaded from disk")
    versions = bank_versions(bank.root)
    newest = max(versions)
    if versions[newest].resolve() != bank.path.resolve():
        raise BankError(f"{bank.path} is version {bank.manifest.version}, not the newest of {bank.root} "
                        f"(v{newest}): a new version continues the newest one")
    number = newest + 1
    target = bank.root / f"v{number}"
    parent_sha = sha256_bytes((bank.path / MANIFEST_FILE).read_bytes())
    m = bank.manifest
    staging = Path(tempfile.mkdtemp(prefix=f".v{number}.", dir=bank.root))
    try:
        save_bank(staging, entries, name=m.name, version=number, sources=m.sources, summarizer=m.summarizer,
                  config=m.config, parent=f"v{m.version}", notes=m.notes, parent_sha256=parent_sha,
                  changelog={"version": number, "parent_version": m.version, "at": _now(), "by": _who(),
                             **changelog})
        try:
            os.rename(staging, target)  # fails when another writer took this number (non-empty target)
        except OSError as exc:
            raise BankError(f"cannot write {target}: {exc.strerror} (another version {number} was written "
                            "meanwhile? run the command again)") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return load_bank(target)


def retire(bank_path: str | Path, retirements: Sequence[Retirement], *, source: str = "") -> MemoryBank:
    """A new version in which each named entry has ``status: retired`` and its reason; ``source``
    says where the list came from (e.g. an audit proposal)."""
    bank = load_bank(bank_path)
    by_id = {e.id: e for e in bank.entries}
    if not retirements:
        raise BankError("nothing to retire: name at least one entry id")
    seen = set()
    for r in retirements:
        if r.entry_id not in by_id:
            raise BankError(f"{bank.path}: no entry with id {r.entry_id!r} (version {bank.manifest.version})")
        if by_id[r.entry_id].status == "retired":
            raise BankError(f"{bank.path}: entry {r.entry_id!r} is already retired (version {bank.manifest.version})")
        if r.entry_id in seen:
            raise BankError(f"entry {r.entry_id!r} is named twice")
        if not r.why.strip():
            raise BankError(f"entry {r.entry_id!r}: --why must say why it is retired")
        seen.add(r.entry_id)
    why = {r.entry_id: r.why.strip() for r in retirements}
    entries = [replace(e, status="retired", retired_why=why[e.id]) if e.id in why else e for e in bank.entries]
    return write_version(bank, entries, {"action": "retire", "ids": [r.entry_id for r in retirements],
                                         "why": why, **({"source": source} if source else {})})


def read_new_entry(path: str | Path) -> dict[str, Any]:
    """The replacement entry of ``bank supersede``: one JSON object in a file (file and field named on error)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BankError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BankError(f"{path}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BankError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BankError(f"{path}: expected one JSON object (an entry), got {type(obj).__name__}")
    return obj


def supersede(bank_path: str | Path, old_id: str, new_entry: Mapping[str, Any], *, where: str = "new entry",
              why: str = "") -> MemoryBank:
    """A new version with ``new_entry`` appended, marked as superseding ``old_id``. The old entry
    stays, unchanged, for history; retrieval skips it from this version on."""
    bank = load_bank(bank_path)
    by_id = {e.id: e for e in bank.entries}
    if old_id not in by_id:
        raise BankError(f"{bank.path}: no entry with id {old_id!r} (version {bank.manifest.version})")
    already = [e.id for e in bank.entries if e.supersedes == old_id]
    if already:
        raise BankError(f"{bank.path}: entry {old_id!r} is already superseded by {already[0]!r}")
    obj = dict(new_entry)
    if obj.get("supersedes") not in (None, "", old_id):
        raise BankError(f"{where}: field 'supersedes' is {obj['supersedes']!r} but the command supersedes {old_id!r}")
    obj["supersedes"] = old_id
    if "created_at" not in obj:
        obj["created_at"] = _now()
    entry = entry_from_dict(obj, where=where)
    if entry.id in by_id:
        raise BankError(f"{where}: field 'id': {entry.id!r} is already in the bank (a replacement needs a new id)")
    return write_version(bank, [*bank.entries, entry], {"action": "supersede", "ids": [old_id, entry.id],
                                                        "supersedes": {entry.id: old_id},
                                                        **({"why": why} if why else {})})


def read_proposal(path: str | Path) -> tuple[dict[str, Any], list[Retirement]]:
    """A retire proposal written by ``bank audit --propose``: its header and the retirements."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BankError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise BankError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != PROPOSAL_FORMAT:
        raise BankError(f"{path}: field 'format' must be {PROPOSAL_FORMAT!r} (write one with bank audit --propose)")
    items = data.get("retire")
    if not isinstance(items, list):
        raise BankError(f"{path}: field 'retire' must be a list of {{\"id\", \"why\"}} objects")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("why"), str):
            raise BankError(f"{path}: field 'retire' item {i}: needs string fields 'id' and 'why'")
        out.append(Retirement(item["id"], item["why"]))
    return data, out


__all__ = ["PROPOSAL_FORMAT", "Retirement", "read_new_entry", "read_proposal", "retire", "supersede",
           "write_version"]
