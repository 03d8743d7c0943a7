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
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lm_eval.api.model import CachingLM

from memcollab_eval.adapters import get_spec
from memcollab_eval.agent.agent_lm import AgentLM
from memcollab_eval.agent.messages import PROTOCOL_VERSION
from memcollab_eval.bank.governance import Access, access_for, is_governed, screen
from memcollab_eval.bank.store import BankError, MemoryBank, load_bank
from memcollab_eval.categorize_llm import LMCategorizer, lm_generate
from memcollab_eval.config import BENCHMARK_NAMES, EvalConf, access_problems, protocol_problems, runtime_problems
from memcollab_eval.embedding import load_encoder
from memcollab_eval.errors import UsageError
from memcollab_eval.evaluation.report import collect, reach, write_report
from memcollab_eval.evaluation.summary import BenchmarkRow, format_table, run_record, summarize, write_summary
from memcollab_eval.evaluation.tasks import MemorySetup, task_config, task_name
from memcollab_eval.hydra_app import dir_problem
from memcollab_eval.models.generation import build_lm, load_target
from memcollab_eval.retrieval_llm import LMChooser
from memcollab_eval.retrieve import RetrievalConfig
from memcollab_eval.sample_fields import SampleFields as F
from memcollab_eval.subsets import benchmark_indices, selected_samples, subset_problems, uses_samples

__all__ = ["BenchmarkRow", "UsageError", "evaluate", "format_table", "preflight"]  # the summary's two: re-exported


def preflight(cfg: EvalConf) -> list[str]:
    """Fail fast, before any model or dataset is loaded, naming every bad input: the key or the
    file (file, line and field for a bank) in one line each. Loads and verifies the bank, checks
    that the data files exist (asking the benchmark adapters where they are), that the output
    directory can be created, and the value ranges. Raises :class:`UsageError`; returns the
    warnings (settings that run but under which no memory reaches a prompt) for the caller to show.
    """
    problems = []
    unknown = [b for b in cfg.benchmarks if b not in BENCHMARK_NAMES]
    if unknown:
        problems.append(f"unknown benchmark(s) {unknown}; valid: {list(BENCHMARK_NAMES)}")
    problems.extend(protocol_problems(cfg.protocol))
    problems.extend(runtime_problems(retrieval=cfg.retrieval, sandbox=cfg.sandbox, agent=cfg.agent))
    problems.extend(access_problems(cfg.retrieval.principal, cfg.access))
    problems.extend(subset_problems(list(cfg.benchmarks), cfg.limit, dict(cfg.limits), cfg.subset))
    if cfg.max_gen_toks is not None and cfg.max_gen_toks < 1:
        problems.append(f"max_gen_toks must be >= 1 or null (the benchmark's default), got {cfg.max_gen_toks}")
    missing = [m for m in cfg.target.requires if importlib.util.find_spec(m) is None]
    if missing:
        problems.append(
            f"target {cfg.target.identity!r} needs the Python module(s) {missing} (backend {cfg.target.model!r}), "
            f"which are not installed here. Install: {cfg.target.install_hint or 'see README'}"
        )
    elif cfg.target.model == "vllm" and not _gpu_visible():
        problems.append(f"target {cfg.target.identity!r} runs on vLLM, which needs a CUDA GPU; none is visible here")
    problems.extend(data_problems([b for b in cfg.benchmarks if b in BENCHMARK_NAMES], cfg.data_dir))
    unusable = dir_problem(cfg.output_dir)
    if unusable:
        problems.append(f"output_dir={cfg.output_dir!r} cannot hold the run: {unusable}")
    bank = None
    if cfg.bank.path is not None:
        try:
            bank = load_bank(cfg.bank.path, build_hint=cfg.bank.build_command, version=cfg.bank.version)
        except BankError as exc:
            problems.append(f"bank {cfg.bank.name!r}: {exc}")
    if problems:
        raise UsageError(f"cannot run: {problems[0]}" if len(problems) == 1 else
                         "\n  - ".join([f"cannot run ({len(problems)} problems):", *problems]))
    return memory_warnings(cfg, bank)


