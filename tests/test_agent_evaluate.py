"""The evaluate job with ``protocol=agent`` through lm-eval, with the scripted test double
(no weights), plus the protocol's config keys and the task YAMLs."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, data_dir, read_jsonl
from test_config import compose_eval
from test_evaluate_scripted import load_samples

LIMIT = 2


def agent_rules() -> list[list[str]]:
    """Math: compute in turn 1, answer 18 in turn 2. MBPP: propose the reference solution (its
    example test passes), then mark it final. HumanEval: never finish (max_turns)."""
    rules = []
    for doc in read_jsonl("mbpp/test.jsonl")[:LIMIT]:
        code = doc["code"].replace("\r\n", "\n")
        rules.append([f"example test `{doc['test_list'][0].strip()}` ran after it: it passed.",
                      f"It works.\n```python\n# final\n{code}\n```"])
        rules.append([doc["text"], f"```python\n{code}\n```"])
    rules += [["```output\n18\n```", "So the answer is $\\boxed{18}$."],
              ["Complete the following Python function", "```python\nprint('thinking')\n```"],
              ["solve the problem.", "Let me compute.\n```python\nprint(6 * 3)\n```"]]
    return rules


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    from memcollab_eval.evaluation.job import evaluate

    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    out = tmp_path_factory.mktemp("agent_run")
    (out / "rules.json").write_text(json.dumps(agent_rules()))
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b", f"data_dir={data_dir()}",
                        f"limit={LIMIT}", f"output_dir={out}", "protocol=agent", "agent.max_turns=3"])
    cfg.target.model_args["rules"] = str(out / "rules.json")
    return out, evaluate(cfg, out)


def transcript(sample: dict) -> dict:
    from memcollab_eval.agent import decode_transcript

    decoded = decode_transcript(sample["resps"][0][0])
    assert decoded is not None, sample["resps"][0][0][:200]
    return decoded.data


def test_turns_per_benchmark_in_the_summary(agent_run):
    run_dir, rows = agent_run
    turns = {r.benchmark: (r.turns_nomemory, r.turns_memory) for r in rows}
    assert turns == {"math500": (2.0, 2.0), "gsm8k": (2.0, 2.0), "mbpp": (2.0, 2.0), "humaneval": (3.0, 3.0)}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["protocol"] == "agent" and summary["agent"] == {"max_turns": 3, "output_chars": 2000,
                                                                   "block_timeout": 10.0}
    assert summary["rows"][3]["turns_nomemory"] == 3.0
    table = (run_dir / "summary.md").read_text()
    assert "turns (no mem / mem)" in table and "| 3.00 / 3.00 |" in table
    results = json.loads(next(run_dir.rglob("results_*.json")).read_text())
    assert results["results"]["mbpp_memcollab"]["turns,none"] == 2.0
    assert results["config"]["memcollab_protocol"] == "agent"


def test_samples_log_the_transcript_and_score_its_final_answer(agent_run):
    run_dir, rows = agent_run
    for task in ("gsm8k_nomemory", "gsm8k_memcollab"):
        for sample in load_samples(run_dir, task):
            data = transcript(sample)
            assert data["blocks"][0]["output"] == "18\n" and data["stopped"] == "final"
            assert "```output\n18\n```" in data["messages"][3]["content"]
            # the wrapper got the raw prompt (lm-eval applied no chat template) and put it in the first user turn
            prompt = sample["arguments"]["gen_args_0"]["arg_0"]
            assert prompt == sample["doc"]["memcollab_memory"] + sample["doc"]["memcollab_prompt"]
            assert data["messages"][1] == {"role": "user", "content": prompt}
            assert sample["doc"]["memcollab_verdict"]["extracted"] == "18"
            assert sample["doc"]["memcollab_turns"] == 2 and sample["turns"] == 2.0
            gold = sample["doc"]["answer"].split("####")[-1].strip()
            assert sample["acc"] == (1.0 if gold == "18" else 0.0)
    mbpp = load_samples(run_dir, "mbpp_nomemory")
    assert [s["acc"] for s in mbpp] == [1.0] * LIMIT
    for sample in mbpp:
        data = transcript(sample)
        assert data["blocks"][0]["test_passed"] is True
        assert data["blocks"][0]["visible_test"] == sample["doc"]["memcollab_visible_test"]
        assert data["final_text"].startswith("```python\n# final\n")
    for sample in load_samples(run_dir, "humaneval_memcollab"):
        data = transcript(sample)
        assert (data["stopped"], data["turns"], len(data["blocks"])) == ("max_turns", 3, 2)
        assert sample["doc"]["memcollab_verdict"]["status"] == "fail"  # the last block (a print) is scored


def test_protocol_keys_compose_and_bad_values_fail_fast():
    from memcollab_eval.evaluation.job import UsageError, preflight

    cfg = compose_eval(["+target=scripted"])
    assert (cfg.protocol, cfg.agent.max_turns, cfg.agent.output_chars, cfg.agent.block_timeout) == \
        ("single_turn", 5, 2000, 10.0)
    cfg = compose_eval(["+target=scripted", "protocol=agent", "agent.max_turns=2", "agent.block_timeout=1.5"])
    assert (cfg.protocol, cfg.agent.max_turns, cfg.agent.block_timeout) == ("agent", 2, 1.5)
    with pytest.raises(UsageError, match=r"protocol 'multi' is not one of \['single_turn', 'agent'\]"):
        preflight(compose_eval(["+target=scripted", "protocol=multi"]))
    with pytest.raises(UsageError, match="agent.max_turns must be >= 1"):
        preflight(compose_eval(["+target=scripted", "protocol=agent", "agent.max_turns=0"]))


def test_build_config_has_the_protocol_keys():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from memcollab_eval.config import register_configs
    from memcollab_eval.construct.config import register_build_configs

    register_configs()
    register_build_configs()
    with initialize_config_module(config_module="memcollab_eval.conf", version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="build", overrides=["protocol=agent", "agent.max_turns=2",
                                                                           "data_dir=/x"]))
    assert cfg.protocol == "agent" and cfg.agent.max_turns == 2 and cfg.problems() == []
    cfg.protocol = "chat"
    assert any("protocol 'chat'" in p for p in cfg.problems())


def test_task_yamls_are_generated_from_task_config():
    from memcollab_eval.adapters import BENCHMARKS
    from memcollab_eval.evaluation.task_yaml import task_yaml
    from memcollab_eval.evaluation.tasks import task_name

    for benchmark in BENCHMARKS:
        for with_memory in (True, False):
            path = REPO / "tasks" / f"{task_name(benchmark, with_memory)}.yaml"
            assert path.read_text() == task_yaml(benchmark, with_memory), \
                f"{path} is stale: python -m memcollab_eval.evaluation.task_yaml tasks"
            assert "  - metric: turns\n" in path.read_text()


def test_agent_request_cache_is_per_setting_and_wording(tmp_path):
    """A cached episode must not be replayed after the instruction's wording or the agent settings change."""
    from memcollab_eval.agent.messages import PROTOCOL_VERSION
    from memcollab_eval.evaluation.job import build_model

    cfg = compose_eval(["+target=scripted", "+bank=none", "protocol=agent", "use_cache=true", "agent.max_turns=3",
                        f"output_dir={tmp_path}"])
    lm, cache = build_model(cfg)
    assert cache == str(tmp_path / "cache" / f"scripted.agent-v{PROTOCOL_VERSION}-t3-o2000-b10")
    # the turns (an interrupted run resumes mid-episode): one file per target, the turn's conversation is the key
    assert lm.inner.cache_db == str(tmp_path / "cache" / "scripted.agent-turns.db")
    assert build_model(compose_eval(["+target=scripted", "+bank=none", "protocol=agent", "use_cache=false",
                                     f"output_dir={tmp_path}"]))[0].inner.__class__.__name__ == "ScriptedLM"
