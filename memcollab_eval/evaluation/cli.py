"""Thin Hydra entry point for ``python -m memcollab_eval``.

``target`` and ``bank`` are appended groups, as in ``+target=llama3_8b +bank=qwen32_llama8``.
Before Hydra sees the command line we (1) add the embedded CPU default for a group the
user did not name, (2) accept ``target=x`` as well as ``+target=x`` (and ``limits.gsm8k=60``
as well as ``+limits.gsm8k=60``), and (3) check that
each named option exists, so a typo gets the list of valid choices. Any failure before
the job starts (composition, unknown key, wrong type) exits with code 2 and no
traceback; a failure of the job itself exits with 1.

Every bad input is found before any model loads: :class:`PreflightCallback` (registered in
``conf/config.yaml`` under ``hydra.callbacks``) runs :func:`~memcollab_eval.evaluation.job.preflight`
on the composed config before Hydra creates the run folder, and checks that the folder can be
created; a multirun's jobs differ, so each runs it at its start. A job that fails removes the
run folder Hydra made for it when the folder holds nothing but Hydra's own files.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from memcollab_eval.config import DEFAULT_BANK, DEFAULT_TARGET, EvalConf
from memcollab_eval.errors import EXIT_USAGE, UsageError
from memcollab_eval.evaluation.job import evaluate, preflight
from memcollab_eval.evaluation.summary import format_table, headline
from memcollab_eval.hydra_app import (
    HYDRA_VALUE_OPTIONS,
    dir_problem,
    existing_ancestor,
    group_options,
    note_sweep,
    register_hydra,
    remove_unused_run_dir,
    run_hydra,
    sweep_jobs,
)
from memcollab_eval.subsets import describe

APPENDED_GROUPS = {"target": DEFAULT_TARGET, "bank": DEFAULT_BANK}
log = logging.getLogger("memcollab_eval")

_job_started = False
_checked_run: Path | None = None  # set by PreflightCallback: the single run was checked; its nearest existing folder


def prepare_argv(argv: list[str]) -> list[str]:
    """Normalise appended groups and add defaults; raise ValueError on an unknown option."""
    out, seen = [], set()
    for arg in argv:
        match = re.fullmatch(r"\+{0,2}(target|bank)=(.*)", arg)
        if match:
            group, value = match.groups()
            seen.add(group)
            _check_options(group, value)
            arg = f"+{group}={value}"
        elif re.fullmatch(r"limits\.\w+=.*", arg):  # a key of the (empty) per-benchmark limits dict
            arg = "+" + arg
        out.append(arg)
    defaults = [f"+{group}={default}" for group, default in APPENDED_GROUPS.items() if group not in seen]
    options, overrides = _split_options(out)
    return options + defaults + overrides  # argparse wants the overrides in one run of positionals


_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _split_options(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's own options (``-m``, ``--cfg job``, ...) with their values, and the overrides: a flag
    put between overrides (``a=1 -m b=2``) would otherwise cut argparse's run of positionals."""
    options, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            overrides.append(arg)
        else:
            options.append(arg)
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg in HYDRA_VALUE_OPTIONS and nxt is not None and (arg not in ("--info", "-i") or nxt in _INFO_CHOICES):
                options.append(nxt)
                i += 1
        i += 1
    return options, overrides


def _check_options(group: str, value: str) -> None:
    if any(ch in value for ch in "()*$"):
        return  # sweep syntax (choice(...), range(...)) or interpolation: Hydra checks it
    valid = group_options(group)
    for option in value.split(","):
        if option not in valid:
            raise ValueError(f"unknown {group} {option!r}; valid choices: {', '.join(valid)}")