def data_problems(benchmarks: list[str], data_dir: str | None) -> list[str]:
    """Missing evaluation data, one line per benchmark, or one line when ``data_dir`` itself is missing.
    Where a benchmark's file is (``data_dir``'s copy, the package's own) is the adapter's business."""
    if data_dir and not Path(data_dir).expanduser().is_dir():
        from_env = " (from $MEMCOLLAB_DATA_DIR)" if os.environ.get("MEMCOLLAB_DATA_DIR") == data_dir else ""
        files = ", ".join(get_spec(b).local_file for b in benchmarks)
        return [f"data_dir={data_dir!r}{from_env} is not a directory: it must hold {files}, or set data_dir=null "
                "for the default"]
    problems = []
    for benchmark in benchmarks:
        try:
            get_spec(benchmark).dataset_fields(data_dir)
        except (OSError, UsageError) as exc:
            problems.append(str(exc))
    return problems


def memory_warnings(cfg: EvalConf, bank: MemoryBank | None) -> list[str]:
    """Settings that run but under which no memory can reach any prompt (the with-memory twin then
    repeats the no-memory one), or where the run's categorizer is not the one that tagged the bank.
    Warned, not refused: such a run is still well defined (a mismatched categorizer is an ablation),
    its summary shows the abstention, and it is what the scripted test double does against the
    default bank."""
    if bank is None:
        return []
    tagged = bank_categorizer_model(bank)
    if cfg.retrieval.use_categories and (cfg.retrieval.categorizer == "llm") != (tagged is not None):
        by = f"the LLM categorizer ({tagged})" if tagged else "the keyword rules"
        warnings = [f"bank {cfg.bank.name!r} was tagged by {by}, and this run categorizes with "
                    f"retrieval.categorizer={cfg.retrieval.categorizer}: the paper uses the same categorizer at "
                    "construction and evaluation"]
    else:
        warnings = []
    return warnings + _reach_warnings(cfg, bank)


def _reach_warnings(cfg: EvalConf, bank: MemoryBank) -> list[str]:
    if not bank.entries:
        return [f"bank {cfg.bank.name!r} ({bank.path}) has no entries: no memory reaches any prompt"]
    principal = cfg.retrieval.principal
    removed = screen(bank.entries, run_access(cfg)).removed
    if len(removed) == len(bank.entries):
        reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(Counter(removed.values()).items()))
        return [f"every entry of bank {cfg.bank.name!r} is removed by the access and lifecycle screen for principal "
                f"{principal!r} ({reasons}): no memory reaches any prompt"]
    if principal is not None and principal not in cfg.access.principals and any(e.scopes for e in bank.entries):
        return [f"retrieval.principal={principal!r} is not in access.principals, so it belongs to no group: only "
                "entries whose scopes name it, or that have no scopes, can be retrieved"]
    if not cfg.retrieval.model_filter:
        return []
    models = sorted({m for e in bank.entries for m in (e.preferred_model, e.unpreferred_model)})
    if cfg.target.identity in models:
        return []
    shown = ", ".join(models[:6]) + (f" and {len(models) - 6} more" if len(models) > 6 else "")
    return [f"target.identity={cfg.target.identity!r} is in no entry of bank {cfg.bank.name!r} (its entries involve "
            f"{shown}) and retrieval.model_filter is on, so retrieval returns nothing and no memory reaches any "
            "prompt: set target.identity to one of those models, or retrieval.model_filter=false"]


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


def run_access(cfg: EvalConf) -> Access:
    """Who this run retrieves for: ``retrieval.principal`` with its groups from ``access.principals``,
    whether the target is external, and the instant validity is judged at (fixed once per run)."""
    return access_for(cfg.retrieval.principal, {k: list(v) for k, v in dict(cfg.access.principals).items()},
                      external_target=bool(cfg.target.external), as_of=cfg.retrieval.as_of)


