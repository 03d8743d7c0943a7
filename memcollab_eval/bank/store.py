"""The memory bank on disk: a directory holding ``entries.jsonl`` and ``manifest.json``.

A bank is built once (expensive: several models, verification, a summarizer) and then read
by every evaluation run, often on another machine. So loading is strict: every line is
validated and the manifest carries the sha256 of the entries file, so a hand edit, a
truncated copy or a bank built by a different pipeline is caught at load time with an
error naming the file, the line and the field, instead of silently changing results.
Writes are atomic (temp file + ``os.replace``) so an interrupted build never leaves a
half-written bank that later loads as a smaller one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memcollab_eval.bank.fields import GOVERNANCE_FIELDS, FieldProblem, check_together
from memcollab_eval.jsonl_store import stage_bytes

ENTRIES_FILE = "entries.jsonl"
MANIFEST_FILE = "manifest.json"


class BankError(ValueError):
    """Any problem with a bank on disk or with entries handed to :func:`save_bank`."""


@dataclass(frozen=True)
class MemoryEntry:
    """One distilled lesson: a reasoning invariant to keep and a violation pattern to avoid.

    The category/subcategory tags drive retrieval filtering; the two model identities
    record which (preferred, unpreferred) trajectory pair the lesson came from, so that
    evaluation can keep only lessons that involve the target model (MemCollab).
    """

    id: str
    enforce: str
    avoid: str
    category: str
    subcategory: str
    preferred_model: str
    unpreferred_model: str
    source_benchmark: str
    source_problem_id: str
    summarizer: str = ""
    created_at: str = ""
    # Written only when set, so banks built before these fields existed keep their bytes:
    difference: str = ""  # the summarizer's DIFFERENCE line for the pair the lesson came from
    # why the lesson was admitted: {"resolve": {...}, "heldout": {...}} (see construct/evidence.py)
    evidence: dict | None = field(default=None, compare=False, hash=False)
    # Governance and lifecycle (issue 18; memcollab_eval/bank/fields.py says what each may hold):
    source: dict | None = field(default=None, hash=False)  # {"build", "models", "dataset", "split"}
    scopes: tuple[str, ...] | None = None  # principals or groups allowed to retrieve it (None: everyone)
    policy: tuple[str, ...] | None = None  # policy tags, e.g. ("no-external-models",)
    valid_from: str = ""  # ISO 8601 date or date-time; retrieval skips the entry before it
    valid_until: str = ""  # ... and from this instant on (exclusive end)
    status: str = ""  # "" or "active": retrievable; "retired": kept for history, never retrieved
    retired_why: str = ""
    supersedes: str = ""  # the id of the entry this one replaces (that one is then never retrieved)

    def render(self) -> str:
        """The text shown to a model: ``enforce <invariant>; avoid <violation>``."""
        return f"enforce {self.enforce}; avoid {self.avoid}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in _WRITTEN_WHEN_SET:
            if out[name] in ("", None):
                del out[name]
            elif isinstance(out[name], tuple):  # scopes, policy: JSON lists
                out[name] = list(out[name])
        return out


_WRITTEN_WHEN_SET = ("difference", "evidence", *GOVERNANCE_FIELDS)


@dataclass(frozen=True)
class BankManifest:
    """What a bank is and where it came from; ``sha256`` pins the exact entries bytes."""

    name: str
    version: int
    sha256: str
    n_entries: int
    sources: list[str]
    summarizer: str
    config: dict
    parent: str | None = None
    created_at: str = ""
    notes: str = ""
    # Written only for versions made by ``bank retire`` / ``bank supersede`` (memcollab_eval/bank/versions.py):
    parent_sha256: str | None = None  # sha256 of the parent version's manifest.json bytes: a hash chain
    changelog: dict | None = field(default=None, hash=False)  # what this version changed, why, when

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in _MANIFEST_WRITTEN_WHEN_SET:
            if out[name] is None:
                del out[name]
        return out


_MANIFEST_WRITTEN_WHEN_SET = ("parent_sha256", "changelog")


@dataclass(frozen=True)
class MemoryBank:
    """A validated bank in memory. ``path`` is the directory it was loaded from/saved to."""

    manifest: BankManifest
    entries: tuple[MemoryEntry, ...]
    path: Path | None = field(default=None, compare=False)
    root: Path | None = field(default=None, compare=False)  # the bank's directory when ``path`` is one of its v<N>/

    def __len__(self) -> int:
        return len(self.entries)


# Entry fields that must hold real text (source ids may be empty, e.g. for hand-made entries).
_ENTRY_REQUIRED_NONEMPTY = ("id", "enforce", "avoid", "category", "preferred_model", "unpreferred_model")
_ENTRY_FIELDS = {f.name: f for f in fields(MemoryEntry)}
# Manifest fields -> allowed JSON types.
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "version": (int,),
    "sha256": (str,),
    "n_entries": (int,),
    "sources": (list,),
    "summarizer": (str,),
    "config": (dict,),
    "parent": (str, type(None)),
    "created_at": (str,),
    "notes": (str,),
    "parent_sha256": (str,),
    "changelog": (dict,),
}
_MANIFEST_OPTIONAL = {"parent", "created_at", "notes", "parent_sha256", "changelog"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def entry_from_dict(obj: Any, *, where: str = "entry") -> MemoryEntry:
    """Validate one decoded JSON object and build the entry; ``where`` prefixes every error
    (e.g. ``"bank/entries.jsonl line 7"``) so the message points at the offending line."""
    if not isinstance(obj, Mapping):
        raise BankError(f"{where}: expected a JSON object, got {_type_name(obj)}")
    unknown = sorted(set(obj) - set(_ENTRY_FIELDS))
    if unknown:
        raise BankError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(_ENTRY_FIELDS)})")
    values: dict[str, Any] = {}
    for name, f in _ENTRY_FIELDS.items():
        if name not in obj:
            if f.default is not MISSING:  # optional field (summarizer, created_at, difference, evidence)
                continue
            raise BankError(f"{where}: missing field {name!r}")
        value = obj[name]
        if name in GOVERNANCE_FIELDS:
            try:
                values[name] = GOVERNANCE_FIELDS[name](value)
            except FieldProblem as exc:
                raise BankError(f"{where}: field {name!r} {exc}" if not str(exc).startswith("field ")
                                else f"{where}: {exc}") from None
            continue
        if name == "evidence":
            if value is not None and not isinstance(value, Mapping):
                raise BankError(f"{where}: field 'evidence' must be an object, got {_type_name(value)}")
            values[name] = None if value is None else dict(value)
            continue
        if not isinstance(value, str):
            raise BankError(f"{where}: field {name!r} must be a string, got {_type_name(value)}")
        if name in _ENTRY_REQUIRED_NONEMPTY and not value.strip():
            raise BankError(f"{where}: field {name!r} is empty")
        values[name] = value
    try:
        check_together(values)
    except FieldProblem as exc:
        raise BankError(f"{where}: {exc}") from None
    return MemoryEntry(**values)


def manifest_from_dict(obj: Any, *, where: str) -> BankManifest:
    """Validate a decoded manifest.json (types, unknown/missing keys, sha256 format)."""
    if not isinstance(obj, Mapping):
        raise BankError(f"{where}: expected a JSON object, got {_type_name(obj)}")
    unknown = sorted(set(obj) - set(_MANIFEST_TYPES))
    if unknown:
        raise BankError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(_MANIFEST_TYPES)})")
    for name, types in _MANIFEST_TYPES.items():
        if name not in obj:
            if name in _MANIFEST_OPTIONAL:
                continue
            raise BankError(f"{where}: missing field {name!r}")
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BankError(f"{where}: field {name!r} must be {expected}, got {_type_name(value)}")
    if not all(isinstance(s, str) for s in obj["sources"]):
        raise BankError(f"{where}: field 'sources' must be a list of strings")
    for key in ("sha256", "parent_sha256"):
        sha = obj.get(key)
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise BankError(f"{where}: field {key!r} must be 64 lowercase hex digits, got {sha!r}")
    if obj["n_entries"] < 0:
        raise BankError(f"{where}: field 'n_entries' must be >= 0, got {obj['n_entries']}")
    return BankManifest(**{**obj, "sources": list(obj["sources"]), "config": dict(obj["config"]),
                           **({"changelog": dict(obj["changelog"])} if obj.get("changelog") is not None else {})})


def utf8_where(data: bytes, exc: UnicodeDecodeError) -> tuple[int, str]:
    """(line, description) of a UTF-8 decoding error of ``data``, as an editor shows it: 1-based
    line and column (in characters), not the byte offset ``UnicodeDecodeError`` gives."""
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
    bad = " ".join(f"0x{b:02x}" for b in data[exc.start:exc.end])
    return data.count(b"\n", 0, exc.start) + 1, f"not valid UTF-8 (byte {bad} at column {column}: {exc.reason})"


def utf8_error(data: bytes, exc: UnicodeDecodeError, source: str) -> str:
    lineno, detail = utf8_where(data, exc)
    return f"{source} line {lineno}: {detail}"


def parse_entries(data: bytes, *, source: str) -> tuple[MemoryEntry, ...]:
    """Decode and validate every line of an entries file; blank lines are skipped.

    Line numbers in errors are 1-based physical lines, as an editor shows them.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BankError(utf8_error(data, exc, source)) from None
    entries: list[MemoryEntry] = []
    first_line: dict[str, int] = {}
    # split("\n"), not splitlines(): the latter also breaks at U+2028 etc., which json.dumps with
    # ensure_ascii=False leaves unescaped inside strings.
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            cut = " (the file ends inside this line: a truncated copy?)" if lineno == len(lines) else ""
            raise BankError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno}){cut}") from None
        entry = entry_from_dict(obj, where=where)
        if entry.id in first_line:
            raise BankError(
                f"{where}: field 'id': duplicate id {entry.id!r} (first seen on line {first_line[entry.id]})"
            )
        first_line[entry.id] = lineno
        entries.append(entry)
    return tuple(entries)


