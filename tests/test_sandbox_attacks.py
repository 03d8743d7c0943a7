"""Hostile programs against the sandbox: each test checks the HOST side effect did not
happen, not only the returned status."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def sandbox_uid_processes(pool) -> set[int]:
    """PIDs on the host owned by the pool's sandbox uids (per-slot uids when run as root) and
    descended from this pool's slots: other pools on the machine may use the same uids."""
    uids = {str(s.plan.drops_to_uid) for s in pool._slots if s.plan.drops_to_uid is not None}
    if not uids:
        pytest.skip("per-slot sandbox uids exist only when the host runs as root")
    roots = {s.proc.pid for s in pool._slots if s.proc is not None}
    parents: dict[int, int] = {}
    owned = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry.name)] = int(fields.get("PPid", "0").strip() or 0)
        if fields.get("Uid", "").split()[:1] and fields["Uid"].split()[0] in uids:
            owned.add(int(entry.name))

    def in_pool(pid: int) -> bool:
        for _ in range(64):
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
            if pid <= 1:
                return False
        return False

    return {pid for pid in owned if in_pool(pid)}


def resting_processes(pool) -> set[int]:
    """The sandbox uids' processes with every slot at rest. A slot at rest also holds the
    candidate and test processes forked for its next program, so first run one program
    on each slot (slots are taken in turn), then count."""
    for _ in pool._slots:
        assert_pool_healthy(pool)
    time.sleep(0.3)
    return sandbox_uid_processes(pool)


def assert_no_process_left(pool, before: set[int]) -> None:
    """As many processes as at rest: the waiting pairs are new, nothing else may be."""
    time.sleep(0.5)
    after = sandbox_uid_processes(pool)
    assert len(after) <= len(before), f"{len(after) - len(before)} more processes: {sorted(after - before)}"


def assert_pool_healthy(pool) -> None:
    verdict = pool.run("def inc(x):\n    return x + 1\n", "assert inc(1) == 2\n")
    assert verdict.status == "pass", verdict.detail


def test_pass_and_fail(sandbox):
    assert sandbox.isolation.level == "full", sandbox.isolation.describe()
    assert sandbox.run("def f(x):\n    return 2 * x\n", "assert f(3) == 6\n").status == "pass"
    wrong = sandbox.run("def f(x):\n    return 2 + x\n", "assert f(3) == 6\n")
    assert wrong.status == "fail" and "AssertionError" in wrong.detail


def test_humaneval_style_check(sandbox):
    test = "def check(candidate):\n    assert candidate(2) == 4\n"
    assert sandbox.run("def sq(x):\n    return x * x\n", test, entry_point="sq").status == "pass"
    assert sandbox.run("def sq(x):\n    return x + x + 1\n", test, entry_point="sq").status == "fail"


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
def test_early_exit_is_not_a_pass(sandbox, exit_call):
    verdict = sandbox.run(exit_call + "\n", "assert False, 'tests ran'\n")
    assert verdict.status == "fail"
    assert "before the tests completed" in verdict.detail


def test_exit_inside_test_is_not_a_pass(sandbox):
    verdict = sandbox.run("def f():\n    import os\n    os._exit(0)\n", "f()\nassert False\n")
    assert verdict.status == "fail"


@pytest.mark.parametrize("program", ["while True:\n    pass\n", "import time\ntime.sleep(10**6)\n"])
def test_infinite_loop_and_sleep_time_out(sandbox, program):
    start = time.monotonic()
    verdict = sandbox.run(program, "", timeout=1.0)
    assert verdict.status == "timeout"
    assert time.monotonic() - start < 6
    assert_pool_healthy(sandbox)


def test_memory_bomb_is_contained(sandbox):
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n"
    verdict = sandbox.run(program, "", timeout=10.0)
    assert verdict.status == "fail" and "MemoryError" in verdict.detail
    assert_pool_healthy(sandbox)


def test_fork_bomb_is_bounded_and_leaves_no_process(sandbox):
    before = resting_processes(sandbox)
    program = (
        "import os, time\n"
        "made = 0\n"
        "for _ in range(2000):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "print('forks', made)\n"
        "assert made < 2000, made\n"
    )
    verdict = sandbox.run(program, "", timeout=10.0)
    assert verdict.status == "pass", verdict.detail
    assert_no_process_left(sandbox, before)


def test_grandchildren_do_not_outlive_the_test(sandbox):
    before = resting_processes(sandbox)
    program = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    try:\n"
        "        os.setsid()\n"
        "    except OSError:\n"
        "        pass\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(120)\n"
        "    os._exit(0)\n"
    )
    verdict = sandbox.run(program, "pass\n")
    assert verdict.status == "pass", verdict.detail
    assert_no_process_left(sandbox, before)


