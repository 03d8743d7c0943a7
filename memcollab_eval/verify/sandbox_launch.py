"""How a sandbox worker process is started: the bubblewrap command line and its staging.

Measured on this machine kind: bubblewrap run as root keeps capabilities over files
mapped to root (it could read /etc/shadow), so the worker must run as a genuinely
unprivileged uid. When the host process is root we give each slot its own uid
(``base_uid + slot``), which also makes ``RLIMIT_NPROC`` an exact per-slot process cap.

An unprivileged bubblewrap cannot bind a source path it cannot traverse (a Python
under ``/root``, mode 0700, is the common case). As root we therefore first enter a
private mount namespace (``unshare --mount``), bind those paths onto world-traversable
staging directories, and only then drop to the slot uid and start bubblewrap. Nothing
changes in the host's own mount table.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORKER_DIR_IN_SANDBOX = "/opt/memcollab-worker"
SLOT_DIR_IN_SANDBOX = "/sandbox"


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one worker: argv, and what isolation it asks for."""

    argv: list[str]
    slot_dir_inside: str
    uses_bwrap: bool
    drops_to_uid: int | None
    notes: list[str] = field(default_factory=list)


def missing_tools(as_root: bool) -> list[str]:
    """Host commands the strong launch needs and cannot find, with how to install them."""
    needed = {"bwrap": "apt-get install -y bubblewrap (Debian/Ubuntu) or dnf install bubblewrap"}
    if as_root:
        needed["unshare"] = "apt-get install -y util-linux"
        needed["setpriv"] = "apt-get install -y util-linux"
    return [f"{tool} (install: {how})" for tool, how in needed.items() if shutil.which(tool) is None]


def python_read_only_paths() -> list[str]:
    """Directories the sandboxed interpreter must see: its installation and the venv."""
    paths = []
    for candidate in (sys.base_prefix, sys.prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)):
        real = os.path.realpath(candidate)
        if real.startswith("/usr/") or real == "/usr":
            continue  # /usr is bound as a whole
        if real not in paths and not any(real.startswith(p + "/") for p in paths):
            paths.append(real)
    # keep the un-resolved venv path too: sys.executable may be a symlink inside it
    prefix = os.path.abspath(sys.prefix)
    if prefix != os.path.realpath(prefix) and prefix not in paths:
        paths.append(prefix)
    return paths


def _system_binds() -> list[str]:
    """Read-only system directories; merged-/usr symlinks are recreated as symlinks."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc_file in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(etc_file):
            args += ["--ro-bind", etc_file, etc_file]
    return args


def bwrap_plan(pool_dir: Path, slot: int, slot_dir: Path, worker_dir: Path, base_uid: int) -> LaunchPlan:
    """The strong launch: (root: private mount ns + setpriv) then bubblewrap."""
    as_root = os.geteuid() == 0
    ro_paths = python_read_only_paths()
    staged: list[tuple[str, str]] = []  # (host path, staging mount point)
    sources: dict[str, str] = {}
    if as_root:
        stage_root = pool_dir / f"stage{slot}"
        for i, path in enumerate(ro_paths + [str(worker_dir), str(slot_dir)]):
            mount_point = stage_root / f"m{i}"
            mount_point.mkdir(parents=True, exist_ok=True)
            staged.append((path, str(mount_point)))
            sources[path] = str(mount_point)
        os.chmod(stage_root, 0o755)
    src = lambda p: sources.get(p, p)  # noqa: E731
    bwrap = [
        "bwrap", "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        *_system_binds(),
        # the fresh /tmp, /proc, /dev come first: a Python or venv under /tmp is bound on top of them
        "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
    ]
    for path in ro_paths:
        bwrap += ["--ro-bind", src(path), path]
    bwrap += [
        "--ro-bind", src(str(worker_dir)), WORKER_DIR_IN_SANDBOX,
        "--bind", src(str(slot_dir)), SLOT_DIR_IN_SANDBOX,
        "--chdir", SLOT_DIR_IN_SANDBOX,
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        os.path.abspath(sys.executable), "-I", f"{WORKER_DIR_IN_SANDBOX}/sandbox_worker.py", SLOT_DIR_IN_SANDBOX,
    ]
    if not as_root:
        return LaunchPlan(bwrap, SLOT_DIR_IN_SANDBOX, True, None)
    uid = base_uid + slot
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    mounts = " && ".join(f"mount --bind {shlex.quote(h)} {shlex.quote(m)}" for h, m in staged)
    script = f"{mounts} && exec {shlex.join(setpriv + bwrap)}"
    argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
    return LaunchPlan(argv, SLOT_DIR_IN_SANDBOX, True, uid)


def direct_plan(slot_dir: Path, worker_dir: Path) -> LaunchPlan:
    """The weak launch (explicit opt-in only): the worker runs as the current user,
    without namespaces; Landlock, seccomp and rlimits still apply where available."""
    argv = [sys.executable, "-I", str(worker_dir / "sandbox_worker.py"), str(slot_dir)]
    notes = ["no bubblewrap: no mount, PID or network namespace"]
    if os.geteuid() == 0:
        notes.append("running as root: RLIMIT_NPROC does not bind root, fork bombs are only bounded by the wall timeout")
    return LaunchPlan(argv, str(slot_dir), False, None, notes)
