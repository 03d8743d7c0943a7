"""A pool of pre-started sandbox workers: the host side of code execution.

Each slot is one long-lived worker (``sandbox_worker.py``) inside bubblewrap; the host
sends it one request at a time and waits for the answer with its own deadline, so a
worker that dies or hangs is killed, restarted and reported as ``error``/``timeout``
instead of stalling a batch. At start-up the pool asks the first worker which layers
took effect and refuses to run, naming what is missing, unless weaker isolation was
explicitly allowed.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from memcollab_eval.verify import sandbox_launch
from memcollab_eval.verify.verdict import Verdict

WEAK_ENV_VAR = "MEMCOLLAB_ALLOW_WEAK_SANDBOX"
# What runs inside the sandbox: the worker and the standard-library-only modules it imports.
WORKER_FILES = ("sandbox_worker.py", "sandbox_confine.py", "call_channel.py", "sandbox_candidate.py", "sandbox_tests.py")
STRONG_LAYERS = ("bubblewrap", "unprivileged_uid", "pid_namespace", "network_isolated", "landlock", "seccomp")


@dataclass(frozen=True)
class Execution:
    """What a script did: ``status`` as for a verdict (``pass`` = ran to completion),
    its combined stdout/stderr (tail, capped) and the reason when it did not complete."""

    status: str
    output: str
    detail: str
    seconds: float


class SandboxUnavailableError(RuntimeError):
    """Strong isolation cannot be set up here and weaker isolation was not allowed."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one program run, and how many workers run side by side."""

    timeout: float = 10.0
    memory_mb: int = 1024
    output_cap_bytes: int = 1 << 20
    max_file_bytes: int = 16 << 20
    max_procs: int = 64
    workers: int = 2
    allow_weak_isolation: bool = False
    base_uid: int = 61000

    def weak_allowed(self) -> bool:
        return self.allow_weak_isolation or os.environ.get(WEAK_ENV_VAR, "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class IsolationReport:
    """Which isolation layers a worker actually has (detected by trying them)."""

    level: str  # "full" or "weak"
    layers: dict[str, object]
    missing: list[str] = field(default_factory=list)

    def describe(self) -> str:
        on = [k for k in STRONG_LAYERS if self.layers.get(k)]
        text = f"sandbox isolation: {self.level} ({', '.join(on) or 'no strong layer'})"
        return text + (f"; missing: {'; '.join(self.missing)}" if self.missing else "")


def _isolation_from_hello(plan: sandbox_launch.LaunchPlan, layers: dict) -> IsolationReport:
    found = {
        "bubblewrap": plan.uses_bwrap,
        "unprivileged_uid": layers.get("uid", 0) != 0 and (os.geteuid() != 0 or plan.drops_to_uid is not None),
        "pid_namespace": bool(layers.get("pid_namespace")),
        "network_isolated": bool(layers.get("network_isolated")),
        "landlock": int(layers.get("landlock_abi", 0)) >= 1,
        "landlock_net": int(layers.get("landlock_abi", 0)) >= 4,
        "landlock_signal_scope": int(layers.get("landlock_abi", 0)) >= 6,
        "seccomp": bool(layers.get("seccomp")),
        "rlimits": True,
    }
    hints = {
        "bubblewrap": "bubblewrap namespaces (apt-get install -y bubblewrap; unprivileged user namespaces enabled)",
        "unprivileged_uid": "an unprivileged uid (run as a normal user, or as root with setpriv/unshare from util-linux)",
        "pid_namespace": "a PID namespace (bubblewrap)",
        "network_isolated": "a network namespace (bubblewrap)",
        "landlock": "Landlock (Linux >= 5.13 with landlock in the lsm= list) " + str(layers.get("landlock_error", "")),
        "seccomp": "seccomp via pyseccomp + libseccomp2 (pip install pyseccomp; apt-get install -y libseccomp2) "
        + str(layers.get("seccomp_error", "")),
    }
    missing = [hints[k].strip() for k in STRONG_LAYERS if not found[k]]
    return IsolationReport("weak" if missing else "full", {**found, "landlock_abi": layers.get("landlock_abi", 0)}, missing)


class _Spawner:
    """Starts every worker from one long-lived thread.

    bubblewrap's ``--die-with-parent`` (PR_SET_PDEATHSIG) fires when the *thread* that
    started it exits, not the process: a worker (re)started from a short-lived thread (a
    batch's thread pool) would be killed as soon as that thread finished.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="memcollab-sandbox-spawner", daemon=True)
                self._thread.start()
        done: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((argv, kwargs, done))
        result = done.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def _serve(self) -> None:
        while True:
            argv, kwargs, done = self._requests.get()
            try:
                done.put(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # reported to the caller's thread
                done.put(exc)


_SPAWNER = _Spawner()


class _Slot:
    """One worker process and the request/response stream to it."""

    def __init__(self, pool_dir: Path, index: int, worker_dir: Path, config: SandboxConfig, strong: bool):
        self.index = index
        self.slot_dir = pool_dir / f"slot{index}"
        self.slot_dir.mkdir(mode=0o700, exist_ok=True)
        if strong:
            self.plan = sandbox_launch.bwrap_plan(pool_dir, index, self.slot_dir, worker_dir, config.base_uid)
        else:
            self.plan = sandbox_launch.direct_plan(self.slot_dir, worker_dir)
        if self.plan.drops_to_uid is not None:
            os.chown(self.slot_dir, self.plan.drops_to_uid, self.plan.drops_to_uid)
        self.proc: subprocess.Popen | None = None
        self.layers: dict = {}
        self.start()

    def start(self) -> None:
        self.proc = _SPAWNER.popen(
            self.plan.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, bufsize=0,
        )
        hello = self._read_line(deadline=time.monotonic() + 30)
        if hello is None or not hello.get("hello"):
            err = self._stop()
            raise SandboxUnavailableError(
                f"sandbox worker {self.index} did not start ({' '.join(self.plan.argv[:3])} ...): {err.strip() or hello}"
            )
        self.layers = hello["layers"]

    def _read_line(self, deadline: float) -> dict | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while not buf.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            buf += chunk
        return json.loads(buf)

    def run(self, request: dict, host_deadline: float) -> dict:
        """Send one request; on a dead or hung worker, restart it and say what happened."""
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.poll() is not None:
            # bubblewrap is gone: what is left of its sandbox is being torn down and must not
            # answer (its test and candidate processes are forked ahead and could).
            err = self._stop()
            self.start()
            return {"id": request["id"], "status": "error", "detail": f"worker exited; restarted. {err[-500:]}",
                    "seconds": 0.0}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            response = self._read_line(deadline=host_deadline)
        except (BrokenPipeError, OSError, ValueError) as exc:
            response, problem = None, f"worker stream failed: {exc!r}"
        else:
            problem = "worker did not answer in time" if self.proc.poll() is None else "worker exited"
        if response is not None:
            return response
        err = self._stop()
        self.start()
        status = "timeout" if problem.startswith("worker did not answer") else "error"
        return {"id": request["id"], "status": status, "detail": f"{problem}; restarted. {err[-500:]}", "seconds": 0.0}

    def _stop(self) -> str:
        """Kill the worker's whole process group and return what it wrote to stderr."""
        if self.proc is None:
            return ""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            _, err = self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            err = b""
        self.proc = None
        return (err or b"").decode(errors="replace")

    def close(self) -> None:
        self._stop()


class SandboxPool:
    """Runs untrusted programs with their tests in pre-started, isolated workers.

    Thread-safe: each call takes a free slot. Use as a context manager, or call close().
    """

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self._dir = Path(tempfile.mkdtemp(prefix="memcollab-sandbox-"))
        os.chmod(self._dir, 0o755)
        self._slots: list[_Slot] = []
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._lock = threading.Lock()
        try:
            worker_dir = self._prepare_worker_dir()
            self.isolation = self._start_slots(worker_dir)
        except BaseException:
            self.close()
            raise

    def _prepare_worker_dir(self) -> Path:
        worker_dir = self._dir / "worker"
        worker_dir.mkdir(mode=0o755)
        for name in WORKER_FILES:
            shutil.copy(Path(__file__).with_name(name), worker_dir / name)
        spec = importlib.util.find_spec("pyseccomp")
        if spec is not None and spec.origin:
            shutil.copy(spec.origin, worker_dir / "pyseccomp.py")
        for child in worker_dir.iterdir():
            os.chmod(child, 0o644)
        return worker_dir

    def _start_slots(self, worker_dir: Path) -> IsolationReport:
        weak_ok = self.config.weak_allowed()
        missing_tools = sandbox_launch.missing_tools(os.geteuid() == 0)
        strong = not missing_tools
        first_error = ""
        if strong:
            try:
                self._slots.append(_Slot(self._dir, 0, worker_dir, self.config, strong=True))
            except SandboxUnavailableError as exc:
                strong, first_error = False, str(exc)
        if not strong:
            if not weak_ok:
                raise SandboxUnavailableError(self._refusal(missing_tools, first_error))
            self._slots.append(_Slot(self._dir, 0, worker_dir, self.config, strong=False))
        report = _isolation_from_hello(self._slots[0].plan, self._slots[0].layers)
        if missing_tools or first_error:
            report.missing[:0] = missing_tools + ([first_error] if first_error else [])
        if report.level != "full" and not weak_ok:
            raise SandboxUnavailableError(self._refusal(report.missing, ""))
        for i in range(1, max(1, self.config.workers)):
            self._slots.append(_Slot(self._dir, i, worker_dir, self.config, strong=strong))
        for slot in self._slots:
            self._free.put(slot)
        return report

    @staticmethod
    def _refusal(missing: list[str], error: str) -> str:
        lines = "\n  - ".join(missing + ([error] if error else []))
        return (
            "Refusing to run untrusted code: the sandbox cannot isolate it on this machine.\n"
            f"Missing:\n  - {lines}\n"
            f"To accept weaker isolation anyway, set sandbox.allow_weak_isolation=true or {WEAK_ENV_VAR}=1."
        )

    def run(self, program: str, test: str, *, entry_point: str | None = None, timeout: float | None = None,
            support: str = "") -> Verdict:
        """Run ``program`` in one process and ``support`` + ``test`` (then ``check(entry_point)``
        when the test defines ``check``) in another that calls it; see ``code_exec.run_code``."""
        response = self._request(program, test, entry_point, timeout, support)
        detail = response.get("detail", "")
        if response.get("output") and response["status"] != "pass":
            detail += "\n--- output (tail) ---\n" + response["output"][-1500:]
        return Verdict(status=response["status"], extracted=None, detail=detail, seconds=float(response.get("seconds", 0.0)))

    def execute(self, program: str, *, timeout: float | None = None) -> Execution:
        """Run a script (e.g. an agent's code block) and return what it printed."""
        response = self._request(program, "", None, timeout, "")
        return Execution(status=response["status"], output=response.get("output", ""),
                         detail=response.get("detail", ""), seconds=float(response.get("seconds", 0.0)))

    def _request(self, program: str, test: str, entry_point: str | None, timeout: float | None, support: str) -> dict:
        limit = float(timeout if timeout is not None else self.config.timeout)
        request = {
            "id": secrets.token_hex(8), "nonce": secrets.token_hex(16), "program": program, "test": test,
            "support": support, "entry_point": entry_point, "timeout": limit, "memory_mb": self.config.memory_mb,
            "output_cap": self.config.output_cap_bytes, "max_file_bytes": self.config.max_file_bytes,
            "max_procs": self.config.max_procs,
        }
        slot = self._free.get()
        try:
            return slot.run(request, host_deadline=time.monotonic() + limit + 15.0)
        finally:
            self._free.put(slot)

    def close(self) -> None:
        with self._lock:
            for slot in self._slots:
                slot.close()
            self._slots.clear()
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT: dict[SandboxConfig, SandboxPool] = {}
_DEFAULT_LOCK = threading.Lock()


def shared_pool(config: SandboxConfig) -> SandboxPool:
    """A process-wide pool per configuration, started on first use, closed at exit."""
    with _DEFAULT_LOCK:
        pool = _DEFAULT.get(config)
        if pool is None:
            pool = _DEFAULT[config] = SandboxPool(config)
        return pool


@atexit.register
def _close_shared_pools() -> None:
    for pool in list(_DEFAULT.values()):
        pool.close()
    _DEFAULT.clear()