def build_tasks(cfg: EvalConf, lm: Any = None, access: Access | None = None,
                categorizer: LMCategorizer | None = None, bank: MemoryBank | None = None) -> list[dict[str, Any]]:
    """The task twins of every benchmark. ``lm`` is the built target model: under
    ``retrieval.selector=llm`` it picks the entries (prompting-based retrieval); under
    ``protocol=agent`` its inner model does, with one plain reply per problem. ``access``: the run's
    (:func:`run_access` when not given). ``categorizer``: the one of ``retrieval.categorizer=llm``
    (:func:`query_categorizer` when not given). ``bank``: the run's bank, loaded once (loaded here
    when not given)."""
    setup = None
    if cfg.bank.path is not None:
        if bank is None:
            bank = load_bank(cfg.bank.path, build_hint=cfg.bank.build_command, version=cfg.bank.version)
        retrieval = cfg.retrieval_config()
        if retrieval.ranker == "embedding":
            load_encoder(retrieval.encoder)  # fails here, naming the package to install, not inside lm-eval
        setup = MemorySetup(bank, retrieval, cfg.target.identity, chooser=entry_chooser(cfg, retrieval, lm),
                            access=access or run_access(cfg),
                            categorizer=categorizer or query_categorizer(cfg, retrieval, lm, bank))
    sandbox = cfg.sandbox_config()
    tasks = []
    for benchmark in cfg.benchmarks:
        evaluated = evaluated_docs(cfg, benchmark) if setup is not None else None
        for twin_setup in ([None, setup] if setup is not None else [None]):
            tasks.append(task_config(benchmark, data_dir=cfg.data_dir, setup=twin_setup,
                                     max_gen_toks=cfg.max_gen_toks, sandbox=sandbox, evaluated=evaluated))
    return tasks


def evaluated_docs(cfg: EvalConf, benchmark: str) -> frozenset[int]:
    """The doc indices of ``benchmark`` this run scores: the same selection the job hands lm-eval
    (``limit``, ``limits``, ``subset``, ``seed``), so retrieval is done for those problems only."""
    return frozenset(benchmark_indices(benchmark, cfg.data_dir, cfg.limit, dict(cfg.limits), cfg.subset, cfg.seed))


def access_record(access: Access, bank: MemoryBank, cfg: EvalConf, samples: dict | None) -> dict[str, Any]:
    """What the run record says about access: who retrieved, what the screen removed from the bank
    (per reason), and how many candidates it removed summed over the memory twin's problems (read
    from the logged samples: only the problems the run evaluated)."""
    from_bank = screen(bank.entries, access).counts()
    per_problem = dict.fromkeys(from_bank, 0)
    counted = 0
    for name, rows in (samples or {}).items():
        if not name.endswith("_memcollab"):
            continue
        for sample in rows:
            got = (sample.get("doc") or {}).get(F.FILTERED)
            if isinstance(got, dict):
                counted += 1
                for reason in per_problem:
                    per_problem[reason] += int(got.get(reason) or 0)
    return {**access.record(), "governed_bank": is_governed(bank.entries), "entries_removed": from_bank,
            "candidates_removed": per_problem, "problems_counted": counted,
            "access_filter_removed": per_problem["scope"] + per_problem["policy"]}


def entry_chooser(cfg: EvalConf, retrieval: RetrievalConfig, lm: Any) -> LMChooser | None:
    """The target model as the entry chooser of ``selector=llm`` (None for the other selectors)."""
    if retrieval.selector != "llm":
        return None
    if lm is None:
        raise UsageError("retrieval.selector=llm needs the target model to pick entries: pass the built lm to "
                         "build_tasks(cfg, lm)")
    return LMChooser(lm.inner if isinstance(lm, AgentLM) else lm, chat=cfg.target.apply_chat_template)


def bank_categorizer_model(bank: MemoryBank) -> str | None:
    """The model that tagged a bank built with ``categorizer=llm`` (a target config name; its
    summarizer unless the build named one), None for a bank tagged by the keyword rules."""
    build = (bank.manifest.config or {}).get("build") or {}
    if build.get("categorizer") != "llm":
        return None
    return build.get("categorizer_model") or build.get("summarizer")


