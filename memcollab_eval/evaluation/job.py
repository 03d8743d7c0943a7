"""The evaluate job: one target, one bank, several benchmarks, with and without memory.

Builds the model through lm-eval's registry, the task twins, runs ``simple_evaluate``
once for all of them, saves lm-eval's own results and samples files (EvaluationTracker,
as lm-eval's CLI does) and a summary of accuracy with vs without memory.

``protocol=agent`` wraps the model in ``memcollab_agent`` (multi-turn episodes with code
run in the sandbox) and runs the same tasks without lm-eval's chat templating (the
wrapper renders each turn itself); the summary then also compares turns.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from lm_eval.api.model import CachingLM

from memcollab_eval.agent.agent_lm import AgentLM
from memcollab_eval.agent.messages import PROTOCOL_VERSION
from memcollab_eval.bank.store import load_bank
from memcollab_eval.config import BENCHMARK_NAMES, EvalConf, protocol_problems, runtime_problems
from memcollab_eval.errors import UsageError
from memcollab_eval.evaluation.report import collect, reach, write_report
from memcollab_eval.evaluation.summary import BenchmarkRow, format_table, run_record, summarize, write_summary
from memcollab_eval.evaluation.tasks import MemorySetup, task_config, task_name
from memcollab_eval.models.generation import build_lm
from memcollab_eval.subsets import selected_samples, subset_problems, uses_samples

__all__ = ["BenchmarkRow", "UsageError", "evaluate", "format_table", "preflight"]  # the summary's two: re-exported


def preflight(cfg: EvalConf) -> None:
    """Fail fast, naming everything that is missing, before any model or dataset is loaded."""
    problems = []
    unknown = [b for b in cfg.benchmarks if b not in BENCHMARK_NAMES]
    if unknown:
        problems.append(f"unknown benchmark(s) {unknown}; valid: {list(BENCHMARK_NAMES)}")
    problems.extend(protocol_problems(cfg.protocol))
    problems.extend(runtime_problems(retrieval=cfg.retrieval, sandbox=cfg.sandbox, agent=cfg.agent))
    problems.extend(subset_problems(list(cfg.benchmarks), cfg.limit, dict(cfg.limits), cfg.subset))
    missing = [m for m in cfg.target.requires if importlib.util.find_spec(m) is None]
    if missing:
        problems.append(
            f"target {cfg.target.identity!r} needs the Python module(s) {missing} (backend {cfg.target.model!r}), "
            f"which are not installed here. Install: {cfg.target.install_hint or 'see README'}"
        )
    elif cfg.target.model == "vllm" and not _gpu_visible():
        problems.append(f"target {cfg.target.identity!r} runs on vLLM, which needs a CUDA GPU; none is visible here")
    if cfg.bank.path is not None and not Path(cfg.bank.path).is_dir():
        hint = f" Build it with: {cfg.bank.build_command}" if cfg.bank.build_command else ""
        problems.append(f"bank {cfg.bank.name!r} not found at {cfg.bank.path}.{hint}")
    if problems:
        raise UsageError("\n  - ".join(["cannot run:", *problems]))


def _gpu_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def build_model(cfg: EvalConf):
    """Instantiate the target through lm-eval's model registry (so any backend works);
    under ``protocol=agent`` wrapped in the agent protocol. Returns the model and the
    request-cache path to hand to ``simple_evaluate`` (None when caching is off)."""
    lm = build_lm(cfg.target)
    # batched and sequential decoding may differ in rare tokens: their replies never share a cache file
    # (a sequential target keeps its old file name, so earlier caches stay valid)
    n_parallel = int(getattr(lm, "n_parallel", 1) or 1)
    name = cfg.target.identity + ("" if n_parallel == 1 else f".batch{n_parallel}")
    cache_dir = Path(cfg.output_dir) / "cache"
    if cfg.protocol == "agent":
        if cfg.use_cache:  # per-turn replies, so an interrupted agent run resumes mid-episode (see AgentLM)
            lm = CachingLM(lm, str(agent_turn_cache(cache_dir, name)))
        lm = AgentLM(lm, cfg.agent_config())
        a = cfg.agent  # an episode's transcript depends on these and on the wording: one cache per setting
        name += f".agent-v{PROTOCOL_VERSION}-t{a.max_turns}-o{a.output_chars}-b{a.block_timeout:g}"
    if not cfg.use_cache:
        return lm, None
    cache = cache_dir / name  # lm-eval's cache key has no model identity: one file per target
    cache.parent.mkdir(parents=True, exist_ok=True)
    return lm, str(cache)


def agent_turn_cache(cache_dir: Path, identity: str) -> Path:
    """The target's per-turn replies under the agent protocol. One file per target, shared by
    every agent setting: a turn's key is its whole rendered conversation, which already holds
    the wording and the (truncated) tool output, so a changed setting simply misses."""
    return cache_dir / f"{identity}.agent-turns.db"


def build_tasks(cfg: EvalConf) -> list[dict[str, Any]]:
    setup = None
    if cfg.bank.path is not None:
        bank = load_bank(cfg.bank.path, build_hint=cfg.bank.build_command)
        setup = MemorySetup(bank, cfg.retrieval_config(), cfg.target.identity)
    sandbox = cfg.sandbox_config()
    tasks = []
    for benchmark in cfg.benchmarks:
        for twin_setup in ([None, setup] if setup is not None else [None]):
            tasks.append(task_config(benchmark, data_dir=cfg.data_dir, setup=twin_setup,
                                     max_gen_toks=cfg.max_gen_toks, sandbox=sandbox))
    return tasks


def evaluate(cfg: EvalConf, run_dir: Path) -> list[BenchmarkRow]:
    """Run the whole job and write results under ``run_dir``; returns the summary rows."""
    from lm_eval import simple_evaluate  # lm-eval's evaluator and loggers load torch-free but slowly: on use
    from lm_eval.loggers import EvaluationTracker

    started = time.perf_counter()  # the run record's wall time
    preflight(cfg)
    lm, cache = build_model(cfg)
    tasks = build_tasks(cfg)
    tracker = EvaluationTracker(output_path=str(run_dir))
    limit, chosen = cfg.limit, None  # lm-eval takes either a limit or chosen indices
    if uses_samples(dict(cfg.limits), cfg.subset):
        names = {b: [t["task"] for t in tasks if t["task"] in (task_name(b, True), task_name(b, False))]
                 for b in cfg.benchmarks}
        limit, chosen = None, selected_samples(list(cfg.benchmarks), names, cfg.data_dir, cfg.limit,
                                                dict(cfg.limits), cfg.subset, cfg.seed)
    results = simple_evaluate(
        model=lm, tasks=tasks, limit=limit, samples=chosen, log_samples=cfg.log_samples, evaluation_tracker=tracker, use_cache=cache,
        # the agent wrapper needs the raw prompt: it applies the chat template to every turn itself
        apply_chat_template=cfg.target.apply_chat_template if cfg.protocol == "single_turn" else False,
        random_seed=cfg.seed, numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed, bootstrap_iters=0,
        metadata={"memcollab": {"target": cfg.target.identity, "bank": cfg.bank.name, "protocol": cfg.protocol}},
    )
    samples = results.pop("samples", None)
    # lm-eval names the results folder after model_args, which an LM instance does not have
    # (it would pick a random id): name it after the target instead.
    tracker.general_config_tracker.model_name = cfg.target.identity
    tracker.general_config_tracker.model_name_sanitized = cfg.target.identity.replace("/", "__")
    tracker.save_results_aggregated(results=results, samples=samples)
    if samples is not None:
        for name in results["configs"]:
            tracker.save_results_samples(task_name=name, samples=samples[name])
    usage = getattr(getattr(lm, "lm", lm), "usage", None)
    bank = load_bank(cfg.bank.path) if cfg.bank.path is not None and cfg.log_samples else None
    problems = collect(run_dir, bank=bank, retrieval=cfg.retrieval_config(), target=cfg.target.identity)
    rows = summarize(results, cfg.benchmarks, reach(problems) if cfg.log_samples else None)
    record = run_record(cfg, lm, results, usage, wall_seconds=time.perf_counter() - started)
    write_summary(run_dir, cfg, rows, record)
    write_report(run_dir, rows, record, problems)
    return rows
