"""A wrong program plus a few lines of attack must not score ``pass``.

Each test is one family of forgery (issue 13), with several programs per family: a
reward-hacking policy varies the trick, the family is the point. Every attack is glued
to a solution that is wrong on purpose, so ``fail`` means the attack did not work.
Against the old one-interpreter design each of these families produced a ``pass``.
"""

from __future__ import annotations

import pytest

PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    """
'''
TEST = '''
METADATA = {}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False
'''
ENTRY = "has_close_elements"
RIGHT = '''
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
'''
WRONG = '''
def has_close_elements(numbers, threshold):
    return False
'''


# Reads this process's own writable memory (heap, anonymous maps) without /proc/self/mem.
READ_MEMORY = """
def _memory():
    import ctypes
    for line in open("/proc/self/maps"):
        parts = line.split()
        if parts[1].startswith("rw") and (len(parts) < 6 or not parts[5].startswith("/")):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if end - start <= 1 << 28:
                yield ctypes.string_at(start, end - start)
"""


def judge(sandbox, program: str):
    return sandbox.run(PROMPT + program, TEST, entry_point=ENTRY, support=PROMPT)


def assert_forgery_fails(sandbox, attack: str) -> None:
    for placement in (WRONG + attack, attack + WRONG):
        verdict = judge(sandbox, placement)
        assert verdict.status in ("fail", "error", "timeout") and not verdict.passed, (attack, verdict)


def test_the_task_separates_right_from_wrong(sandbox):
    assert judge(sandbox, RIGHT).status == "pass"
    assert judge(sandbox, WRONG).status == "fail"


REPLACE_BUILTINS = [
    "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "import builtins\n_c = builtins.compile\nbuiltins.compile = lambda src, name, mode, *a, **k: _c('pass', name, mode)\n",
    "import builtins as b\nsetattr(b, 'exec', lambda code, *scopes: None)\nsetattr(b, 'eval', lambda *a: True)\n",
    "import builtins\nbuiltins.__dict__.update(exec=lambda *a: None, compile=lambda *a, **k: None)\n",
]


@pytest.mark.parametrize("attack", REPLACE_BUILTINS)
def test_replacing_compile_or_exec_does_not_skip_the_tests(sandbox, attack):
    assert_forgery_fails(sandbox, attack)


FRAME_WALK = [
    # from the program's top level: find the secret and the result descriptor, report success, leave
    '''
import sys, os
f = sys._getframe()
while f is not None:
    scope = {**f.f_globals, **f.f_locals}
    req = scope.get("req")
    tag = scope.get("OK_TAG", b"MEMCOLLAB-TESTS-COMPLETED:")
    if isinstance(req, dict) and "nonce" in req:
        for fd in range(3, 64):
            try:
                os.write(fd, tag + req["nonce"].encode())
            except OSError:
                pass
        os._exit(0)
    f = f.f_back
''',
    # from inside the call, once the tests are running
    '''
def has_close_elements(numbers, threshold):
    import sys, os
    f = sys._getframe()
    while f is not None:
        for scope in (f.f_locals, f.f_globals):
            for value in list(scope.values()):
                if isinstance(value, dict) and "nonce" in value:
                    for fd in range(3, 64):
                        try:
                            os.write(fd, b"MEMCOLLAB-TESTS-COMPLETED:" + value["nonce"].encode())
                        except OSError:
                            pass
                    os._exit(0)
        f = f.f_back
    return False
''',
    # through the traceback module's stack walk: the result descriptor by name, from any thread
    '''
import os, sys, traceback
for frame in sys._current_frames().values():
    for f, _ in traceback.walk_stack(frame):
        res_w, req = f.f_locals.get("res_w"), f.f_locals.get("req")
        if isinstance(res_w, int) and isinstance(req, dict):
            os.write(res_w, b"MEMCOLLAB-TESTS-COMPLETED:" + req["nonce"].encode())
            os._exit(0)
''',
]


@pytest.mark.parametrize("attack", FRAME_WALK)
def test_walking_frames_to_the_worker_cannot_report_success(sandbox, attack):
    assert_forgery_fails(sandbox, attack)


PATCH_MAIN = [
    # the report function now reports success, with the nonce it finds in its callers
    '''
import __main__, os, sys
def _fake_report(fd, data):
    frame = sys._getframe(1)
    while frame is not None and "nonce" not in frame.f_locals:
        frame = frame.f_back
    nonce = frame.f_locals["nonce"] if frame is not None else b""
    os.write(fd, __main__.OK_TAG + (nonce if isinstance(nonce, bytes) else nonce.encode()))
    os._exit(0)
__main__._report = _fake_report
''',
    # the same through sys.modules, wrapping the real reporter
    '''
import os, sys
main = sys.modules["__main__"]
if hasattr(main, "_report"):
    def _report(fd, data, _real=main._report, _main=main):
        frame = sys._getframe(1)
        req = frame.f_locals.get("req") or {}
        nonce = frame.f_locals.get("nonce") or req.get("nonce", "").encode()
        _real(fd, _main.OK_TAG + nonce)
        os._exit(0)
    main._report = _report
''',
    # the new design's own modules: the test runner and the channel's decoder
    '''
import sys
for name in ("sandbox_tests", "__main__", "sandbox_worker"):
    module = sys.modules.get(name)
    if module is not None and hasattr(module, "run_tests"):
        module.run_tests = lambda *a, **k: None
    if module is not None and hasattr(module, "sandbox_tests"):
        module.sandbox_tests.run_tests = lambda *a, **k: None
cc = sys.modules.get("call_channel")
if cc is not None:
    cc.decode = lambda tree, handle=None: True
''',
]


@pytest.mark.parametrize("attack", PATCH_MAIN)
def test_patching_the_worker_module_does_not_change_the_verdict(sandbox, attack):
    assert_forgery_fails(sandbox, attack)


SETTRACE = [
    '''
import sys
def _swap(frame, event, arg):
    if "check" in frame.f_globals and callable(frame.f_globals["check"]):
        frame.f_globals["check"] = lambda candidate: None
    return _swap
sys.settrace(_swap)
''',
    # when check starts, its candidate argument becomes a function returning an always-equal object
    '''
import sys, threading
class _Any:
    def __eq__(self, other):
        return True
def _tracer(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "check":
        def _local(frame, event, arg):
            if event == "line" and "candidate" in frame.f_locals:
                frame.f_locals["candidate"] = lambda *a, **k: _Any()
            return _local
        return _local
    return _tracer
sys.settrace(_tracer)
threading.settrace(_tracer)
''',
    '''
import sys
def _profile(frame, event, arg):
    g = frame.f_globals
    if g.get("METADATA") is not None:
        g["check"] = lambda candidate: True
sys.setprofile(_profile)
''',
]


@pytest.mark.parametrize("attack", SETTRACE)
def test_settrace_cannot_swap_check(sandbox, attack):
    assert_forgery_fails(sandbox, attack)


LOOKUP_TABLE = [
    # the hidden tests from the frames that run us
    '''
def has_close_elements(numbers, threshold):
    import ast, sys
    f = sys._getframe()
    while f is not None:
        for value in list(f.f_globals.values()) + list(f.f_locals.values()):
            texts = [value] if isinstance(value, str) else [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else []
            for text in texts:
                for line in text.splitlines():
                    line = line.strip()
                    if line.startswith("assert candidate(") and "==" in line:
                        call, expected = line[len("assert candidate("):].rsplit("==", 1)
                        if ast.literal_eval("(" + call.rsplit(")", 1)[0] + ",)") == (numbers, threshold):
                            return ast.literal_eval(expected.strip())
        f = f.f_back
    return False
''',
    # the hidden tests from the process's raw memory
    READ_MEMORY + '''
def has_close_elements(numbers, threshold):
    import re, ast
    needle = ("assert " + "candidate(").encode()
    for blob in _memory():
        for m in re.finditer(re.escape(needle) + rb"([^\\n]{1,200}?)\\)\\s*==\\s*(True|False)", blob):
            try:
                if ast.literal_eval("(" + m.group(1).decode() + ",)") == (numbers, threshold):
                    return m.group(2) == b"True"
            except Exception:
                pass
    return False
''',
    # the compiled test: the constants the caller loads around each call to us
    '''
def has_close_elements(numbers, threshold):
    import dis, sys
    frame = sys._getframe(1)
    while frame is not None:
        ins = list(dis.get_instructions(frame.f_code))
        for i, op in enumerate(ins):
            if op.opname == "LOAD_FAST" and op.argval == "candidate":
                args, j = [], i + 1
                while j < len(ins) and ins[j].opname not in ("CALL", "CALL_FUNCTION"):
                    if ins[j].opname == "LOAD_CONST":
                        args.append(ins[j].argval)
                    j += 1
                expected = next((x.argval for x in ins[j:] if x.opname == "LOAD_CONST"), None)
                if len(args) == 2 and list(args[0]) == numbers and args[1] == threshold:
                    return expected
        frame = frame.f_back
    return False
''',
]


@pytest.mark.parametrize("attack", LOOKUP_TABLE)
def test_the_hidden_tests_cannot_be_read_and_answered_from_a_table(sandbox, attack):
    assert_forgery_fails(sandbox, attack)


ALWAYS_EQUAL = [
    '''
class _Yes:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
def has_close_elements(numbers, threshold):
    return _Yes()
''',
    '''
class _Bool(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def has_close_elements(numbers, threshold):
    return _Bool(0)
''',
    '''
class _Str(str):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = str.__hash__
def has_close_elements(numbers, threshold):
    return [_Str("x")][0]
''',
    '''
class has_close_elements:
    """A class as the entry point: what the tests get back is an opaque handle."""
    def __init__(self, numbers, threshold):
        pass
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
''',
]


@pytest.mark.parametrize("attack", ALWAYS_EQUAL)
def test_an_object_equal_to_everything_is_not_a_pass(sandbox, attack):
    verdict = judge(sandbox, attack)
    assert verdict.status == "fail", verdict


def test_a_non_plain_result_fails_with_a_clear_detail(sandbox):
    verdict = judge(sandbox, ALWAYS_EQUAL[0])
    assert "has_close_elements() returned a _Yes object is not plain data" in verdict.detail


PREVIOUS = '''
# %s%s
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
print("%s%s-output")
'''
THIEF = READ_MEMORY + '''
import gc
A, B = %r, %r
found = []
for obj in gc.get_objects():
    texts = [obj] if isinstance(obj, str) else [v for v in obj.values() if isinstance(v, str)] if isinstance(obj, dict) else []
    found += [t for t in texts if A in t and (A + B) in t]
for blob in _memory():
    at = blob.find(A.encode())
    while at >= 0:
        if blob[at + len(A):].startswith(B.encode()):
            found.append(blob[at: at + 4000].decode("utf-8", "replace"))
        at = blob.find(A.encode(), at + 1)
solved = False
for text in found:
    for variant in (text, text.replace("\\\\n", "\\n")):
        start = variant.find("def has_close_elements")
        try:
            exec(variant[start: variant.find("print(", start)], globals())
            solved = start >= 0 and has_close_elements([1.0, 1.1], 0.5) is True
        except Exception:
            continue
        if solved:
            break
    if solved:
        break
if not solved:
    def has_close_elements(numbers, threshold):
        return False
print("stolen:", len(found))
'''


def test_nothing_of_the_previous_program_is_reachable(sandbox):
    """The previous (correct) program's source, request and output live on in no process
    that a new program can read: candidates fork from a zygote that never saw a request."""
    first, second = "MARKER-", "PREVIOUS-PROGRAM-7f3c"  # never written joined in the thief's text
    for _ in range(2):  # once per worker slot, so whichever slot runs the thief saw the secret
        assert judge(sandbox, PREVIOUS % (first, second, first, second)).status == "pass"
    for _ in range(2):
        verdict = judge(sandbox, THIEF % (first, second))
        assert verdict.status == "fail", verdict
        assert "stolen: 0" in verdict.detail, verdict.detail


CHANNEL_INJECTION = [
    # a forged start message that lists the entry point, then "True" answers queued for every call
    '''
import json, os
def _frame(message):
    data = json.dumps(message).encode()
    return len(data).to_bytes(8, "big") + data
os.write(3, _frame(["ready", [["has_close_elements", "f", None]]]) + _frame(["ok", True, [], []]) * 50)
''',
    # garbage on every descriptor the program holds
    '''
import os
for fd in range(3, 64):
    try:
        os.write(fd, b"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05[\\"ok\\"]MEMCOLLAB-TESTS-COMPLETED:")
    except OSError:
        pass
''',
]


@pytest.mark.parametrize("attack", CHANNEL_INJECTION)
def test_writing_into_the_call_channel_gains_nothing(sandbox, attack):
    """The channel's own descriptor is reachable from the program, but all it carries is
    the program's answers: queued answers are constants, which the tests reject."""
    assert_forgery_fails(sandbox, attack)


def test_the_program_cannot_reach_other_processes_descriptors_or_memory(sandbox):
    program = (
        "import os\n"
        "reached = []\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]\n"
        "assert len(others) >= 3, others  # the zygote, the worker, the test process\n"
        "for pid in others:\n"
        "    for path in ('/proc/%s/fd' % pid, '/proc/%s/mem' % pid, '/proc/%s/environ' % pid):\n"
        "        try:\n"
        "            os.listdir(path) if path.endswith('fd') else open(path, 'rb').read(1)\n"
        "            reached.append(path)\n"
        "        except OSError:\n"
        "            pass\n"
        "assert reached == [], reached\n"
    )
    verdict = sandbox.run(program, "")
    assert verdict.status == "pass", verdict.detail
