"""The long-lived worker that runs inside the sandbox and executes untrusted programs.

This file is copied into a slot directory and started *inside* bubblewrap by
``sandbox_pool``; it must therefore depend only on the standard library (plus
``pyseccomp``, copied beside it, when available). It is never imported by the host.

Why a pre-forked worker: a fresh interpreter with every isolation layer costs ~90 ms
per test; forking this warm interpreter costs a few ms. The layers that are the same
for every test (seccomp: no exec, no inet sockets, no ptrace...; Landlock: writes only
under the slot directory) are installed once here and inherited across ``fork``. Each
test child then adds its own narrower layer (writes only in its own test directory,
no signals outside its Landlock domain, no kill of the worker, no new sessions) and
rlimits.

Protocol: one JSON object per line on stdin (a request), one JSON object per line on
stdout (the hello message at start, then one response per request).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

# pyseccomp is copied beside this file; -I (isolated mode) does not add our directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Landlock (linux/landlock.h). Syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LL_CREATE_RULESET_VERSION = 1
LL_RULE_PATH_BENEATH = 1
LL_FS_WRITE_FILE = 1 << 1
LL_FS_READ_FILE = 1 << 2
LL_FS_READ_DIR = 1 << 3
LL_FS_REMOVE_DIR = 1 << 4
LL_FS_REMOVE_FILE = 1 << 5
LL_FS_MAKE_ALL = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
LL_FS_REFER = 1 << 13  # ABI 2
LL_FS_TRUNCATE = 1 << 14  # ABI 3
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
LL_SCOPE_ABSTRACT_UNIX, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

OK_TAG = b"MEMCOLLAB-TESTS-COMPLETED:"
EX_TAG = b"MEMCOLLAB-EXCEPTION:"
CHILD_STATUS_AFTER_SUCCESS = 0


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when unavailable."""
    abi = LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LL_CREATE_RULESET_VERSION))
    return max(abi, 0)


def landlock_restrict_writes(abi: int, writable: list[str], *, deny_tcp: bool, scope: bool) -> None:
    """Allow writes only beneath ``writable``; optionally deny TCP and scope signals.

    Reads are not handled: the mount namespace already limits what can be read.
    """
    write_rights = LL_FS_WRITE_FILE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE | LL_FS_MAKE_ALL
    if abi >= 2:
        write_rights |= LL_FS_REFER
    if abi >= 3:
        write_rights |= LL_FS_TRUNCATE
    net = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if (deny_tcp and abi >= 4) else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL) if (scope and abi >= 6) else 0
    attr = (ctypes.c_uint64 * 3)(write_rights, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in writable:
            is_dir = os.path.isdir(path)
            rights = write_rights if is_dir else (LL_FS_WRITE_FILE | (LL_FS_TRUNCATE if abi >= 3 else 0))
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
                rule = ctypes.create_string_buffer(rights.to_bytes(8, "little") + fd.to_bytes(4, "little", signed=True))
                if LIBC.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LL_RULE_PATH_BENEATH, rule, ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if LIBC.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _seccomp_filter(deny: list[tuple[str, list[int]]]):
    """Build a libseccomp filter that allows everything but the listed calls (EPERM).

    Each item is ``(syscall, values)``: with no values the call is always denied; with
    values it is denied when its first argument (low 32 bits) equals one of them.
    """
    import pyseccomp

    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name, values in deny:
        try:
            if not values:
                flt.add_rule(pyseccomp.ERRNO(1), name)
            for value in values:
                flt.add_rule(pyseccomp.ERRNO(1), name, pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0xFFFFFFFF, value & 0xFFFFFFFF))
        except Exception:  # a syscall unknown on this architecture: nothing to deny
            continue
    return flt


