"""Thin Hydra entry point for ``python -m memcollab_eval.build``.

``+sources=[a,b]``, ``+pool=x``, ``+method=y`` and ``+preference=z`` are accepted as well as the
plain forms (they are in the defaults list, where Hydra wants no ``+``). Unknown models and option
names are reported with the valid choices before anything runs (exit 2), and so is every bad line
of a ``preference.labels`` file (file, line and field).
"""

from __future__ import annotations

import re
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from memcollab_eval.config import register_configs
from memcollab_eval.construct.config import BuildConf, register_build_configs
from memcollab_eval.construct.labels import LabelsError, read_labels
from memcollab_eval.construct.pipeline import run_build
from memcollab_eval.construct.pools import PoolError
from memcollab_eval.errors import EXIT_FAIL, EXIT_USAGE
from memcollab_eval.hydra_app import group_options, run_hydra
from memcollab_eval.jsonl_store import StageFileError
from memcollab_eval.models.generation import load_target, target_names

_job_started = False


def prepare_argv(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        m = re.fullmatch(r"\+{1,2}(sources|pool|method|preference|summarizer)=(.*)", arg)
        if m:
            arg = f"{m.group(1)}={m.group(2)}"
        key, _, value = arg.partition("=")
        if key == "sources":
            names = [n.strip() for n in value.strip("[]").split(",") if n.strip()]
            _check(names, target_names(), "source model")
        elif key == "preference.judge" and value in ("null", "~", ""):
            pass  # conf.problems() says that a judge is needed
        elif key in ("summarizer", "preference.judge"):
            _check([value], target_names(), "summarizer model" if key == "summarizer" else "judge model")
        elif key in ("pool", "method", "preference") and not any(c in value for c in "()*$"):
            _check(value.split(","), group_options(key), key)
        out.append(arg)
    return out


def _check(values: list[str], valid: list[str], what: str) -> None:
    for v in values:
        if v not in valid and not v.endswith((".yaml", ".yml")):
            raise ValueError(f"unknown {what} {v!r}; valid choices: {', '.join(valid)}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="build")
def _build_job(cfg: DictConfig) -> None:
    global _job_started
    conf: BuildConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    problems = conf.problems()
    if problems:
        print("error: cannot build:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        if conf.preference.name == "labels":  # every bad line before any model loads
            read_labels(str(conf.preference.labels), {s: load_target(s).identity for s in conf.sources},
                        conf.method.samples)
    except LabelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    _job_started = True
    try:
        stats = run_build(conf)
    except LabelsError as exc:  # a label naming a problem outside the pool
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except (PoolError, StageFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAIL)
    if stats.get("stopped_after"):
        counts = ", ".join(f"{v} {k}" for k, v in stats.items() if k not in ("stopped_after", "work_dir"))
        what, option = {"distill": ("summarizer replies", "distill_from"),
                        "evidence": ("gate outcomes", "evidence_from")}.get(stats["stopped_after"],
                                                                            ("trajectories", "trajectories_from"))
        print(f"stopped after the {stats['stopped_after']} stage (stop_after={stats['stopped_after']}): "
              f"{counts} in {stats['work_dir']}; no bank written. Run without stop_after to go on, or take the "
              f"{what} into another build with {option}=[{stats['work_dir']}]")
        return
    if stats.get("unchanged"):
        print(f"bank {conf.bank.name} in {conf.out_dir()} is up to date ({stats['entries']} entries): left as it was")
        return
    print(f"bank {conf.bank.name} written to {conf.out_dir()}: {stats['entries']} entries "
          f"from {stats['pool_problems']} problems; rejected {stats['rejected']}; "
          f"{stats['seconds_per_problem']} s and {stats['tokens_per_problem']} tokens per problem")


def main(argv: list[str] | None = None) -> None:
    register_configs()
    register_build_configs()
    run_hydra(_build_job, prepare_argv, lambda: _job_started, argv)
