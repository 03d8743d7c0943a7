"""The long-lived worker that runs inside the sandbox and executes untrusted programs.

This file (with ``sandbox_confine``, ``call_channel``, ``sandbox_candidate`` and
``sandbox_tests``) is copied into a slot directory and started *inside* bubblewrap by
``sandbox_pool``; it must therefore depend only on the standard library (plus
``pyseccomp``, copied beside it, when available). It is never imported by the host.

Why pre-forked processes: a fresh interpreter with every isolation layer costs ~90 ms
per program; forking a warm one costs a few ms. The layers common to every program
(seccomp: no exec, no inet sockets, no ptrace...; Landlock: writes only under the slot
directory) are installed once, before anything forks, and inherited.

Why two processes per program: a verdict decided in the interpreter that runs the
program can be forged by the program (replace ``exec``, patch the reporter, walk the
frames to the secret). So each program gets

* a **candidate process**, forked from the *zygote*: this process after setup, before
  it has seen any request (it never reads one), so nothing of an earlier program, test
  or response is in its memory. It runs the program and answers calls;
* a **test process**, forked from the request-serving worker: it runs the tests and the
  benchmark's support code, calls the candidate through a plain-data channel
  (``call_channel``) and alone holds the result pipe and the nonce.

Both are confined the same way (``sandbox_confine.confine``). Under bubblewrap the
zygote is PID 1 of the sandbox's PID namespace (``--as-pid-1``): no process in the
sandbox can signal it, it reaps orphans, and the worker's ``kill(-1)`` after each
program spares it.

Protocol with the host: one JSON object per line on stdin (a request), one JSON object
per line on stdout (the hello message at start, then one response per request).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from typing import NoReturn

# our sibling modules are copied beside this file; -I (isolated mode) does not add our directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import call_channel  # noqa: E402
import sandbox_candidate  # noqa: E402
import sandbox_tests  # noqa: E402
from sandbox_confine import (  # noqa: E402
    LIBC,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    WORKER_DENY,
    child_deny,
    confine,
    landlock_abi,
    landlock_restrict_writes,
    load_bpf,
    seccomp_bpf,
)

OK_TAG = b"MEMCOLLAB-TESTS-COMPLETED:"
EX_TAG = b"MEMCOLLAB-EXCEPTION:"
CHILD_STATUS_AFTER_SUCCESS = 0
CHANNEL_FD, RESULT_FD = 3, 4
LIMIT_KEYS = ("memory_mb", "timeout", "max_file_bytes", "max_procs")


# ------------------------------------------------------------------ the zygote


def zygote(sock: socket.socket, slot_dir: str, layers: dict, child_bpf: bytes | None) -> NoReturn:
    """Fork one candidate process per request from this pristine state.

    What arrives here is the limits only (numbers); the program goes straight from the
    test process to the candidate over the channel, whose end we pass to the worker.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # candidates and (as PID 1) orphans reap themselves
    while True:
        try:
            data = sock.recv(4096)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        limits = {k: json.loads(data)[k] for k in LIMIT_KEYS}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            sock.close()
            ours.close()
            os.close(out_r)
            _candidate(theirs.detach(), out_w, os.path.join(slot_dir, "run", "c"), limits, layers, child_bpf)
        theirs.close()
        os.close(out_w)
        try:
            socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [ours.fileno(), out_r])
        except OSError:
            os._exit(0)
        ours.close()
        os.close(out_r)


