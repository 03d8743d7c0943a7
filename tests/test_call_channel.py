"""The plain-data channel between the tests and the program: what crosses, what cannot,
and how calls behave through it (in-place arguments, exceptions, helpers, handles)."""

from __future__ import annotations

import collections
import json
import math

import pytest

from memcollab_eval.verify import call_channel as cc


def roundtrip(value):
    return cc.decode(json.loads(json.dumps(cc.encode(value))))


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, pytest.param(10 ** 5000, id="int-5001-digits"), 1.5, -0.0, float("inf"), 1 + 2j, "héllo\udcff", b"\x00\xff", bytearray(b"ab"),
    [1, [2, (3, "x")]], (), {1: "a", (2, 3): [4]}, {1, 2}, frozenset({"a"}), range(1, 10, 3), int, str,
    collections.Counter("abca"), collections.OrderedDict(b=1, a=2), collections.defaultdict(list, {"k": [1]}),
])
def test_plain_values_cross_unchanged(value):
    back = roundtrip(value)
    assert type(back) is type(value) and back == value
    if isinstance(value, float) and value == 0:
        assert math.copysign(1, back) == -1


def test_nan_and_iterators():
    assert math.isnan(roundtrip(float("nan")))
    back = roundtrip(map(str, [1, 2]))
    assert back != ["1", "2"] and list(back) == ["1", "2"]  # an iterator stays an iterator
    assert roundtrip(collections.defaultdict(list))["new"] == []


class AlwaysEqual:
    def __eq__(self, other):
        return True


class SneakyInt(int):
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value", [AlwaysEqual(), SneakyInt(3), [1, AlwaysEqual()], {"k": SneakyInt(1)}, object(), len])
def test_objects_with_behaviour_cannot_cross(value):
    with pytest.raises(cc.NotPlainData, match="not plain data"):
        cc.encode(value)


def test_cycles_and_depth_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(cc.NotPlainData, match="contains itself"):
        cc.encode(loop)
    deep: list = []
    for _ in range(cc.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(cc.NotPlainData, match="nested deeper"):
        cc.encode(deep)


@pytest.mark.parametrize("tree", [
    ["pickle", "x"], ["i", 5], ["f"], ["s", ["l"]], ["d", ["i", "0x1"]], ["h", 1, "X"], ["ty", "exec"], ["ty", "ValueError"],
    {"a": 1}, 3, ["b", "not base64!"],
])
def test_the_decoder_refuses_malformed_trees(tree):
    with pytest.raises(cc.ChannelError):
        cc.decode(tree)


def test_handles_are_identity_only():
    class FakeChannel:
        def getattr(self, hid, name):
            return 42

    first, second = cc.RemoteHandle(1, "Pair", FakeChannel()), cc.RemoteHandle(2, "Pair", FakeChannel())
    assert first == first and first != second and first != 42 and len({first, second}) == 2
    assert first.a == 42  # forwarded to the program's process
    with pytest.raises(TypeError, match="truth value"):
        bool(first)


# ----------------------------------------------------------- calls through the sandbox


def test_in_place_mutation_is_copied_back(sandbox):
    program = "def bump(xs, nums, table):\n    nums.sort()\n    xs[0].append(9)\n    table['n'] = len(xs)\n"
    test = (
        "inner = [1]\nxs = [inner, [0]]\nnums = [3, 1, 2]\ntable = {}\nbump(xs, nums, table=table)\n"
        "assert nums == [1, 2, 3] and xs == [[1, 9], [0]] and table == {'n': 2}, (nums, xs, table)\n"
        "assert xs[0] is inner and inner == [1, 9]  # a nested list keeps its identity\n"
    )
    verdict = sandbox.run(program, test)
    assert verdict.status == "pass", verdict.detail


def test_exceptions_cross_as_builtin_types(sandbox):
    program = (
        "class Mine(Exception):\n    pass\n"
        "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    raise Mine('own')\n"
    )
    test = (
        "try:\n    f(-1)\nexcept ValueError as e:\n    assert str(e) == 'negative'\nelse:\n    assert False\n"
        "try:\n    f(1)\nexcept Exception as e:\n    assert 'Mine: own' in str(e)\n"
    )
    verdict = sandbox.run(program, test)
    assert verdict.status == "pass", verdict.detail


def test_prints_recursion_and_generators(sandbox):
    program = (
        "import sys\nprint('top level runs')\n"
        "def depth(n):\n    print('x' * 100)\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def gen(n):\n    yield from range(n)\n"
        "def loop():\n    return loop()\n"
    )
    test = (
        "assert depth(500) == 500\nassert list(gen(3)) == [0, 1, 2] and gen(3) != [0, 1, 2]\n"
        "try:\n    loop()\nexcept RecursionError:\n    pass\nelse:\n    assert False\n"
    )
    verdict = sandbox.run(program, test)
    assert verdict.status == "pass", verdict.detail
    ran = sandbox.execute("print('hello from the program')\n")
    assert ran.output.strip() == "hello from the program"


def test_a_call_that_never_returns_times_out(sandbox):
    verdict = sandbox.run("def f():\n    while True:\n        pass\n", "f()\n", timeout=1.0)
    assert verdict.status == "timeout"


def test_support_code_wins_over_the_program_for_helpers(sandbox):
    """HumanEval/32: the tests call the prompt's ``poly``; a program that redefines it
    (so any root looks right) is checked against the benchmark's own ``poly``."""
    support = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n\ndef find_zero(xs):\n    ''' stub '''\n"
    test = "def check(candidate):\n    assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n"
    cheat = support + "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 123.0\n"
    honest = support + "def find_zero(xs):\n    return -xs[0] / xs[1]\n"
    assert sandbox.run(honest, test, entry_point="find_zero", support=support).status == "pass"
    assert sandbox.run(cheat, test, entry_point="find_zero", support=support).status == "fail"


def test_a_program_cannot_shadow_the_builtins_the_tests_use(sandbox):
    program = "def abs(x):\n    return 0\n\ndef half(x):\n    return 1\n"
    assert sandbox.run(program, "assert abs(half(4) - 2) < 1e-9\n").status == "fail"
    # ...but the function under test may carry a builtin's name (MBPP 126 defines ``sum``)
    assert sandbox.run("def sum(a, b):\n    return a - b\n", "assert sum(5, 3) == 2\n", entry_point="sum").passed


def test_candidate_classes_become_opaque_handles(sandbox):
    """MBPP 601 passes ``Pair`` objects back; MBPP 367/927 build ``Node`` trees in setup."""
    program = (
        "class Node:\n    def __init__(self, v):\n        self.v, self.left = v, None\n"
        "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n"
        "def same(a, b):\n    return a is b\n"
    )
    support = "root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)\n"
    test = (
        "assert depth(root) == 3\nassert root.left.v == 2\nassert same(root.left, root.left)\n"
        "assert root.left is root.left and root != Node(1)\n"
    )
    verdict = sandbox.run(program, test, support=support)
    assert verdict.status == "pass", verdict.detail