def seccomp_bpf(deny: list[tuple[str, list[int]]]) -> bytes:
    """Compile a deny-list to raw BPF once, so each child loads it with one prctl."""
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb") as out:
            _seccomp_filter(deny).export_bpf(out)
        with os.fdopen(read_fd, "rb") as inp:
            return inp.read()
    except BaseException:
        for fd in (read_fd, write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        raise


def load_bpf(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter load failed")


# Calls no test program needs and that open a way out: exec (shells), inet/raw/netlink
# sockets, tracing other processes, new namespaces, kernel interfaces that bypass seccomp.
WORKER_DENY = [
    ("execve", []), ("execveat", []),
    ("socket", [2, 10, 16, 17]),  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET
    ("ptrace", []), ("process_vm_readv", []), ("process_vm_writev", []),
    ("unshare", []), ("setns", []), ("mount", []), ("umount2", []), ("pivot_root", []),
    ("bpf", []), ("perf_event_open", []), ("userfaultfd", []), ("keyctl", []), ("add_key", []),
    ("request_key", []), ("io_uring_setup", []), ("personality", []),
]


def child_deny(worker_pid: int) -> list[tuple[str, list[int]]]:
    """Per-test extras: stay in the process group we can kill; never signal the worker."""
    targets = [1, worker_pid, -1, -worker_pid, -1 * os.getpgid(0)]
    return [("setsid", []), ("setpgid", []), ("kill", targets), ("tkill", [1, worker_pid]), ("tgkill", [1, worker_pid])]


def run_child(req: dict, test_dir: str, out_w: int, res_w: int, layers: dict, child_bpf: bytes | None) -> None:
    """Runs in the forked child: confine, execute program then tests, report, _exit."""
    try:
        os.setsid()
        os.chdir(test_dir)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.closerange(3, res_w)
        os.closerange(res_w + 1, 1 << 16)
        mem = int(req["memory_mb"]) << 20
        cpu = int(math.ceil(float(req["timeout"]))) + 1
        for lim, val in (
            (resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, int(req["max_file_bytes"])),
            (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, int(req["max_procs"])),
        ):
            resource.setrlimit(lim, (val, val))
        if layers.get("landlock_abi", 0) >= 1:
            landlock_restrict_writes(layers["landlock_abi"], [test_dir, os.devnull], deny_tcp=True, scope=True)
        if child_bpf is not None:
            load_bpf(child_bpf)
        os.environ.clear()
        os.environ.update({"HOME": test_dir, "TMPDIR": test_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    except BaseException as exc:  # confinement failed: never run the program unconfined
        os.write(res_w, EX_TAG + f"sandbox setup failed: {exc!r}".encode())
        os._exit(70)
    nonce = req["nonce"].encode()
    try:
        scope: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(req["program"], "<program>", "exec"), scope)
        exec(compile(req["test"], "<test>", "exec"), scope)
        if req.get("entry_point"):
            exec(compile(f"check({req['entry_point']})", "<check>", "exec"), scope)
    except BaseException as exc:  # noqa: BLE001 - SystemExit before the tests ran is a failure too
        kind = type(exc).__name__
        if isinstance(exc, SystemExit):
            msg = f"SystemExit({exc.code!r}) before the tests completed"
        else:
            msg = f"{kind}: {exc}"[:2000] + "\n" + "".join(traceback.format_exc(limit=-3))[-2000:]
        _report(res_w, EX_TAG + msg.encode(errors="replace"))
        os._exit(1)
    _report(res_w, OK_TAG + nonce)
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


def _kill_everything(child: int, in_pid_namespace: bool) -> None:
    """Kill the test's process group and, in our own PID namespace, every orphan too."""
    try:
        os.killpg(child, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if in_pid_namespace:
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal except ourselves and init
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


def execute(req: dict, slot_dir: str, layers: dict, child_bpf: bytes | None, in_pid_namespace: bool) -> dict:
    """Run one request in a fresh child and turn what happened into a response."""
    test_dir = os.path.join(slot_dir, "run")
    shutil.rmtree(test_dir, ignore_errors=True)
    os.mkdir(test_dir, 0o700)
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    start = time.monotonic()
    child = os.fork()
    if child == 0:
        os.close(out_r)
        os.close(res_r)
        run_child(req, test_dir, out_w, res_w, layers, child_bpf)
    os.close(out_w)
    os.close(res_w)
    os.set_blocking(out_r, False)
    pidfd = os.pidfd_open(child)
    deadline = start + float(req["timeout"])
    cap = int(req["output_cap"])
    output = bytearray()
    total = 0
    ended = "exit"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            ended = "timeout"
            break
        ready, _, _ = select.select([pidfd, out_r], [], [], remaining)
        if out_r in ready:
            chunk = _read_some(out_r)
            total += len(chunk)
            if len(output) < 16384:
                output += chunk[: 16384 - len(output)]
            if total > cap:
                ended = "output"
                break
        if pidfd in ready:
            break
    _kill_everything(child, in_pid_namespace)
    _, wstatus = os.waitpid(child, 0)
    seconds = time.monotonic() - start
    os.close(pidfd)
    result = _drain(res_r, 16384)
    os.close(out_r)
    os.close(res_r)
    _reap_all()
    shutil.rmtree(test_dir, ignore_errors=True)
    return _judge(req, ended, wstatus, result, bytes(output), total, seconds)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def _drain(fd: int, limit: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    while len(data) < limit:
        chunk = _read_some(fd)
        if not chunk:
            break
        data += chunk
    return data


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


def setup_worker(slot_dir: str) -> tuple[dict, bytes | None]:
    """Install the layers shared by every test and report which ones took effect."""
    layers: dict = {"uid": os.getuid(), "pid": os.getpid(), "landlock_abi": 0, "seccomp": False, "no_new_privs": False}
    layers["no_new_privs"] = LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # same-uid processes may not read our memory
    abi = landlock_abi()
    if abi >= 1:
        try:
            landlock_restrict_writes(abi, [slot_dir, os.devnull], deny_tcp=True, scope=False)
            layers["landlock_abi"] = abi
        except OSError as exc:
            layers["landlock_error"] = str(exc)
    child_bpf = None
    try:
        load_bpf(seccomp_bpf(WORKER_DENY))
        child_bpf = seccomp_bpf(child_deny(os.getpid()))
        layers["seccomp"] = True
    except Exception as exc:  # pyseccomp or libseccomp missing
        layers["seccomp_error"] = repr(exc)
    layers["network_isolated"] = _network_isolated()
    return layers, child_bpf


def _network_isolated() -> bool:
    """True when only a loopback interface exists (a fresh network namespace)."""
    try:
        with open("/proc/net/dev", encoding="ascii") as f:
            names = {line.split(":", 1)[0].strip() for line in f.readlines()[2:]}
    except OSError:
        return False
    return names <= {"lo"}


def main() -> None:
    slot_dir = sys.argv[1]
    in_pid_namespace = os.getpid() <= 3
    layers, child_bpf = setup_worker(slot_dir)
    layers["pid_namespace"] = in_pid_namespace
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
            response = execute(req, slot_dir, layers, child_bpf, in_pid_namespace)
        except Exception as exc:  # a worker bug must not look like a test result
            response = {"id": req.get("id"), "status": "error", "detail": f"worker error: {exc!r}", "seconds": 0.0}
        proto_out.write(json.dumps(response) + "\n")
        proto_out.flush()


if __name__ == "__main__":
    main()
