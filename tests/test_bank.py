"""Bank files: round trip, atomic writes, and load-time validation with precise messages."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import memcollab_eval.bank.store as bank_mod
from memcollab_eval.bank.store import BankError, MemoryEntry, load_bank, save_bank

FIXTURE = Path(__file__).resolve().parent / "data" / "bank_fixture"


def make_entry(i: int, **overrides) -> MemoryEntry:
    fields = dict(id=f"e{i}", enforce=f"keeping invariant {i}", avoid=f"violation {i}", category="Algebra",
                  subcategory="quadratics", preferred_model="big", unpreferred_model="small",
                  source_benchmark="math_train", source_problem_id=f"train/algebra/{i}.json")
    fields.update(overrides)
    return MemoryEntry(**fields)


def entry_dict(i: int, **overrides) -> dict:
    return {**make_entry(i).to_dict(), **overrides}


def write_bank(tmp_path: Path, lines: list[str], **manifest_overrides) -> Path:
    """A bank whose manifest matches the given raw lines (so only line validation can fail)."""
    bank_dir = tmp_path / "bank"
    bank_dir.mkdir()
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    (bank_dir / "entries.jsonl").write_bytes(data)
    manifest = {"name": "t", "version": 1, "sha256": hashlib.sha256(data).hexdigest(), "n_entries": len(lines),
                "sources": ["math_train"], "summarizer": "s", "config": {}, "parent": None, "created_at": "",
                "notes": ""}
    manifest.update(manifest_overrides)
    (bank_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bank_dir


def test_render():
    assert make_entry(1).render() == "enforce keeping invariant 1; avoid violation 1"


def test_round_trip(tmp_path):
    entries = [make_entry(i) for i in range(5)]
    saved = save_bank(tmp_path / "b", entries, name="demo", version=3, sources=["math_train", "gsm8k"],
                      summarizer="qwen", config={"top": 3}, parent="demo@2", notes="n")
    loaded = load_bank(tmp_path / "b")
    assert loaded.entries == tuple(entries) == saved.entries
    assert loaded.manifest == saved.manifest
    m = loaded.manifest
    assert (m.name, m.version, m.n_entries, m.sources, m.config, m.parent, m.notes) == (
        "demo", 3, 5, ["math_train", "gsm8k"], {"top": 3}, "demo@2", "n")
    assert m.sha256 == hashlib.sha256((tmp_path / "b" / "entries.jsonl").read_bytes()).hexdigest()
    assert m.created_at  # defaulted to now
    assert loaded.path == tmp_path / "b" and len(loaded) == 5
    for name in ("entries.jsonl", "manifest.json"):  # not mkstemp's 0600
        assert (tmp_path / "b" / name).stat().st_mode & 0o777 == 0o644


def test_round_trip_keeps_unusual_unicode(tmp_path):
    entry = make_entry(0, enforce="keeping \u2028 line separators, \u00e9 and \u03c0", avoid="a\x85b")
    save_bank(tmp_path / "b", [entry], name="x")
    assert load_bank(tmp_path / "b").entries == (entry,)


def test_save_accepts_dicts_and_optional_fields(tmp_path):
    d = entry_dict(1)
    del d["summarizer"], d["created_at"]
    bank = save_bank(tmp_path / "b", [d], name="x")
    assert bank.entries[0].summarizer == "" and load_bank(tmp_path / "b").entries == bank.entries


def test_save_rejects_duplicates_and_bad_entries(tmp_path):
    with pytest.raises(BankError, match=r"entry 1: field 'id': duplicate id 'e0'"):
        save_bank(tmp_path / "b", [make_entry(0), make_entry(0)], name="x")
    with pytest.raises(BankError, match=r"entry 0: field 'avoid' is empty"):
        save_bank(tmp_path / "b", [make_entry(0, avoid=" ")], name="x")
    assert not (tmp_path / "b" / "entries.jsonl").exists()


@pytest.mark.parametrize("failing_call", [1, 2])
def test_atomic_write_leaves_no_partial_files(tmp_path, monkeypatch, failing_call):
    """A failure while writing either file leaves neither a partial file nor a temp file."""
    real_fsync, calls = bank_mod.os.fsync, []

    def flaky_fsync(fd):
        calls.append(fd)
        if len(calls) == failing_call:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(bank_mod.os, "fsync", flaky_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_bank(tmp_path / "b", [make_entry(i) for i in range(3)], name="x")
    assert list((tmp_path / "b").iterdir()) == []


def test_failed_overwrite_keeps_the_old_bank(tmp_path, monkeypatch):
    old = save_bank(tmp_path / "b", [make_entry(0)], name="old")

    def broken_replace(src, dst):
        raise OSError("replace failed")

    monkeypatch.setattr(bank_mod.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_bank(tmp_path / "b", [make_entry(i) for i in range(4)], name="new")
    monkeypatch.undo()
    assert load_bank(tmp_path / "b").entries == old.entries
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["entries.jsonl", "manifest.json"]


@pytest.mark.parametrize(
    ("line2", "expected"),
    [
        ('{"id": "e1", "enforce": ', r"line 2: invalid JSON"),
        (json.dumps([1, 2]), r"line 2: expected a JSON object"),
        (json.dumps({k: v for k, v in entry_dict(1).items() if k != "avoid"}), r"line 2: missing field 'avoid'"),
        (json.dumps(entry_dict(1, colour="red")), r"line 2: unknown field 'colour'"),
        (json.dumps(entry_dict(1, enforce=5)), r"line 2: field 'enforce' must be a string, got int"),
        (json.dumps(entry_dict(1, category=None)), r"line 2: field 'category' must be a string, got null"),
        (json.dumps(entry_dict(1, enforce="  ")), r"line 2: field 'enforce' is empty"),
        (json.dumps(entry_dict(1, avoid="")), r"line 2: field 'avoid' is empty"),
        (json.dumps(entry_dict(0)), r"line 2: field 'id': duplicate id 'e0' \(first seen on line 1\)"),
    ],
)
def test_validation_errors_name_file_line_and_field(tmp_path, line2, expected):
    bank_dir = write_bank(tmp_path, [json.dumps(entry_dict(0)), line2, json.dumps(entry_dict(2))])
    with pytest.raises(BankError) as info:
        load_bank(bank_dir)
    message = str(info.value)
    assert str(bank_dir / "entries.jsonl") in message
    assert re.search(expected, message), message


def test_line_numbers_count_blank_lines(tmp_path):
    bank_dir = write_bank(tmp_path, [json.dumps(entry_dict(0)), "", json.dumps(entry_dict(1, avoid=""))],
                          n_entries=2)
    with pytest.raises(BankError, match=r"entries.jsonl line 3: field 'avoid' is empty"):
        load_bank(bank_dir)


def test_sha_mismatch_names_both_hashes(tmp_path):
    saved = save_bank(tmp_path / "b", [make_entry(0), make_entry(1)], name="x")
    path = tmp_path / "b" / "entries.jsonl"
    edited = path.read_bytes().replace(b"violation 1", b"violation 9")
    path.write_bytes(edited)
    with pytest.raises(BankError, match="sha256 mismatch") as info:
        load_bank(tmp_path / "b", build_hint="python -m memcollab_eval.build")
    message = str(info.value)
    assert saved.manifest.sha256 in message and hashlib.sha256(edited).hexdigest() in message
    assert "python -m memcollab_eval.build" in message


def test_n_entries_mismatch(tmp_path):
    bank_dir = write_bank(tmp_path, [json.dumps(entry_dict(0))], n_entries=2)
    with pytest.raises(BankError, match=r"'n_entries' is 2 but .* holds 1 entries"):
        load_bank(bank_dir)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"version": "1"}, r"field 'version' must be int, got str"),
        ({"version": True}, r"field 'version' must be int, got bool"),
        ({"sha256": "abc"}, r"field 'sha256' must be 64 lowercase hex digits"),
        ({"sources": ["a", 3]}, r"field 'sources' must be a list of strings"),
        ({"parent": 7}, r"field 'parent' must be str or null, got int"),
        ({"extra": 1}, r"unknown field 'extra'"),
    ],
)
def test_manifest_validation(tmp_path, overrides, expected):
    bank_dir = write_bank(tmp_path, [json.dumps(entry_dict(0))], **overrides)
    with pytest.raises(BankError, match=expected) as info:
        load_bank(bank_dir)
    assert "manifest.json" in str(info.value)


def test_manifest_missing_field_and_bad_json(tmp_path):
    bank_dir = write_bank(tmp_path, [json.dumps(entry_dict(0))])
    manifest = json.loads((bank_dir / "manifest.json").read_text())
    del manifest["summarizer"]
    (bank_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BankError, match=r"manifest.json: missing field 'summarizer'"):
        load_bank(bank_dir)
    (bank_dir / "manifest.json").write_text("{\n  'name': 1\n}")
    with pytest.raises(BankError, match=r"manifest.json line 2: invalid JSON"):
        load_bank(bank_dir)


def test_missing_bank_includes_build_hint(tmp_path):
    hint = "python -m memcollab_eval build_bank=true bank.name=main"
    with pytest.raises(BankError, match="not found") as info:
        load_bank(tmp_path / "nope", build_hint=hint)
    assert hint in str(info.value) and str(tmp_path / "nope") in str(info.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    with pytest.raises(BankError, match="entries.jsonl is missing") as info:
        load_bank(tmp_path / "half", build_hint=hint)
    assert hint in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(BankError, match="not a directory"):
        load_bank(tmp_path / "file")


def test_fixture_bank_loads():
    bank = load_bank(FIXTURE)
    assert bank.manifest.n_entries == len(bank.entries) == 11
    assert bank.entries[0].id == "alg-1"
