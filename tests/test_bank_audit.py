"""Issue 18: ``bank audit`` over many finished runs (the committed golden runs, and fresh runs of the
scripted double against a versioned bank), its retirement candidates, and the proposal ``bank retire
--proposal`` applies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_access_evaluate import evaluate_as, small_data  # noqa: F401  (a fixture)

from memcollab_eval.bank.store import load_bank
from memcollab_eval.ci.bank_cli import main
from memcollab_eval.hydra_app import PACKAGE_BANKS
from memcollab_eval.leaderboard.attribution import attribute
from memcollab_eval.leaderboard.audit import audit

RUNS = Path(__file__).parent / "data" / "runs"
HANDMADE = PACKAGE_BANKS / "demo_handmade"


def test_audit_of_the_committed_runs_adds_up_their_attributions():
    a = audit(HANDMADE, [RUNS])
    assert len(a.runs) == 2 and all(r.version == 1 for r in a.runs)
    skipped = dict((p.name, why) for p, why in a.skipped)
    assert skipped == {"scripted-double": "records neither the bank's sha256 (summary.json) nor its path "
                                          "(.hydra/config.yaml)",
                       "2026-11-26_07-10-12": "ran without memory (bank path null)"}
    expected: dict[str, list[int]] = {}
    for r in a.runs:
        for e in attribute(r.run_dir, HANDMADE).effects:
            got = expected.setdefault(e.entry_id, [0, 0, 0])
            got[0] += e.retrieved
            got[1] += e.fixed
            got[2] += e.broken
    assert {s.entry_id: [s.prompts, s.fixed, s.broken] for s in a.served} == expected
    assert all(len(s.runs) == 2 for s in a.served)  # the two runs are the same run twice
    assert a.candidates() == []  # no entry broke 2 more than it fixed


def test_audit_cli_prints_the_table(capsys):
    assert main(["audit", str(HANDMADE), str(RUNS)]) == 0
    out = capsys.readouterr().out
    assert "| demo-012 | v1 | active | 2 | 1 | 2 | 0 | 1 | -1 |" in out
    assert "## Retirement candidates (0)" in out and "Rule: live in the newest version" in out


def test_audit_proposes_and_retire_applies(tmp_path, small_data, capsys):  # noqa: F811
    bank_dir = tmp_path / "bank"
    shutil.copytree(HANDMADE, bank_dir)
    bank = load_bank(bank_dir)
    rules = tmp_path / "rules.json"  # memory in the prompt -> a wrong answer: every problem it reaches breaks
    rules.write_text(json.dumps([["Lessons from past solutions", "The answer is $\\boxed{-1}$."]]))
    for i in range(2):
        evaluate_as(small_data, tmp_path / "runs" / str(i), bank, "alice", f"+target.model_args.rules={rules}")
    proposal = tmp_path / "retire.json"
    assert main(["audit", str(bank_dir), str(tmp_path / "runs"), "--propose", str(proposal)]) == 0
    capsys.readouterr()
    data = json.loads(proposal.read_text())
    assert data["format"] == "memcollab-retire-proposal/1" and data["bank_sha256"] == bank.manifest.sha256
    ids = [r["id"] for r in data["retire"]]
    assert ids, "the double broke problem 1 in both runs: its lessons must be candidates"
    a = audit(bank_dir, [tmp_path / "runs"])
    for s in a.served:
        assert s.fixed == 0 and (s.broken >= 2) == (s.entry_id in ids)
    assert main(["retire", str(bank_dir), "--proposal", str(proposal)]) == 0
    v2 = load_bank(bank_dir)
    assert v2.manifest.version == 2 and v2.manifest.changelog["ids"] == ids
    assert {e.id for e in v2.entries if e.status == "retired"} == set(ids)
    assert v2.manifest.changelog["source"].startswith(f"proposal {proposal}")
    # the old runs map to v1 by their bank sha256; retired entries are no longer candidates
    again = audit(bank_dir, [tmp_path / "runs"])
    assert {r.version for r in again.runs} == {1} and again.candidates() == []
    assert main(["retire", str(bank_dir), "--proposal", str(proposal)]) == 2
    assert "was made for version 1" in capsys.readouterr().err


def test_audit_needs_a_bank(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "none"), str(RUNS)]) == 2
    assert "cannot audit: memory bank not found" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"format": "x"}, {"format": "memcollab-retire-proposal/1", "retire": [{"id": 1}]}])
def test_a_bad_proposal_is_refused(tmp_path, capsys, bad):
    shutil.copytree(HANDMADE, tmp_path / "bank")
    (tmp_path / "p.json").write_text(json.dumps(bad))
    assert main(["retire", str(tmp_path / "bank"), "--proposal", str(tmp_path / "p.json")]) == 2
    assert "p.json: field" in capsys.readouterr().err
