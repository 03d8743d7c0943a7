"""Every config composes; typos, unknown options and missing backends fail fast with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from memcollab_eval.config import EvalConf
from memcollab_eval.evaluation.cli import group_options, prepare_argv, register_hydra


def compose_eval(overrides: list[str]) -> EvalConf:
    register_hydra()
    with initialize_config_module(config_module="memcollab_eval.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=prepare_argv(overrides))
    return OmegaConf.to_object(cfg)


@pytest.mark.parametrize("target", group_options("target"))
@pytest.mark.parametrize("bank", group_options("bank"))
def test_every_target_and_bank_composes(target, bank):
    cfg = compose_eval([f"+target={target}", f"+bank={bank}"])
    assert cfg.target.identity and cfg.target.model
    assert cfg.bank.name == bank


@pytest.mark.parametrize("retrieval", group_options("retrieval"))
def test_every_retrieval_option_composes(retrieval):
    cfg = compose_eval([f"retrieval={retrieval}"])
    assert cfg.retrieval.top_k == 3
    full_bank = retrieval in ("embedding_full_bank", "prompting")  # the paper's ablations: no filters
    assert (retrieval != "no_model_filter" and not full_bank) == cfg.retrieval.model_filter
    assert (retrieval != "no_category" and not full_bank) == cfg.retrieval.use_categories


def test_defaults_are_the_embedded_cpu_model_and_demo_bank():
    cfg = compose_eval([])
    assert (cfg.target.identity, cfg.target.model, cfg.bank.name) == ("qwen25_coder_05b", "llama_cpp", "demo")
    assert cfg.limit == 5 and cfg.benchmarks == ["math500", "gsm8k", "mbpp", "humaneval"]


def test_plain_and_plus_group_syntax_are_equivalent():
    assert prepare_argv(["target=scripted"]) == prepare_argv(["+target=scripted"])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memcollab_eval", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["+target=nope"], "unknown target 'nope'; valid choices: llama3_8b"),
        (["+bank=nope"], "unknown bank 'nope'"),
        (["limt=3"], "limt"),
        (["limit=abc"], "limit"),
        (["retrieval=nope"], "retrieval"),
        (["+target=llama3_8b", "+bank=qwen32_llama8"], "needs the Python module(s) ['vllm']"),
        (["+target=scripted", "benchmarks=[gsm8k,aime]"], "unknown benchmark(s) ['aime']"),
    ],
)
def test_config_errors_exit_2_without_traceback(args, message, tmp_path):
    proc = run_cli(*args, f"output_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_missing_bank_names_the_build_command(tmp_path):
    proc = run_cli("+target=scripted", "+bank=qwen32_llama8", f"output_dir={tmp_path}")
    assert proc.returncode == 2
    assert "python -m memcollab_eval.build" in proc.stderr
