"""Plain lm-eval, as README documents it: ``memcollab-lm-eval`` (lm-eval's own CLI with our models
registered) on the task YAMLs in tasks/, offline, on SmolLM2; and where the YAML tasks get their data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, require_smollm2
from test_packaged_data import forbidding_env

from memcollab_eval import packaged_data
from memcollab_eval.adapters import get_spec
from memcollab_eval.evaluation import task_yaml
from memcollab_eval.evaluation.task_yaml import OFFLINE_KEY, TaskDataset
from memcollab_eval.packaged_data import packaged_file

DEMO_HANDMADE = REPO / "memcollab_eval" / "banks" / "demo_handmade"


def first_gsm8k_id() -> str:
    with open(packaged_file("gsm8k/test.jsonl"), encoding="utf-8") as f:
        return get_spec("gsm8k").problem_id(json.loads(f.readline()))


def cli() -> list[str]:
    """The console script beside this interpreter (pip install -e . puts it there), else python -m."""
    script = Path(sys.executable).with_name("memcollab-lm-eval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "memcollab_eval.evaluation.lm_eval_cli"]


def run_cli(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                          Path, Path]:
    env, forbidden = forbidding_env(tmp_path)
    env.update(env_extra or {})
    out = tmp_path / "out"
    proc = subprocess.run([*cli(), "run", "--include_path", str(REPO / "tasks"), "--limit", "1",
                           "--output_path", str(out), "--log_samples", *args],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    return proc, out, forbidden


def read_outputs(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return results, samples


# ---- registration --------------------------------------------------------------------------

def test_console_script_is_installed():
    if not Path(sys.executable).with_name("memcollab-lm-eval").exists():
        message = "memcollab-lm-eval is not installed beside this Python: pip install -e ."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_register_models_keeps_the_built_ins_and_resolves_ours():
    from lm_eval.api.registry import get_model, model_registry

    from memcollab_eval.agent.agent_lm import AgentLM
    from memcollab_eval.evaluation.lm_eval_cli import LM_EVAL_MODELS, declared_models, register_models

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert declared_models() == pyproject  # the installed metadata is pyproject's table (pip install -e . after edits)
    assert LM_EVAL_MODELS.items() <= pyproject.items()  # the fallback for an uninstalled checkout agrees
    assert register_models() == sorted(pyproject)
    assert register_models() == sorted(pyproject)  # idempotent
    assert get_model("memcollab_agent") is AgentLM
    assert get_model("memcollab_scripted").__name__ == "ScriptedLM"
    assert get_model("llama_cpp").__name__ == "LlamaCppLM"
    assert {"hf", "vllm", "local-chat-completions"} <= set(model_registry.keys())  # lm-eval's own, still there


# ---- where the YAML tasks read their data -----------------------------------------------------

@pytest.fixture
def hub_calls(monkeypatch):
    """Replace the hub with a recorder; clear every offline switch and the cached probe."""
    for name in packaged_data.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    probe = packaged_data.hub_unreachable_reason
    probe.cache_clear()
    calls: list[tuple] = []
    real = task_yaml.datasets.load_dataset

    def load_dataset(path, *args, **kwargs):
        if path == "json":
            return real(path, *args, **kwargs)
        calls.append((path, *args))
        return {"test": "from the hub"}

    monkeypatch.setattr(task_yaml.datasets, "load_dataset", load_dataset)
    yield calls
    probe.cache_clear()


def packaged_ids(dataset) -> list[str]:
    spec = get_spec("gsm8k")
    return [spec.problem_id(doc) for doc in dataset["test"]]


def test_yaml_data_comes_from_the_package_when_asked_without_probing(hub_calls, monkeypatch):
    def no_probe(*_):
        raise AssertionError("probed the hub although asked to stay offline")

    monkeypatch.setattr(packaged_data.socket, "create_connection", no_probe)
    loader = TaskDataset("gsm8k")
    data = loader(**{OFFLINE_KEY: True, "version": 1.0, "model": "smollm2_135m"})
    assert hub_calls == [] and loader.source == str(packaged_file("gsm8k/test.jsonl"))
    ids = packaged_ids(data)
    assert len(ids) == 1319 and ids[0] == first_gsm8k_id()
    # the same problems and ids as the Hydra job's task (data_dir unset)
    fields = get_spec("gsm8k").dataset_fields(None)
    assert fields["dataset_kwargs"]["data_files"]["test"] == loader.source
    monkeypatch.setenv("MEMCOLLAB_OFFLINE", "1")
    assert packaged_ids(TaskDataset("gsm8k")()) == ids and hub_calls == []


def test_yaml_data_comes_from_the_package_at_once_when_the_hub_is_unreachable(hub_calls, monkeypatch, caplog):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    loader = TaskDataset("humaneval")
    data = loader()
    assert time.monotonic() - start < packaged_data.HUB_PROBE_TIMEOUT + 10
    assert hub_calls == [] and len(data["test"]) == 164
    assert "the Hugging Face hub is unreachable: cannot connect to 127.0.0.1:9" in caplog.text
    assert "humaneval/HumanEval.jsonl" in repr(loader)


def test_yaml_data_comes_from_the_hub_when_it_answers(hub_calls, monkeypatch):
    monkeypatch.setattr(packaged_data, "hub_unreachable_reason", lambda *a: None)
    loader = TaskDataset("mbpp")
    assert loader() == {"test": "from the hub"}
    assert hub_calls == [("google-research-datasets/mbpp", "full")] and loader.source == "hub"


# ---- the real CLI on SmolLM2 ---------------------------------------------------------------

def test_plain_lm_eval_runs_both_twins_offline_on_smollm2(tmp_path):
    require_smollm2()
    proc, out, forbidden = run_cli(
        tmp_path, "--model", "llama_cpp", "--model_args", "model=smollm2_135m", "--tasks", "gsm8k_nomemory",
        "gsm8k_memcollab", "--apply_chat_template", "--gen_kwargs", "max_gen_toks=16",
        env_extra={"MEMCOLLAB_BANK": str(DEMO_HANDMADE), "MEMCOLLAB_TARGET": "qwen25_coder_05b"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not forbidden.exists(), forbidden.read_text()
    assert "reading the copy shipped in the package" in proc.stderr
    results, samples = read_outputs(out)
    assert set(results["results"]) == {"gsm8k_nomemory", "gsm8k_memcollab"}
    assert all("acc,none" in r and "memory_injected,none" in r for r in results["results"].values())
    assert "gsm8k/test.jsonl" in results["configs"]["gsm8k_memcollab"]["custom_dataset"]
    plain, mem = samples["gsm8k_nomemory"][0], samples["gsm8k_memcollab"][0]
    assert plain["doc"]["memcollab_id"] == mem["doc"]["memcollab_id"] == first_gsm8k_id()
    plain_prompt, mem_prompt = (s["arguments"]["gen_args_0"]["arg_0"] for s in (plain, mem))
    assert plain_prompt.startswith("<|im_start|>")  # --apply_chat_template: SmolLM2's chat format
    assert mem["doc"]["memcollab_prompt"] in mem_prompt and mem["doc"]["memcollab_memory"] in mem_prompt
    assert plain["doc"]["memcollab_memory"] == ""


def test_plain_lm_eval_runs_the_agent_wrapper(tmp_path):
    require_smollm2()
    proc, out, forbidden = run_cli(
        tmp_path, "--model", "memcollab_agent", "--model_args", "inner=llama_cpp,model=smollm2_135m,max_turns=1",
        "--tasks", "gsm8k_nomemory", "--gen_kwargs", "max_gen_toks=16")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not forbidden.exists(), forbidden.read_text()
    results, samples = read_outputs(out)
    assert results["results"]["gsm8k_nomemory"]["turns,none"] == 1.0
    sample = samples["gsm8k_nomemory"][0]
    assert sample["doc"]["memcollab_id"] == first_gsm8k_id()
    assert sample["resps"][0][0].startswith("<memcollab_episode>")