def _eval_conf(cfg: DictConfig) -> EvalConf:
    """The job's typed config (without Hydra's own node); a missing or unresolvable value is a UsageError."""
    if "hydra" in cfg:
        cfg = copy.deepcopy(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except MissingMandatoryValue as exc:
        raise UsageError(f"missing configuration value: {exc}") from None
    except OmegaConfBaseException as exc:
        raise UsageError(f"cannot resolve the configuration: {str(exc).splitlines()[0]}") from None


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


class PreflightCallback(Callback):
    """Check a run before Hydra creates anything: the composed config (see ``preflight``) and the
    run or sweep folder. A problem is printed in one line and exits 2."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        global _checked_run
        try:
            warnings = preflight(_eval_conf(config))
            run_dir = str(OmegaConf.select(config, "hydra.run.dir", throw_on_resolution_failure=True))
        except UsageError as exc:
            _fail(str(exc))
        except OmegaConfBaseException as exc:
            _fail(f"cannot resolve hydra.run.dir: {str(exc).splitlines()[0]}")
        unusable = dir_problem(run_dir)
        if unusable:
            _fail(f"cannot run: the run folder {run_dir} cannot be created: {unusable}")
        _warn(warnings)
        _checked_run = existing_ancestor(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Check every job of the sweep before the first starts (so that a bad value in the last
        job does not wait for the others to finish), and the sweep folder; each job checks its
        own config again when it starts, and shows its warnings then."""
        try:
            sweep_dir = str(OmegaConf.select(config, "hydra.sweep.dir", throw_on_resolution_failure=True))
        except OmegaConfBaseException as exc:
            _fail(f"cannot resolve hydra.sweep.dir: {str(exc).splitlines()[0]}")
        unusable = dir_problem(sweep_dir)
        if unusable:
            _fail(f"cannot run: the sweep folder {sweep_dir} cannot be created: {unusable}")
        failures: dict[str, list[int]] = {}  # problem -> job numbers, so a problem every job shares shows once
        jobs = sweep_jobs(config) or []
        for number, overrides in enumerate(jobs):
            try:
                preflight(_eval_conf(compose(config_name=config.hydra.job.config_name, overrides=overrides)))
            except UsageError as exc:
                failures.setdefault(str(exc), []).append(number)
            except (HydraException, OmegaConfBaseException) as exc:  # composition: Hydra would stop here too
                failures.setdefault(str(exc).strip().splitlines()[0], []).append(number)
        for problem, numbers in failures.items():
            which = "every job" if len(numbers) == len(jobs) else "job " + ", ".join(
                f"#{n} ({' '.join(jobs[n])})" for n in numbers)
            print(f"error: {which}: {problem}", file=sys.stderr)
        if failures:
            sys.exit(EXIT_USAGE)
        note_sweep(sweep_dir)


def _remove_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Remove the folder Hydra made for this failed job if it holds nothing but Hydra's own files."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        keep = Path(hydra_cfg.sweep.dir)  # the sweep's other jobs live there; the runner removes it if unused
    else:
        keep = _checked_run or Path(str(cfg.get("output_dir", "outputs")))
    if remove_unused_run_dir(run_dir, keep=keep, own_files=(f"{hydra_cfg.job.name}.log",)):
        print(f"(removed the run folder {run_dir}: the job wrote nothing into it)", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _evaluate_job(cfg: DictConfig) -> None:
    global _job_started
    _job_started = True
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        conf = _eval_conf(cfg)
        if _checked_run is None:  # a multirun job (or the callback is off): check before the model loads
            _warn(preflight(conf))
        if conf.bank.description:
            print(f"bank {conf.bank.name}: {conf.bank.description}")
        rows = evaluate(conf, run_dir)
    except UsageError as exc:
        _remove_run_dir(cfg, run_dir)
        _fail(str(exc))
    except BaseException:
        _remove_run_dir(cfg, run_dir)
        raise
    print(f"\n{conf.target.identity} with bank {conf.bank.name} "
          f"(problems per benchmark: {describe(conf.limit, dict(conf.limits), conf.subset)}):\n")
    print(format_table(rows))
    print(f"\n{headline(rows)}")
    print(f"\nresults, samples and config: {run_dir}\nper problem (memory, retrieval, responses, flips): "
          f"{run_dir / 'report.html'}")


def main(argv: list[str] | None = None) -> None:
    global _job_started, _checked_run
    _job_started, _checked_run = False, None  # a second call in one process (tests) starts afresh
    register_hydra()
    run_hydra(_evaluate_job, prepare_argv, lambda: _job_started, argv)
