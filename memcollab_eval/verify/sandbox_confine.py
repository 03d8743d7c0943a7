"""The isolation layers of the sandbox's processes: Landlock, seccomp, rlimits.

Shared by the worker (which installs the layers common to every program once) and by
the two processes each program gets: the candidate's process, where the program runs,
and the test process, where its tests run and the verdict is decided. Both are
confined the same way by ``confine``. Runs inside the sandbox: standard library only
(plus ``pyseccomp``, copied beside this file, when available).
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
import resource

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


def child_deny(protected_pids: list[int]) -> list[tuple[str, list[int]]]:
    """Per-program extras: stay in the process group we can kill; never signal the
    worker or the zygote (``protected_pids``), nor everything at once."""
    targets = sorted({1, -1, -1 * os.getpgid(0), *protected_pids, *(-p for p in protected_pids)})
    exact = sorted({1, *protected_pids})
    return [("setsid", []), ("setpgid", []), ("kill", targets), ("tkill", exact), ("tgkill", exact)]


def confine(work_dir: str, keep: dict[int, int], out_w: int, limits: dict, layers: dict, child_bpf: bytes | None) -> None:
    """Turn a freshly forked process into a confined one, in place.

    New session (so its process group can be killed as a whole), stdin from /dev/null,
    stdout and stderr to ``out_w``, only the descriptors in ``keep`` (old fd -> new fd)
    survive, rlimits from ``limits``, then Landlock (writes only in ``work_dir``, no TCP,
    no signals outside) and the seccomp extras. Raises on any failure: the caller must
    then exit without running anything.
    """
    os.setsid()
    os.chdir(work_dir)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    staged = {fcntl.fcntl(old, fcntl.F_DUPFD_CLOEXEC, 1000): new for old, new in keep.items()}  # out of the way first
    for tmp, new in staged.items():
        os.dup2(tmp, new, inheritable=False)
    top = max(keep.values(), default=2) + 1
    for fd in range(3, top):
        if fd not in keep.values():
            try:
                os.close(fd)
            except OSError:
                pass
    os.closerange(top, 1 << 16)
    mem = int(limits["memory_mb"]) << 20
    cpu = int(math.ceil(float(limits["timeout"]))) + 1
    for lim, val in (
        (resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, int(limits["max_file_bytes"])),
        (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, int(limits["max_procs"])),
    ):
        resource.setrlimit(lim, (val, val))
    if layers.get("landlock_abi", 0) >= 1:
        landlock_restrict_writes(layers["landlock_abi"], [work_dir, os.devnull], deny_tcp=True, scope=True)
    if child_bpf is not None:
        load_bpf(child_bpf)
    os.environ.clear()
    os.environ.update({"HOME": work_dir, "TMPDIR": work_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
