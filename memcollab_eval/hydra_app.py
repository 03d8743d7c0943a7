"""What the Hydra commands (evaluate, build, and the bank gate that composes an evaluate config)
share: the packaged config groups, the ``${pkg_banks:}`` resolver, and the runner that turns a
failure before the job starts into exit code 2 without a traceback.
"""

from __future__ import annotations

import importlib.resources
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from memcollab_eval.config import register_configs
from memcollab_eval.errors import EXIT_USAGE

PACKAGE_BANKS = Path(__file__).resolve().parent / "banks"


def group_options(group: str) -> list[str]:
    """Option names of a config group, read from the packaged conf/ (wheel or editable)."""
    folder = importlib.resources.files("memcollab_eval.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def register_hydra() -> None:
    """Register the structured configs and the ``${pkg_banks:}`` resolver; every reader of a saved
    run config (bank gate, attribution) needs them, not only the evaluate job."""
    register_configs()
    if not OmegaConf.has_resolver("pkg_banks"):
        OmegaConf.register_new_resolver("pkg_banks", lambda: str(PACKAGE_BANKS))


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
