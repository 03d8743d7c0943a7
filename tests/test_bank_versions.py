"""Issue 18: bank versions written by retire / supersede (append-only, hash-chained, with a changelog),
read newest unless pinned, compared by diff, and validated by check (supersedes links, history, conflicts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from memcollab_eval.bank.checks import check_bank
from memcollab_eval.bank.conflicts import find_conflicts, side
from memcollab_eval.bank.store import BankError, MemoryEntry, load_bank, save_bank, sha256_bytes
from memcollab_eval.bank.versions import Retirement, retire, supersede
from memcollab_eval.ci.bank_cli import main

BASE = {"enforce": "checking the units of every quantity", "avoid": "adding minutes to hours",
        "category": "Prealgebra", "subcategory": "units", "preferred_model": "big", "unpreferred_model": "small",
        "source_benchmark": "gsm8k", "source_problem_id": "gsm8k/train/1"}


@pytest.fixture
def bank(tmp_path) -> Path:
    rows = [{**BASE, "id": f"e{i}", "enforce": f"{verb} the {noun}", "avoid": f"{mistake} the {noun}"}
            for i, (verb, noun, mistake) in enumerate([("converting", "durations", "adding"),
                                                       ("listing", "groups of a total", "double counting"),
                                                       ("rebuilding", "total from an average", "averaging")])]
    save_bank(tmp_path / "bank", rows, name="shared")
    return tmp_path / "bank"


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_retire_writes_a_new_version_and_never_edits_in_place(bank):
    before = files(bank)
    v2 = retire(bank, [Retirement("e1", "double counts on GSM8K")])
    after = files(bank)
    assert {k: v for k, v in after.items() if not k.startswith("v2/")} == before  # v1 kept byte for byte
    assert sorted(k for k in after if k.startswith("v2/")) == ["v2/entries.jsonl", "v2/manifest.json"]
    assert v2.path == bank / "v2" and v2.manifest.version == 2 and v2.root == bank
    assert v2.manifest.parent_sha256 == sha256_bytes((bank / "manifest.json").read_bytes())
    c = v2.manifest.changelog
    assert c["action"] == "retire" and c["ids"] == ["e1"] and c["why"] == {"e1": "double counts on GSM8K"}
    assert c["parent_version"] == 1 and c["at"]
    e1 = {e.id: e for e in v2.entries}["e1"]
    assert e1.status == "retired" and e1.retired_why == "double counts on GSM8K"
    assert load_bank(bank).path == bank / "v2"  # a bank name loads its newest version
    assert load_bank(bank, version=1).path == bank and load_bank(bank / "v2").manifest.version == 2
    with pytest.raises(BankError, match="has no version 5"):
        load_bank(bank, version=5)


def test_supersede_appends_the_replacement_and_keeps_the_old_entry(bank, tmp_path):
    new = {**BASE, "id": "e0b", "enforce": "converting every duration to minutes first"}
    v2 = supersede(bank, "e0", new, why="sharper")
    ids = [e.id for e in v2.entries]
    assert ids == ["e0", "e1", "e2", "e0b"]
    assert v2.entries[0] == load_bank(bank, version=1).entries[0]  # unchanged, kept for history
    assert v2.entries[-1].supersedes == "e0" and v2.manifest.changelog["supersedes"] == {"e0b": "e0"}
    with pytest.raises(BankError, match="already superseded by 'e0b'"):
        supersede(bank, "e0", {**new, "id": "e0c"})
    with pytest.raises(BankError, match="is already in the bank"):
        supersede(bank, "e1", {**new, "id": "e2"})
    with pytest.raises(BankError, match="new entry: missing field 'avoid'"):
        supersede(bank, "e1", {k: v for k, v in {**new, "id": "x"}.items() if k != "avoid"})


def test_an_older_version_edited_in_place_is_caught(bank):
    retire(bank, [Retirement("e1", "why")])
    manifest = bank / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"notes": ""', '"notes": "edited"'))
    with pytest.raises(BankError, match="an older version was edited in place"):
        load_bank(bank)
    report = check_bank(bank, data_dir=None)
    assert any(f.check == "history" and "edited in place" in f.message for f in report.findings)


def test_retire_refuses_what_it_cannot_do(bank):
    with pytest.raises(BankError, match="no entry with id 'nope'"):
        retire(bank, [Retirement("nope", "x")])
    retire(bank, [Retirement("e1", "x")])
    with pytest.raises(BankError, match="already retired"):
        retire(bank, [Retirement("e1", "again")])
    with pytest.raises(BankError, match="not the newest"):
        from memcollab_eval.bank.versions import write_version

        write_version(load_bank(bank, version=1), [], {"action": "test"})


def test_cli_retire_supersede_versions_and_diff(bank, tmp_path, capsys):
    assert main(["retire", str(bank), "e2", "--why", "averages the averages"]) == 0
    new = tmp_path / "new.json"
    new.write_text(json.dumps({**BASE, "id": "e1b", "enforce": "listing each group once"}))
    assert main(["supersede", str(bank), "e1", str(new)]) == 0
    capsys.readouterr()
    assert main(["versions", str(bank)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["v1", "v2", "v3"] and out[-1].endswith("<- newest")
    assert main(["diff", f"{bank}@v1", str(bank)]) == 0
    out = capsys.readouterr().out
    assert "+ e1b" in out and "~ e2: status: '(unset)' -> 'retired'; retired_why: '(unset)' -> 'averages the " in out
    assert main(["diff", str(bank)]) == 0  # newest against its parent
    out = capsys.readouterr().out
    assert "@v2" in out and "added (1)" in out and '"action": "supersede"' in out


@pytest.mark.parametrize(("argv", "says"), [
    (["retire", "{bank}", "e1"], "say why with --why"),
    (["retire", "{bank}", "nope", "--why", "x"], "no entry with id 'nope'"),
    (["supersede", "{bank}", "e1", "{bank}/missing.json"], "missing.json: cannot read"),
    (["supersede", "{bank}", "e1", "{bank}/manifest.json"], "manifest.json: unknown field 'config'"),
    (["diff", "{bank}@v0"], "BANK@vN with N >= 1"),
    (["diff", "{bank}"], "has one version only"),
    (["audit", "{bank}", "{bank}/nope"], "does not exist"),
])
def test_cli_usage_errors_are_one_line_with_exit_2(bank, capsys, argv, says):
    (bank / "bad.json").write_text("{")
    assert main([a.format(bank=bank) for a in argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_json_for_supersede_names_the_file_and_line(bank, capsys):
    (bank.parent / "new.json").write_text('{\n  "id": "x",\n  oops\n}')
    assert main(["supersede", str(bank), "e1", str(bank.parent / "new.json")]) == 2
    assert "new.json line 3: invalid JSON" in capsys.readouterr().err


def test_check_reports_dangling_and_circular_supersedes(tmp_path):
    rows = [{**BASE, "id": "a", "supersedes": "b"}, {**BASE, "id": "b", "supersedes": "a", "enforce": "other"},
            {**BASE, "id": "c", "supersedes": "ghost", "enforce": "third"},
            {**BASE, "id": "d", "status": "retired", "enforce": "fourth"}]
    save_bank(tmp_path / "b", rows, name="b")
    findings = check_bank(tmp_path / "b", data_dir=None).findings
    got = {(f.level, f.check, f.entry_id) for f in findings if f.check in ("supersedes", "retired")}
    assert ("error", "supersedes", "c") in got and ("warning", "retired", "d") in got
    cycle = [f for f in findings if "cycle" in f.message]
    assert len(cycle) == 1 and "a -> b -> a" in cycle[0].message or "b -> a -> b" in cycle[0].message


def test_conflicting_lessons_are_reported_with_both_ids(tmp_path):
    rows = [{**BASE, "id": "x", "enforce": "converting every duration to minutes before adding",
             "avoid": "guessing"},
            {**BASE, "id": "y", "enforce": "keeping each duration in its own unit",
             "avoid": "converting durations to minutes before adding them"},
            # the same words on the other side with the opposite polarity: consistent, not a conflict
            {**BASE, "id": "z", "enforce": "reading the question", "avoid": "skipping the conversion of durations "
                                                                            "to minutes"},
            # another model pair: never compared
            {**BASE, "id": "w", "preferred_model": "third", "avoid": "converting every duration to minutes"}]
    save_bank(tmp_path / "b", rows, name="b")
    conflicts = [f for f in check_bank(tmp_path / "b", data_dir=None).findings if f.check == "conflict"]
    assert len(conflicts) == 1 and conflicts[0].level == "warning"
    assert conflicts[0].entry_id == "y" and "entry 'x' (line 1)" in conflicts[0].message
    assert "duration, minute" in conflicts[0].message
    assert side("avoid skipping the unit check").polarity == 0 and side("skip the check").polarity == 1
    # retiring one side resolves it
    retire(tmp_path / "b", [Retirement("y", "contradicts x")])
    assert not [f for f in check_bank(tmp_path / "b", data_dir=None).findings if f.check == "conflict"]


def test_no_conflicts_in_the_committed_banks():
    from memcollab_eval.hydra_app import PACKAGE_BANKS

    for d in sorted(p for p in PACKAGE_BANKS.iterdir() if (p / "manifest.json").is_file()):
        assert find_conflicts(load_bank(d).entries) == [], d.name


def test_a_copied_bank_with_versions_loads_its_newest(bank, tmp_path):
    retire(bank, [Retirement("e0", "why")])
    shutil.copytree(bank, tmp_path / "copy")
    assert load_bank(tmp_path / "copy").manifest.version == 2
    assert MemoryEntry  # the store's entry type is what versions write
