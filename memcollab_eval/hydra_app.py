"""What the Hydra commands (evaluate, build, and the bank gate that composes an evaluate config)
share: the packaged config groups, the ``${pkg_banks:}`` resolver, the runner that turns a
failure before the job starts into exit code 2 without a traceback, and the removal of the run
folders a failed job leaves holding nothing but Hydra's own files.

Why run folders need removing: Hydra creates a job's folder (and writes ``.hydra/`` and the job's
log into it) before the job runs, so a job that fails, whether on a bad input or later, would
leave a folder that looks like a run but has no results. A single run's folder is removed by the
job; in a multirun each job removes its own folder and the runner removes the sweep folder at
the end if it then holds only ``multirun.yaml`` (jobs run one after another or side by side, so
no job can know it is the last).
"""

from __future__ import annotations

import importlib.resources
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

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


# Hydra's own options that take a value: the argument after them is not an override.
HYDRA_VALUE_OPTIONS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                  "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def override_problems(args: list[str]) -> list[str]:
    """Each override Hydra's grammar rejects, in one line (Hydra's own message spans three and,
    for a non-ASCII character, does not say that quoting it is the fix)."""
    parser, problems, previous = OverridesParser.create(), [], ""
    for arg in args:
        if "=" in arg and not arg.startswith("-") and previous not in HYDRA_VALUE_OPTIONS:
            try:
                parser.parse_overrides([arg])
            except HydraException as exc:
                problems.append(_override_message(arg, exc))
        previous = arg
    return problems


def _override_message(arg: str, exc: Exception) -> str:
    key, _, value = arg.partition("=")
    char = _NON_ASCII.search(value)
    if char and "'" not in value and '"' not in value:
        return (f"override {arg}: Hydra's override grammar takes a non-ASCII character ({char.group()!r}) only inside "
                f"quotes; write {key}='{value}' and, in a shell, wrap it whole in double quotes: \"{key}='{value}'\"")
    first = str(exc).strip().splitlines()[0]
    return f"override {arg}: {first} (grammar: https://hydra.cc/docs/1.2/advanced/override_grammar/basic)"


def dir_problem(path: str | Path) -> str | None:
    """Why directory ``path`` cannot be created or written, or None; creates nothing."""
    probe = Path(os.path.abspath(Path(path).expanduser()))
    while not probe.exists():
        if probe.is_symlink():
            return f"{probe} is a symlink to a missing target"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    return None


def existing_ancestor(path: str | Path) -> Path:
    """The nearest folder of ``path`` (itself included) that exists now: what a later
    ``mkdir(parents=True)`` will not have created."""
    probe = Path(os.path.abspath(Path(path).expanduser()))
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def remove_unused_run_dir(run_dir: str | Path, *, keep: str | Path, own_files: tuple[str, ...] = ()) -> bool:
    """Remove ``run_dir`` if it holds nothing but Hydra's ``.hydra/`` folder and ``own_files`` (the
    job's log), then each parent left empty up to ``keep`` (exclusive; never ``keep`` itself or
    anything above it). Anything else in the folder keeps it. Returns whether it was removed."""
    run_dir, keep = Path(os.path.abspath(run_dir)), Path(os.path.abspath(keep))
    if run_dir == keep or keep not in run_dir.parents:
        return False
    try:
        names = {p.name for p in run_dir.iterdir()}
        hydra_files = list((run_dir / ".hydra").iterdir()) if ".hydra" in names else []
    except OSError:
        return False
    if not names <= {".hydra", *own_files} or any(p.is_dir() for p in hydra_files):
        return False
    try:
        for path in [*hydra_files, *(run_dir / name for name in own_files if name in names)]:
            path.unlink()
        if ".hydra" in names:
            (run_dir / ".hydra").rmdir()
        run_dir.rmdir()
    except OSError:
        return False  # something appeared meanwhile: leave the rest
    for parent in run_dir.parents:
        if parent == keep:
            break
        try:
            parent.rmdir()  # only succeeds on an empty folder
        except OSError:
            break
    return True


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The task overrides of every job a multirun will launch, expanded as Hydra's basic sweeper
    does (its ``params`` and the command line's sweeps, as a product); None for another sweeper
    (optuna, ax, ...), whose jobs are only known as it runs."""
    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments = [*params, *OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


_SWEEPS: list[tuple[Path, Path]] = []  # (sweep dir, its nearest folder that existed before), see note_sweep


def note_sweep(sweep_dir: str | Path) -> None:
    """Remember a multirun's sweep folder (before it is created) for :func:`_remove_unused_sweeps`."""
    _SWEEPS.append((Path(os.path.abspath(sweep_dir)), existing_ancestor(sweep_dir)))


def _remove_unused_sweeps() -> None:
    """After a multirun: a sweep folder whose jobs all failed (and removed their folders) holds
    only Hydra's ``multirun.yaml``; remove it and the parents it created."""
    while _SWEEPS:
        sweep, keep = _SWEEPS.pop()
        try:
            if {p.name for p in sweep.iterdir()} == {"multirun.yaml"}:
                (sweep / "multirun.yaml").unlink()
                remove_unused_run_dir(sweep, keep=keep)
        except OSError:
            continue


def run_hydra(job: Callable[[], None], prepare: Callable[[list[str]], list[str]], started: Callable[[], bool],
              argv: list[str] | None = None) -> None:
    """Run a @hydra.main job: ``prepare`` checks and rewrites the command line (a ValueError
    is a usage error), then every override must parse; any failure before the job started exits 2."""
    try:
        args = prepare(list(sys.argv[1:] if argv is None else argv))
        unparsable = override_problems(args)
        if unparsable:
            raise ValueError("\nerror: ".join(unparsable))
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
    finally:
        _remove_unused_sweeps()
