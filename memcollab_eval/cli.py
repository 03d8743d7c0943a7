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

import importlib.resources
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from memcollab_eval.config import DEFAULT_BANK, DEFAULT_TARGET, EvalConf, register_configs

PACKAGE_BANKS = Path(__file__).resolve().parent / "banks"
APPENDED_GROUPS = {"target": DEFAULT_TARGET, "bank": DEFAULT_BANK}
EXIT_USAGE = 2
log = logging.getLogger("memcollab_eval")

_job_started = False


def group_options(group: str) -> list[str]:
    """Option names of a config group, read from the packaged conf/ (wheel or editable)."""
    folder = importlib.resources.files("memcollab_eval.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


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


def register_hydra() -> None:
    """Register the structured configs and the ``${pkg_banks:}`` resolver; every reader of a saved
    run config (bank gate, attribution) needs them, not only the evaluate job."""
    register_configs()
    if not OmegaConf.has_resolver("pkg_banks"):
        OmegaConf.register_new_resolver("pkg_banks", lambda: str(PACKAGE_BANKS))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _evaluate_job(cfg: DictConfig) -> None:
    global _job_started
    try:
        conf: EvalConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except MissingMandatoryValue as exc:
        print(f"error: missing configuration value: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    _job_started = True
    from memcollab_eval.run_eval import UsageError, evaluate, format_table

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if conf.bank.description:
        print(f"bank {conf.bank.name}: {conf.bank.description}")
    try:
        rows = evaluate(conf, run_dir)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    from memcollab_eval.subsets import describe

    print(f"\n{conf.target.identity} with bank {conf.bank.name} "
          f"(problems per benchmark: {describe(conf.limit, dict(conf.limits), conf.subset)}):\n")
    print(format_table(rows))
    print(f"\nresults, samples and config: {run_dir}")


def run_hydra(job: Callable[[], None], prepare: Callable[[list[str]], list[str]], started: Callable[[], bool],
              argv: list[str] | None = None) -> None:
    """Run a @hydra.main job: ``prepare`` checks and rewrites the command line (a ValueError
    is a usage error); any failure before the job started exits 2."""
    try:
        args = prepare(list(sys.argv[1:] if argv is None else argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.argv = [sys.argv[0], *args]
    try:
        job()
    except SystemExit as exc:
        if exc.code not in (0, None) and not started():
            sys.exit(EXIT_USAGE)  # Hydra already printed why composition failed
        raise


def main(argv: list[str] | None = None) -> None:
    register_hydra()
    run_hydra(_evaluate_job, prepare_argv, lambda: _job_started, argv)
