"""The test process: runs the hidden tests against the candidate through the call channel.

Why: the verdict is decided here, in a process that never runs a line of the program
under test. The tests see the program's functions and classes as proxies that send
plain data to the candidate's process and get plain data back; code the benchmark
supplies (a HumanEval prompt's helpers such as ``poly``, MBPP's ``test_setup_code``)
runs here from the benchmark's own text, so the program cannot redefine what the
tests check with. Runs inside the sandbox: standard library only.

Name resolution in the tests' namespace, last one wins:
  1. the program's names that the tests use (functions and classes as proxies, modules
     re-imported here from this process's own ``sys.path``, plain values as copies);
     a name that shadows a builtin (``abs``, ``set``) only when it is the entry point;
  2. the support code's definitions;
  3. the entry point, always the program's (a HumanEval prompt defines its stub);
  4. the test code's own definitions (``check``, ``METADATA``).
"""

from __future__ import annotations

import builtins
import collections
import importlib
import types
from typing import Any

import call_channel as cc


class CandidateGone(BaseException):
    """The candidate's process ended or broke the channel: the tests cannot complete.
    A BaseException so a test's ``except Exception`` cannot swallow it."""


class SandboxSetupFailed(BaseException):
    """The candidate's process could not be confined, so the program never ran."""


class CandidateException(Exception):
    """An exception of a type the test process does not have (the program's own class)."""


class Channel:
    """The test side of the call channel."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.handles: dict[int, cc.RemoteHandle] = {}

    def handle(self, hid: int, type_name: str) -> cc.RemoteHandle:
        found = self.handles.get(hid)
        if found is None:
            found = self.handles[hid] = cc.RemoteHandle(hid, type_name, self)
        return found

    def _encode_arg(self, label: str, value: Any) -> Any:
        try:
            return cc.encode(value, self._handle_id)
        except cc.NotPlainData as exc:
            raise CandidateGone(f"the tests passed {label}() {exc}; only plain data crosses to the program") from None

    def _handle_id(self, obj: Any) -> int | None:
        if type(obj) is cc.RemoteHandle and self.handles.get(obj._hid) is obj:
            return obj._hid
        return None

    def ask(self, message: list[Any], label: str) -> list[Any]:
        try:
            cc.send(self.fd, message)
            reply = cc.recv(self.fd)
        except cc.NotPlainData as exc:
            raise CandidateGone(f"{label}: {exc}") from None
        except (EOFError, OSError) as exc:
            raise CandidateGone(f"the program's process exited during {label} before the tests completed ({exc})") from None
        except cc.ChannelError as exc:
            raise CandidateGone(f"{label}: {exc}") from None
        if type(reply) is not list or not reply or type(reply[0]) is not str:
            raise CandidateGone(f"{label}: malformed reply from the program's process")
        return reply

    def call(self, ref: list[Any], label: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        message = ["call", ref, label, [self._encode_arg(label, a) for a in args],
                   [[k, self._encode_arg(label, v)] for k, v in kwargs.items()]]
        reply = self.ask(message, f"a call to {label}()")
        result = self._result(reply, label)
        try:
            for index, tree in reply[2]:
                _assign_into(args[int(index)], cc.decode(tree, self.handle))
            for key, tree in reply[3]:
                _assign_into(kwargs[str(key)], cc.decode(tree, self.handle))
        except (cc.ChannelError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise CandidateGone(f"{label}(): malformed argument update: {exc}") from None
        return result

    def getattr(self, hid: int, name: str) -> Any:
        return self._result(self.ask(["getattr", hid, name], f"reading .{name}"), f".{name}")

    def setattr(self, hid: int, name: str, value: Any) -> None:
        self._result(self.ask(["setattr", hid, name, self._encode_arg(f".{name} =", value)], f"setting .{name}"), name)

    def _result(self, reply: list[Any], label: str) -> Any:
        kind = reply[0]
        if kind == "ok" and len(reply) == 4:
            try:
                return cc.decode(reply[1], self.handle)
            except cc.ChannelError as exc:
                raise CandidateGone(f"{label}: {exc}") from None
        if kind == "exc" and len(reply) == 3:
            raise _rebuild_exception(str(reply[1]), str(reply[2]))
        if kind == "bad" and len(reply) == 2:
            raise CandidateGone(f"not plain data: {reply[1]}")
        if kind == "exit" and len(reply) == 2:
            raise CandidateGone(f"the program raised {reply[1]}")
        raise CandidateGone(f"{label}: malformed reply from the program's process")


def _rebuild_exception(type_name: str, message: str) -> Exception:
    """The builtin exception of that name where one exists, else ``CandidateException``."""
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # e.g. UnicodeDecodeError wants five arguments
            pass
    return CandidateException(f"{type_name}: {message}")


def _assign_into(old: Any, new: Any) -> None:
    """Make ``old`` equal ``new`` in place, keeping nested containers' identity."""
    if type(old) is list and type(new) is list:
        if len(old) == len(new):
            for i, (a, b) in enumerate(zip(old, new, strict=False)):
                if _same_container(a, b):
                    _assign_into(a, b)
                elif a is not b:
                    old[i] = b
        else:
            old[:] = new
    elif type(old) in _DICTS and type(new) is type(old):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            if key in old and _same_container(old[key], value):
                _assign_into(old[key], value)
            else:
                old[key] = value
    elif type(old) is set and type(new) is set:
        old.clear()
        old.update(new)
    elif type(old) is bytearray and type(new) is bytearray:
        old[:] = new
    elif type(old) is tuple and type(new) is tuple and len(old) == len(new):
        for a, b in zip(old, new, strict=False):
            if _same_container(a, b):
                _assign_into(a, b)


