"""The candidate's process: runs the program, then answers the test process's calls.

Why a process of its own: whatever the program does to its interpreter (replace
``builtins.exec``, patch ``__main__``, ``sys.settrace``, walk frames) stays in this
process, which holds no test, no secret and no way to report a verdict. It was forked
from the worker's zygote, which has never seen a request, so nothing of an earlier
program is in its memory either. The program's own top-level code (imports, prints)
runs as it would in a script; stdout and stderr go to the output pipe, never to the
call channel (a descriptor of its own).

Runs inside the sandbox: standard library only.
"""

from __future__ import annotations

import builtins
import os
import sys
import traceback
import types
from typing import Any, NoReturn

import call_channel as cc


class _Server:
    """The program's namespace and the objects the tests were handed (by handle)."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.objects: dict[int, Any] = {}
        self.handle_by_id: dict[int, int] = {}

    def known(self, obj: Any) -> int | None:
        return self.handle_by_id.get(id(obj))

    def register(self, obj: Any) -> int:
        hid = self.handle_by_id.get(id(obj))
        if hid is None:
            hid = len(self.objects) + 1
            self.objects[hid] = obj  # kept alive: its id() stays unique
            self.handle_by_id[id(obj)] = hid
        return hid

    def resolve(self, hid: int, type_name: str) -> Any:
        if hid not in self.objects:
            raise cc.ChannelError(f"unknown object handle #{hid}")
        return self.objects[hid]

    def listing(self, wanted: list[str]) -> list[list[Any]]:
        """How the tests should see each name they use that the program defines."""
        out: list[list[Any]] = []
        for name in wanted:
            if name not in self.scope or name.startswith("__"):
                continue
            value = self.scope[name]
            if isinstance(value, types.ModuleType):
                if isinstance(getattr(value, "__name__", None), str):
                    out.append([name, "m", value.__name__])
            elif isinstance(value, type):
                out.append([name, "c", None])
            elif callable(value):
                out.append([name, "f", None])
            else:
                try:
                    out.append([name, "v", cc.encode(value, self.known)])
                except cc.NotPlainData:
                    out.append([name, "v", ["h", self.register(value), type(value).__name__]])
        return out

    def target(self, ref: list[Any]) -> Any:
        kind, key = ref
        if kind == "n":
            if key not in self.scope:
                raise NameError(f"name {key!r} is not defined")
            return self.scope[key]
        return self.resolve(int(key), "")

    def answer(self, message: list[Any]) -> list[Any]:
        op = message[0]
        try:
            if op == "call":
                return self._call(message[1], message[2], message[3], message[4])
            if op == "getattr":
                value = getattr(self.resolve(int(message[1]), ""), str(message[2]))
                return ["ok", cc.encode(value, self.register), [], []]
            if op == "setattr":
                setattr(self.resolve(int(message[1]), ""), str(message[2]), cc.decode(message[3], self.resolve))
                return ["ok", None, [], []]
        except cc.NotPlainData as exc:
            return ["bad", str(exc)]
        except Exception as exc:  # the candidate's exception, as type and message
            return ["exc", type(exc).__name__, _text(exc)]
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the program quit
            return ["exit", _describe_exit(exc)]
        raise cc.ChannelError(f"unknown request {op!r}")

    def _call(self, ref: list[Any], label: str, args_tree: list[Any], kwargs_tree: list[list[Any]]) -> list[Any]:
        fn = self.target(ref)
        args = [cc.decode(t, self.resolve) for t in args_tree]
        kwargs = {str(k): cc.decode(t, self.resolve) for k, t in kwargs_tree}
        result = fn(*args, **kwargs)
        if isinstance(fn, type):  # a constructor: the tests get an opaque handle
            result_tree = ["h", self.register(result), type(result).__name__]
        else:
            try:
                result_tree = cc.encode(result, self.known)
            except cc.NotPlainData as exc:
                raise cc.NotPlainData(f"{label}() returned {exc}") from None
        changed = [[i, after] for i, (before, arg) in enumerate(zip(args_tree, args, strict=False))
                   if _mutable_tree(before) and (after := self._after(label, arg)) != before]
        changed_kw = [[k, after] for k, before in kwargs_tree
                      if _mutable_tree(before) and (after := self._after(label, kwargs[str(k)])) != before]
        return ["ok", result_tree, changed, changed_kw]

    def _after(self, label: str, arg: Any) -> Any:
        try:
            return cc.encode(arg, self.known)
        except cc.NotPlainData as exc:
            raise cc.NotPlainData(f"{label}() left an argument holding {exc}") from None


def _mutable_tree(tree: Any) -> bool:
    """Arguments that can change in place (an iterator argument is consumed, not copied back)."""
    return type(tree) is list and bool(tree) and tree[0] in ("l", "t", "s", "ba", "d", "cn", "od", "dd")


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:2000]
    except Exception:  # a __str__ that raises
        return f"<{type(exc).__name__} with an unprintable message>"


def _describe_exit(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) before the tests completed"
    return f"{type(exc).__name__} before the tests completed"


def serve(fd: int) -> NoReturn:
    """Run the program the test process sends, then answer its calls until it hangs up."""
    try:
        message = cc.recv(fd)
        if type(message) is not list or len(message) != 3 or message[0] != "run":
            _exit(2)
        program, wanted = str(message[1]), [str(n) for n in message[2]]
    except BaseException:
        _exit(2)
    me = os.getpid()
    scope: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), scope)
    except BaseException as exc:  # noqa: BLE001 - the program failed (or quit) before its tests
        if os.getpid() != me:
            _exit(0)
        scope.clear()  # release what the program held (a MemoryError) before formatting
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            detail = _describe_exit(exc)
        else:
            detail = f"{type(exc).__name__}: {_text(exc)}"[:2000] + "\n" + traceback.format_exc(limit=-3)[-2000:]
        _send_or_exit(fd, ["died", detail])
        _exit(1)
    if os.getpid() != me:  # a forked copy of the program must not answer calls too
        _exit(0)
    server = _Server(scope)
    _send_or_exit(fd, ["ready", server.listing(wanted)])
    while True:
        try:
            message = cc.recv(fd)
        except BaseException:
            _exit(0)
        try:
            reply = server.answer(message) if type(message) is list and message else ["bad", "empty request"]
        except (cc.ChannelError, KeyError, IndexError, TypeError, ValueError) as exc:
            reply = ["bad", f"malformed request: {exc}"]
        _send_or_exit(fd, reply)


def _flush() -> None:
    """The program's prints are buffered in this process: flush before every exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _exit(code: int) -> NoReturn:
    _flush()
    os._exit(code)


def _send_or_exit(fd: int, message: list[Any]) -> None:
    _flush()
    try:
        cc.send(fd, message)
    except cc.NotPlainData as exc:
        try:
            cc.send(fd, ["bad", str(exc)])
        except BaseException:
            _exit(3)
    except BaseException:
        _exit(3)