_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")


def version_dirs(root: str | Path) -> dict[int, Path]:
    """The versions written by ``bank retire`` / ``bank supersede`` under a bank directory:
    ``<bank>/v<N>/`` (each a complete bank), by N. A bank built once has none: its top-level files
    are its only version."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for child in root.iterdir():
        m = _VERSION_DIR.match(child.name)
        if m and child.is_dir():
            found[int(m.group(1))] = child
    return dict(sorted(found.items()))


def _root_version(root: Path) -> int | None:
    """The version number of a bank's top-level files (its manifest's ``version``), None when absent."""
    try:
        obj = json.loads((root / MANIFEST_FILE).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    version = obj.get("version") if isinstance(obj, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def bank_versions(root: str | Path) -> dict[int, Path]:
    """Every version of the bank at ``root``, oldest first: the top-level files (when present) under
    their manifest's version number, then each ``v<N>/``."""
    root = Path(root)
    out: dict[int, Path] = {}
    top = _root_version(root) if (root / ENTRIES_FILE).is_file() else None
    if top is not None:
        out[top] = root
    for n, d in version_dirs(root).items():
        out.setdefault(n, d)
    return dict(sorted(out.items()))


def resolve_version(path: str | Path, version: int | None = None) -> tuple[Path, Path]:
    """(directory to load, the bank's root). A bank name's newest version unless ``version`` pins
    one; a path that is itself a ``v<N>/`` directory is that version."""
    path = Path(path)
    if _VERSION_DIR.match(path.name) and (path / MANIFEST_FILE).is_file() and version is None:
        return path, path.parent
    dirs = version_dirs(path)
    if not dirs:
        if version is not None and path.is_dir() and (path / MANIFEST_FILE).is_file():
            top = _root_version(path)
            if top != version:
                raise BankError(f"memory bank {path} has no version {version} (its only version is {top}; "
                                "versions are written by `python -m memcollab_eval.bank retire|supersede`)")
        return path, path
    if version is None:
        return dirs[max(dirs)], path
    known = bank_versions(path)
    if version not in known:
        raise BankError(f"memory bank {path} has no version {version} (versions: "
                        f"{', '.join(f'v{n}' for n in known)})")
    return known[version], path