def _candidate(ctl: int, out_w: int, work_dir: str, limits: dict, layers: dict, child_bpf: bytes | None) -> NoReturn:
    """In the forked candidate: confine, then run the program and serve calls."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        confine(work_dir, {ctl: CHANNEL_FD}, out_w, limits, layers, child_bpf)
    except BaseException as exc:  # confinement failed: never run the program unconfined
        for fd in (CHANNEL_FD, ctl):
            try:
                call_channel.send(fd, ["setup_failed", f"sandbox setup failed: {exc!r}"])
                break
            except BaseException:
                continue
        os._exit(70)
    sandbox_candidate.serve(CHANNEL_FD)


# ------------------------------------------------------------ the test process


def _test_process(req: dict, work_dir: str, ctl: int, out_w: int, res_w: int, layers: dict, child_bpf: bytes | None) -> NoReturn:
    """In the forked test process: confine, run the tests against the candidate, report."""
    try:
        confine(work_dir, {ctl: CHANNEL_FD, res_w: RESULT_FD}, out_w, req, layers, child_bpf)
    except BaseException as exc:
        os.write(res_w, EX_TAG + f"sandbox setup failed: {exc!r}".encode())
        os._exit(70)
    try:
        sandbox_tests.run_tests(CHANNEL_FD, req["program"], req["test"], req.get("support") or "", req.get("entry_point"))
    except sandbox_tests.SandboxSetupFailed as exc:
        _report(RESULT_FD, EX_TAG + str(exc).encode(errors="replace"))
        os._exit(70)
    except sandbox_tests.CandidateGone as exc:
        _report(RESULT_FD, EX_TAG + str(exc)[:4000].encode(errors="replace"))
        os._exit(1)
    except BaseException as exc:  # noqa: BLE001 - a failed test, or SystemExit raised by the tests
        msg = f"{type(exc).__name__}: {exc}"[:2000] + "\n" + "".join(traceback.format_exc(limit=-3))[-2000:]
        _report(RESULT_FD, EX_TAG + msg.encode(errors="replace"))
        os._exit(1)
    _report(RESULT_FD, OK_TAG + req["nonce"].encode())
    os._exit(CHILD_STATUS_AFTER_SUCCESS)


def _report(fd: int, data: bytes) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        os.write(fd, data[:8192])
    except OSError:
        pass


# ------------------------------------------------------------------ the worker


def _kill_everything(groups: list[int], in_pid_namespace: bool) -> None:
    """Kill both processes' groups and, in our own PID namespace, every orphan too."""
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if in_pid_namespace:
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal except ourselves and PID 1 (the zygote)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def execute(req: dict, slot_dir: str, zygote_sock: socket.socket, layers: dict, child_bpf: bytes | None,
            in_pid_namespace: bool) -> dict:
    """Run one request (a candidate and a test process) and turn what happened into a response."""
    run_dir = os.path.join(slot_dir, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.mkdir(run_dir, 0o700)
    for sub in ("c", "t"):
        os.mkdir(os.path.join(run_dir, sub), 0o700)
    start = time.monotonic()
    zygote_sock.sendall(json.dumps({k: req[k] for k in LIMIT_KEYS}).encode())
    msg, fds, _, _ = socket.recv_fds(zygote_sock, 1024, 2)
    if len(fds) != 2:  # the zygote is gone: exit, so the host restarts this slot as a whole
        os._exit(75)
    candidate_pid = int(json.loads(msg)["pid"])
    ctl, cand_out = fds
    test_out, test_out_w = os.pipe()
    res_r, res_w = os.pipe()
    child = os.fork()
    if child == 0:
        for fd in (test_out, res_r, cand_out):
            os.close(fd)
        _test_process(req, os.path.join(run_dir, "t"), ctl, test_out_w, res_w, layers, child_bpf)
    for fd in (ctl, test_out_w, res_w):
        os.close(fd)
    pidfd = os.pidfd_open(child)
    deadline = start + float(req["timeout"])
    cap = int(req["output_cap"])
    outputs = {cand_out: bytearray(), test_out: bytearray()}
    open_fds = [cand_out, test_out]
    for fd in open_fds:
        os.set_blocking(fd, False)
    total = 0
    ended = "exit"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            ended = "timeout"
            break
        ready, _, _ = select.select([pidfd, *open_fds], [], [], remaining)
        for fd in open_fds[:]:
            if fd not in ready:
                continue
            chunk = _read_some(fd)
            if chunk is None:
                open_fds.remove(fd)
                continue
            total += len(chunk)
            kept = outputs[fd]
            if len(kept) < 16384:
                kept += chunk[: 16384 - len(kept)]
        if total > cap:
            ended = "output"
            break
        if pidfd in ready:
            break
    _kill_everything([child, candidate_pid], in_pid_namespace)
    _, wstatus = os.waitpid(child, 0)
    seconds = time.monotonic() - start
    os.close(pidfd)
    result = _drain(res_r, 16384)
    for fd in (cand_out, test_out):
        tail = _drain(fd, 16384 - len(outputs[fd]))
        outputs[fd] += tail
        os.close(fd)
    os.close(res_r)
    _reap_all()
    shutil.rmtree(run_dir, ignore_errors=True)
    output = bytes(outputs[cand_out] + outputs[test_out])
    return _judge(req, ended, wstatus, result, output, total, seconds)


def _read_some(fd: int) -> bytes | None:
    """What is there to read; ``None`` at end of file."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    return chunk or None


def _drain(fd: int, limit: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    while len(data) < limit:
        chunk = _read_some(fd)
        if not chunk:
            break
        data += chunk
    return data[:max(limit, 0)]


def _judge(req: dict, ended: str, wstatus: int, result: bytes, output: bytes, total: int, seconds: float) -> dict:
    text = output.decode("utf-8", errors="replace")
    base = {"id": req["id"], "seconds": seconds, "output": text[-4000:], "output_bytes": total}
    if ended == "timeout":
        return {**base, "status": "timeout", "detail": f"wall-clock limit of {req['timeout']}s exceeded"}
    if ended == "output":
        return {**base, "status": "fail", "detail": f"output exceeded the cap of {req['output_cap']} bytes"}
    signo = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else 0
    code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
    if result == OK_TAG + req["nonce"].encode() and code == CHILD_STATUS_AFTER_SUCCESS:
        return {**base, "status": "pass", "detail": "all tests passed"}
    if result.startswith(EX_TAG):
        message = result[len(EX_TAG):].decode("utf-8", errors="replace")
        status = "error" if message.startswith("sandbox setup failed") else "fail"
        return {**base, "status": status, "detail": message}
    if signo in (signal.SIGXCPU, signal.SIGKILL) and seconds >= float(req["timeout"]) * 0.5:
        return {**base, "status": "timeout", "detail": f"killed by signal {signo} (CPU limit)"}
    if signo:
        return {**base, "status": "fail", "detail": f"killed by signal {signal.Signals(signo).name}"}
    return {**base, "status": "fail", "detail": f"process exited with code {code} before the tests completed"}


def setup_worker(slot_dir: str) -> dict:
    """Install the layers shared by every program and report which ones took effect."""
    layers: dict = {"uid": os.getuid(), "pid": os.getpid(), "landlock_abi": 0, "seccomp": False, "no_new_privs": False}
    layers["no_new_privs"] = LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # same-uid processes may not read our memory (inherited by forks)
    abi = landlock_abi()
    if abi >= 1:
        try:
            landlock_restrict_writes(abi, [slot_dir, os.devnull], deny_tcp=True, scope=False)
            layers["landlock_abi"] = abi
        except OSError as exc:
            layers["landlock_error"] = str(exc)
    try:
        load_bpf(seccomp_bpf(WORKER_DENY))
        layers["seccomp"] = True
    except Exception as exc:  # pyseccomp or libseccomp missing
        layers["seccomp_error"] = repr(exc)
    layers["network_isolated"] = _network_isolated()
    return layers


def _child_bpf(layers: dict, protected: list[int]) -> bytes | None:
    if not layers.get("seccomp"):
        return None
    try:
        return seccomp_bpf(child_deny(protected))
    except Exception as exc:
        layers["seccomp"] = False
        layers["seccomp_error"] = f"per-program filter: {exc!r}"
        return None


def _network_isolated() -> bool:
    """True when only a loopback interface exists (a fresh network namespace)."""
    try:
        with open("/proc/net/dev", encoding="ascii") as f:
            names = {line.split(":", 1)[0].strip() for line in f.readlines()[2:]}
    except OSError:
        return False
    return names <= {"lo"}


def serve_requests(slot_dir: str, layers: dict, zygote_sock: socket.socket, child_bpf: bytes | None,
                   in_pid_namespace: bool) -> None:
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # nothing may reach the protocol stream but our own responses
        os.dup2(devnull, fd)
    proto_out.write(json.dumps({"hello": True, "layers": layers}) + "\n")
    proto_out.flush()
    for line in proto_in:
        req = json.loads(line)
        try:
            response = execute(req, slot_dir, zygote_sock, layers, child_bpf, in_pid_namespace)
        except Exception as exc:  # a worker bug must not look like a test result
            response = {"id": req.get("id"), "status": "error", "detail": f"worker error: {exc!r}", "seconds": 0.0}
        proto_out.write(json.dumps(response) + "\n")
        proto_out.flush()


def main() -> None:
    slot_dir = sys.argv[1]
    in_pid_namespace = os.getpid() == 1
    layers = setup_worker(slot_dir)
    layers["pid_namespace"] = in_pid_namespace
    zygote_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote_pid = os.getpid()
    worker_pid = os.fork()
    if worker_pid == 0:
        zygote_end.close()
        child_bpf = _child_bpf(layers, [zygote_pid, os.getpid()])
        serve_requests(slot_dir, layers, worker_end, child_bpf, in_pid_namespace)
        os._exit(0)
    worker_end.close()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # the zygote never reads a request nor writes a response
        os.dup2(devnull, fd)
    zygote(zygote_end, slot_dir, layers, _child_bpf(dict(layers), [zygote_pid, worker_pid]))


if __name__ == "__main__":
    main()
