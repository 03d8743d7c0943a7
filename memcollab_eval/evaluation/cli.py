"""Thin Hydra entry point for ``python -m memcollab_eval``.

``target`` and ``bank`` are appended groups, as in ``+target=llama3_8b +bank=qwen32_llama8``.
Before Hydra sees the command line we (1) add the embedded CPU default for a group the
user did not name, (2) accept ``target=x`` as well as ``+target=x`` (and ``limits.gsm8k=60``
as well as ``+limits.gsm8k=60``), and (3) check that
each named option exists, so a typo gets the list of valid choices. Any failure before
the job starts (composition, unknown key, wrong type) exits with code 2 and no
traceback; a failure of the job itself exits with 1.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from memcollab_eval.config import DEFAULT_BANK, DEFAULT_TARGET, EvalConf
from memcollab_eval.errors import EXIT_USAGE, UsageError
from memcollab_eval.evaluation.job import evaluate
from memcollab_eval.evaluation.summary import format_table, headline
from memcollab_eval.hydra_app import group_options, register_hydra, run_hydra
from memcollab_eval.subsets import describe

APPENDED_GROUPS = {"target": DEFAULT_TARGET, "bank": DEFAULT_BANK}
log = logging.getLogger("memcollab_eval")

_job_started = False


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
    return defaults + out  # first: argparse wants the overrides in one run of positionals


def _check_options(group: str, value: str) -> None:
    if any(ch in value for ch in "()*$"):
        return  # sweep syntax (choice(...), range(...)) or interpolation: Hydra checks it
    valid = group_options(group)
    for option in value.split(","):
        if option not in valid:
            raise ValueError(f"unknown {group} {option!r}; valid choices: {', '.join(valid)}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _evaluate_job(cfg: DictConfig) -> None:
    global _job_started
    try:
        conf: EvalConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except MissingMandatoryValue as exc:
        print(f"error: missing configuration value: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    _job_started = True
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if conf.bank.description:
        print(f"bank {conf.bank.name}: {conf.bank.description}")
    try:
        rows = evaluate(conf, run_dir)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    print(f"\n{conf.target.identity} with bank {conf.bank.name} "
          f"(problems per benchmark: {describe(conf.limit, dict(conf.limits), conf.subset)}):\n")
    print(format_table(rows))
    print(f"\n{headline(rows)}")
    print(f"\nresults, samples and config: {run_dir}\nper problem (memory, retrieval, responses, flips): "
          f"{run_dir / 'report.html'}")


def main(argv: list[str] | None = None) -> None:
    register_hydra()
    run_hydra(_evaluate_job, prepare_argv, lambda: _job_started, argv)