def load_bank(path: str | Path, *, build_hint: str = "", version: int | None = None) -> MemoryBank:
    """Load and fully validate the bank in directory ``path``: its newest version (the highest
    ``v<N>/`` when ``bank retire``/``supersede`` wrote any, else the top-level files), or the one
    ``version`` pins.

    ``build_hint`` is the command that builds this bank; it is put into the error when the
    bank is missing, because "file not found" alone does not tell a user what to run.
    """
    hint = f"; build it with: {build_hint}" if build_hint else ""
    if not Path(path).exists():
        raise BankError(f"memory bank not found: {path} does not exist{hint}")
    bank_dir, root = resolve_version(path, version)
    if not bank_dir.exists():
        raise BankError(f"memory bank not found: {bank_dir} does not exist{hint}")
    if not bank_dir.is_dir():
        raise BankError(f"memory bank path {bank_dir} is not a directory (expected a directory "
                        f"holding {ENTRIES_FILE} and {MANIFEST_FILE}){hint}")
    entries_path, manifest_path = bank_dir / ENTRIES_FILE, bank_dir / MANIFEST_FILE
    for required in (manifest_path, entries_path):
        if not required.is_file():
            raise BankError(f"memory bank at {bank_dir} is incomplete: {required.name} is missing{hint}")

    raw_manifest = manifest_path.read_bytes()
    try:
        manifest_obj = json.loads(raw_manifest.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise BankError(f"{manifest_path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise BankError(utf8_error(raw_manifest, exc, str(manifest_path))) from None
    manifest = manifest_from_dict(manifest_obj, where=str(manifest_path))
    m = _VERSION_DIR.match(bank_dir.name)
    if bank_dir != root and m and manifest.version != int(m.group(1)):
        raise BankError(f"{manifest_path}: field 'version' is {manifest.version} but the directory is {bank_dir.name}")

    data = entries_path.read_bytes()
    entries = parse_entries(data, source=str(entries_path))
    actual = sha256_bytes(data)
    if actual != manifest.sha256:
        raise BankError(
            f"sha256 mismatch for {entries_path}: manifest {manifest_path} says {manifest.sha256}, "
            f"file has {actual} (entries were edited or the copy is incomplete; rebuild the bank{hint})"
        )
    if len(entries) != manifest.n_entries:
        raise BankError(
            f"{manifest_path}: field 'n_entries' is {manifest.n_entries} but {entries_path} holds {len(entries)} entries"
        )
    if manifest.parent_sha256 is not None:
        _check_parent(bank_dir, root, manifest, manifest_path)
    return MemoryBank(manifest=manifest, entries=entries, path=bank_dir, root=root)


def parent_dir(bank_dir: Path, root: Path, manifest: BankManifest) -> Path | None:
    """The directory of a version's parent: the newest version below it."""
    older = {n: d for n, d in bank_versions(root).items() if n < manifest.version and d != bank_dir}
    return older[max(older)] if older else None


def _check_parent(bank_dir: Path, root: Path, manifest: BankManifest, manifest_path: Path) -> None:
    """A version vouches for its history: its parent's manifest must be the one it was made from."""
    parent = parent_dir(bank_dir, root, manifest)
    if parent is None:
        raise BankError(f"{manifest_path}: field 'parent_sha256' names a parent version, but {root} holds no "
                        f"version older than {manifest.version} (was the bank's history deleted?)")
    actual = sha256_bytes((parent / MANIFEST_FILE).read_bytes())
    if actual != manifest.parent_sha256:
        raise BankError(f"{manifest_path}: field 'parent_sha256' is {manifest.parent_sha256} but the parent "
                        f"{parent / MANIFEST_FILE} has sha256 {actual} (an older version was edited in place; "
                        "versions are append-only)")


def serialize_entries(entries: Iterable[MemoryEntry]) -> bytes:
    """The canonical bytes of entries.jsonl (the sha256 in the manifest is taken over these)."""
    return "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in entries).encode("utf-8")


def save_bank(
    bank_dir: str | Path,
    entries: Iterable[MemoryEntry | Mapping[str, Any]],
    *,
    name: str,
    version: int = 1,
    sources: Iterable[str] = (),
    summarizer: str = "",
    config: Mapping[str, Any] | None = None,
    parent: str | None = None,
    created_at: str | None = None,
    notes: str = "",
    parent_sha256: str | None = None,
    changelog: Mapping[str, Any] | None = None,
) -> MemoryBank:
    """Validate ``entries``, write entries.jsonl + manifest.json atomically, return the bank.

    ``sha256`` and ``n_entries`` are computed here, never passed in, so a manifest cannot
    disagree with its entries. ``created_at`` defaults to the current UTC time.
    """
    validated: list[MemoryEntry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(entries):
        where = f"save_bank entry {i}"
        entry = entry_from_dict(item.to_dict() if isinstance(item, MemoryEntry) else item, where=where)
        if entry.id in seen:
            raise BankError(f"{where}: field 'id': duplicate id {entry.id!r} (also entry {seen[entry.id]})")
        seen[entry.id] = i
        validated.append(entry)

    data = serialize_entries(validated)
    manifest_obj = {
        "name": name, "version": version, "sha256": sha256_bytes(data), "n_entries": len(validated),
        "sources": list(sources), "summarizer": summarizer, "config": dict(config or {}), "parent": parent,
        "created_at": created_at if created_at is not None else datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
        **({"parent_sha256": parent_sha256} if parent_sha256 is not None else {}),
        **({"changelog": dict(changelog)} if changelog is not None else {}),
    }
    bank_dir = Path(bank_dir)
    manifest = manifest_from_dict(manifest_obj, where=f"save_bank manifest for {bank_dir}")
    try:
        manifest_bytes = (json.dumps(manifest_obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    except TypeError as exc:
        raise BankError(f"save_bank manifest for {bank_dir}: field 'config' or 'changelog' is not JSON-serializable "
                        f"({exc})") from None

    bank_dir.mkdir(parents=True, exist_ok=True)
    tmp_entries = stage_bytes(bank_dir / ENTRIES_FILE, data)
    try:
        tmp_manifest = stage_bytes(bank_dir / MANIFEST_FILE, manifest_bytes)
    except BaseException:
        tmp_entries.unlink(missing_ok=True)
        raise
    # Both files are complete on disk; publish them back to back. Entries first: a crash
    # between the two replaces leaves an old manifest whose sha256 no longer matches, which
    # load_bank reports, rather than a manifest that vouches for entries that are not there.
    try:
        os.replace(tmp_entries, bank_dir / ENTRIES_FILE)
        os.replace(tmp_manifest, bank_dir / MANIFEST_FILE)
    finally:
        for tmp in (tmp_entries, tmp_manifest):
            tmp.unlink(missing_ok=True)
    return MemoryBank(manifest=manifest, entries=tuple(validated), path=bank_dir)
