"""Bank building with ``protocol=agent``: trajectories are episode transcripts, verification
scores their final answers, and a work directory never mixes protocols."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import pool_dir
from test_build import build_cmd, write_doubles


@pytest.fixture(scope="module")
def agent_build(tmp_path_factory):
    if not (pool_dir() / "gsm8k" / "train.jsonl").exists():
        pytest.skip("offline data not found")
    tmp = tmp_path_factory.mktemp("agent_build")
    paths = write_doubles(tmp)
    cmd = build_cmd(paths, tmp / "work", tmp / "bank") + ["protocol=agent", "agent.max_turns=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, paths


def test_trajectories_are_transcripts_and_verified_by_their_final_answer(agent_build):
    from memcollab_eval.agent import decode_transcript, readable
    from memcollab_eval.bank.store import load_bank

    tmp, paths = agent_build
    work = tmp / "work"
    trajs = [json.loads(line) for line in (work / "trajectories.jsonl").read_text().splitlines()]
    episodes = {(t["problem_id"], t["model"]): decode_transcript(t["text"]) for t in trajs}
    assert len(trajs) == 12 and all(e is not None for e in episodes.values())
    strong, weak = paths["strong"], paths["weak"]
    # the strong double answers math at once; its code is never marked final, so the turns run out
    # and the last proposed block is scored
    assert {(e.turns, e.stopped) for (pid, m), e in episodes.items() if m == strong and pid.startswith("mbpp")} == \
        {(2, "max_turns")}
    assert {(e.turns, e.stopped) for (pid, m), e in episodes.items() if m == strong and not pid.startswith("mbpp")} == \
        {(1, "final")}
    verdicts = [json.loads(line) for line in (work / "verdicts.jsonl").read_text().splitlines()]
    assert {v["status"] for v in verdicts if v["model"] == strong} == {"pass"}
    assert {v["status"] for v in verdicts if v["model"] == weak and v["problem_id"].startswith("mbpp")} == {"no_answer"}
    assert json.loads((work / "trajectories.meta.json").read_text()) == {
        "protocol": "agent", "agent": {"max_turns": 2, "output_chars": 2000, "block_timeout": 10.0}}
    # distillation and the abstraction gate read an episode as dialogue, not as JSON
    mbpp = next(t["text"] for t in trajs if t["model"] == strong and t["problem_id"].startswith("mbpp"))
    dialogue = readable(mbpp)
    assert dialogue.startswith("ASSISTANT: ```python") and "\n\nHARNESS: The code block defines" in dialogue
    assert "memcollab_episode" not in dialogue and "You may run Python code" not in dialogue
    bank = load_bank(tmp / "bank")
    assert bank.entries and bank.manifest.config["build"]["protocol"] == "agent"


def test_a_work_directory_does_not_mix_protocols(agent_build):
    tmp, paths = agent_build
    proc = subprocess.run(build_cmd(paths, tmp / "work", tmp / "bank"), capture_output=True, text=True, timeout=300,
                          cwd=tmp)
    assert proc.returncode == 1
    assert "holds trajectories made with" in proc.stderr and '"protocol": "agent"' in proc.stderr