def test_files_outside_the_work_dir_are_untouched(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    canary = Path(tempfile.gettempdir()) / f"memcollab-canary-{os.getpid()}"
    program = (
        "import os, shutil\n"
        "errors = []\n"
        f"for action in (lambda: os.remove({str(victim)!r}), lambda: open({str(victim)!r}, 'w').write('x'),\n"
        f"               lambda: open({str(canary)!r}, 'w').write('x'), lambda: open('/usr/evil', 'w'),\n"
        "               lambda: shutil.rmtree('/usr/share/doc'), lambda: open('/opt/memcollab-worker/sandbox_worker.py', 'a')):\n"
        "    try:\n"
        "        action()\n"
        "    except OSError as e:\n"
        "        errors.append(type(e).__name__)\n"
        "assert len(errors) == 6, errors\n"
    )
    verdict = sandbox.run(program, "")
    assert verdict.status == "pass", verdict.detail
    assert victim.read_text() == "keep me"
    assert not canary.exists()
    assert Path("/usr/share/doc").is_dir()
    assert_pool_healthy(sandbox)


def test_etc_shadow_is_not_readable(sandbox):
    program = "print(open('/etc/shadow').read())\n"
    verdict = sandbox.run(program, "")
    assert verdict.status == "fail"
    assert "root:" not in verdict.detail
    assert "Error" in verdict.detail


def test_no_tcp_or_udp_to_the_host(sandbox):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    tcp_port, udp_port = server.getsockname()[1], udp.getsockname()[1]
    program = (
        "import socket\n"
        "blocked = 0\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {tcp_port}), timeout=2).sendall(b'leak')\n"
        "except OSError:\n"
        "    blocked += 1\n"
        "try:\n"
        f"    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'leak', ('127.0.0.1', {udp_port}))\n"
        "except OSError:\n"
        "    blocked += 1\n"
        "assert blocked == 2, blocked\n"
    )
    try:
        verdict = sandbox.run(program, "")
        assert verdict.status == "pass", verdict.detail
        with pytest.raises(socket.timeout):
            server.accept()
        with pytest.raises(socket.timeout):
            udp.recvfrom(100)
    finally:
        server.close()
        udp.close()


def test_cannot_kill_host_or_worker_processes(sandbox):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        program = (
            "import os, signal\n"
            f"for pid in ({victim.pid}, -1, 1, 2, 3, os.getppid()):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n"
            "        pass\n"
        )
        verdict = sandbox.run(program, "pass\n")
        assert verdict.status == "pass", verdict.detail
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
        assert_pool_healthy(sandbox)
    finally:
        victim.kill()
        victim.wait()


def test_cannot_spawn_shells(sandbox, tmp_path):
    marker = tmp_path / "shell-ran"
    program = (
        "import os, subprocess\n"
        "failures = 0\n"
        f"rc = os.system('touch {marker}')\n"
        "failures += rc != 0\n"
        "try:\n"
        f"    subprocess.run(['/bin/sh', '-c', 'touch {marker}'], check=True)\n"
        "except Exception:\n"
        "    failures += 1\n"
        "try:\n"
        "    os.execv('/bin/sh', ['sh', '-c', 'true'])\n"
        "except OSError:\n"
        "    failures += 1\n"
        "assert failures == 3, failures\n"
    )
    verdict = sandbox.run(program, "")
    assert verdict.status == "pass", verdict.detail
    assert not marker.exists()


def test_huge_output_is_capped(sandbox):
    start = time.monotonic()
    verdict = sandbox.run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n", "")
    assert verdict.status == "fail" and "output exceeded" in verdict.detail
    assert len(verdict.detail) < 10_000
    assert time.monotonic() - start < 10
    assert_pool_healthy(sandbox)


def test_dead_worker_is_reported_and_restarted(sandbox):
    """A worker that dies between requests gives an ``error`` verdict, then is replaced."""
    import signal

    for slot in list(sandbox._slots):
        os.killpg(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait()
    statuses = [sandbox.run("x = 1\n", "assert x == 1\n").status for _ in range(len(sandbox._slots))]
    assert statuses == ["error"] * len(sandbox._slots)
    assert_pool_healthy(sandbox)
    assert_pool_healthy(sandbox)


def test_program_cannot_kill_its_worker(sandbox):
    verdict = sandbox.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "pass\n")
    assert verdict.status == "fail" and "PermissionError" in verdict.detail
    assert_pool_healthy(sandbox)


def test_execute_returns_what_a_script_printed(sandbox):
    ran = sandbox.execute("print(sum(range(10)))\n")
    assert (ran.status, ran.output.strip()) == ("pass", "45")
    crashed = sandbox.execute("print('before')\nraise ValueError('boom')\n")
    assert crashed.status == "fail" and "before" in crashed.output and "boom" in crashed.detail
    assert sandbox.execute("while True:\n    pass\n", timeout=1.0).status == "timeout"


def test_workers_started_from_short_lived_threads_survive(sandbox):
    """bwrap --die-with-parent follows the starting thread: restarts happen on a spawner thread."""
    import threading

    def restart_all():
        for slot in list(sandbox._slots):
            slot._stop()
            slot.start()

    thread = threading.Thread(target=restart_all)
    thread.start()
    thread.join()
    time.sleep(0.3)
    assert all(slot.proc.poll() is None for slot in sandbox._slots)
    assert_pool_healthy(sandbox)
    assert_pool_healthy(sandbox)