def query_categorizer(cfg: EvalConf, retrieval: RetrievalConfig, lm: Any, bank: MemoryBank) -> LMCategorizer | None:
    """The LLM categorizer of ``retrieval.categorizer=llm`` (None under the keyword rules). Its model:
    ``retrieval.categorizer_model``, else the one that tagged the bank (the paper categorizes with the
    same model at construction and evaluation), else the target. The target's own built model is
    reused when it is that model; another is built through lm-eval's registry like the target."""
    if retrieval.categorizer != "llm":
        return None
    name = retrieval.categorizer_model or bank_categorizer_model(bank)
    if name is None or load_target(name).identity == cfg.target.identity:
        if lm is None:
            raise UsageError("retrieval.categorizer=llm with the target as categorizer needs the built target model: "
                             "pass it to build_tasks(cfg, lm)")
        inner = lm.inner if isinstance(lm, AgentLM) else lm
        return LMCategorizer(lm_generate(inner, chat=cfg.target.apply_chat_template), cfg.target.identity)
    target = load_target(name)
    return LMCategorizer(lm_generate(build_lm(target), chat=target.apply_chat_template), target.identity)


def evaluate(cfg: EvalConf, run_dir: Path) -> list[BenchmarkRow]:
    """Run the whole job and write results under ``run_dir``; returns the summary rows."""
    from lm_eval import simple_evaluate  # lm-eval's evaluator and loggers load torch-free but slowly: on use
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()  # the run record's wall time
    preflight(cfg)
    lm, cache = build_model(cfg)
    access = run_access(cfg)
    # the bank is read once: retrieval and the run record must describe the same version, even if a
    # new version is written (bank retire, supersede) while the run goes on
    bank = load_bank(cfg.bank.path, build_hint=cfg.bank.build_command, version=cfg.bank.version) \
        if cfg.bank.path is not None else None
    categorizer = None
    if bank is not None and cfg.retrieval.categorizer == "llm":
        categorizer = query_categorizer(cfg, cfg.retrieval_config(), lm, bank)
    tasks = build_tasks(cfg, lm, access, categorizer, bank)
    tracker = EvaluationTracker(output_path=str(run_dir))
    limit, chosen = cfg.limit, None  # lm-eval takes either a limit or chosen indices
    if uses_samples(dict(cfg.limits), cfg.subset):
        names = {b: [t["task"] for t in tasks if t["task"] in (task_name(b, True), task_name(b, False))]
                 for b in cfg.benchmarks}
        limit, chosen = None, selected_samples(list(cfg.benchmarks), names, cfg.data_dir, cfg.limit,
                                                dict(cfg.limits), cfg.subset, cfg.seed)
    metadata = {"memcollab": {"target": cfg.target.identity, "bank": cfg.bank.name, "protocol": cfg.protocol}}
    # The tasks are inline configs: lm-eval's index of its ~14,000 built-in task files (what simple_evaluate
    # builds when given no task manager: 20-80 s on this machine, per run) is never consulted for them.
    task_manager = TaskManager(include_defaults=False, metadata=metadata)
    results = simple_evaluate(
        model=lm, tasks=tasks, task_manager=task_manager, limit=limit, samples=chosen, log_samples=cfg.log_samples,
        evaluation_tracker=tracker, use_cache=cache,
        # the agent wrapper needs the raw prompt: it applies the chat template to every turn itself
        apply_chat_template=cfg.target.apply_chat_template if cfg.protocol == "single_turn" else False,
        random_seed=cfg.seed, numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed, bootstrap_iters=0,
        metadata=metadata,
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
    problems = collect(run_dir, bank=bank if cfg.log_samples else None, retrieval=cfg.retrieval_config(),
                       target=cfg.target.identity, access=access)
    rows = summarize(results, cfg.benchmarks, reach(problems) if cfg.log_samples else None)
    record = run_record(cfg, lm, results, usage, wall_seconds=time.perf_counter() - started, bank=bank)
    if bank is not None:
        record["access"] = access_record(access, bank, cfg, samples)
    if categorizer is not None:
        record["categorizer"] = {"name": categorizer.name, **categorizer.stats.record()}
    write_summary(run_dir, cfg, rows, record)
    write_report(run_dir, rows, record, problems)
    return rows