_DICTS = (dict, collections.Counter, collections.OrderedDict, collections.defaultdict)


def _same_container(a: Any, b: Any) -> bool:
    return type(a) is type(b) and type(a) in (list, set, bytearray, tuple, *_DICTS)


class _Proxy:
    """Stands for one of the program's functions or classes in the tests' namespace."""

    def __init__(self, channel: Channel, name: str) -> None:
        self._channel, self.__name__, self.__qualname__ = channel, name, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(["n", self.__name__], self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<the program's {self.__name__}>"


def names_used(*sources: str) -> set[str]:
    """Every name the given code reads, in any nested function or class."""
    found: set[str] = set()
    todo = [compile(s, "<names>", "exec") for s in sources if s]
    while todo:
        code = todo.pop()
        found.update(code.co_names)
        found.update(code.co_varnames)
        found.update(code.co_freevars)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def run_tests(fd: int, program: str, test: str, support: str, entry_point: str | None) -> None:
    """Raise unless the tests complete; returning means they all passed."""
    channel = Channel(fd)
    wanted = sorted(names_used(support, test) | ({entry_point} if entry_point else set()))
    reply = channel.ask(["run", program, wanted], "the program's start")
    if reply[0] == "setup_failed" and len(reply) == 2:
        raise SandboxSetupFailed(str(reply[1]))
    if reply[0] == "died" and len(reply) == 2:
        raise CandidateGone(str(reply[1]))
    if reply[0] != "ready" or len(reply) != 2 or type(reply[1]) is not list:
        raise CandidateGone("the program's process did not start its call service")
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    defined: set[str] = set()
    for entry in reply[1]:
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
            raise CandidateGone("malformed name listing from the program's process")
        name, kind, payload = entry
        defined.add(name)
        if name == entry_point or (name in wanted and not hasattr(builtins, name)):
            _bind(namespace, channel, name, kind, payload)
    if support:
        exec(compile(support, "<support>", "exec"), namespace)
    if entry_point:
        if entry_point not in defined:
            raise NameError(f"the program does not define {entry_point!r}")
        namespace[entry_point] = _Proxy(channel, entry_point)
    exec(compile(test, "<test>", "exec"), namespace)
    check = namespace.get("check")
    if entry_point and isinstance(check, types.FunctionType) and check.__code__.co_filename == "<test>":
        check(namespace[entry_point])


def _bind(namespace: dict[str, Any], channel: Channel, name: str, kind: str, payload: Any) -> None:
    if kind in ("f", "c"):
        namespace[name] = _Proxy(channel, name)
    elif kind == "m" and type(payload) is str:
        try:
            namespace[name] = importlib.import_module(payload)
        except Exception:  # not importable here: the tests will see a NameError
            pass
    elif kind == "v":
        try:
            namespace[name] = cc.decode(payload, channel.handle)
        except cc.ChannelError as exc:
            raise CandidateGone(f"the program's {name}: {exc}") from None
