"""The plain-data channel between the test process and the candidate's process.

Why it exists: a verdict can only be trusted if the program under test never runs in
the process that decides it. The tests therefore call the candidate's functions in
another process, and what crosses between the two is *data only*: builtin scalars,
str/bytes, and lists/tuples/dicts/sets of them, plus two tagged extras (exceptions as
type name and message; opaque handles to candidate objects). Nothing that crosses can
carry code or behaviour: an object with its own ``__eq__`` cannot be encoded at all,
and the decoder is ``json`` plus a fixed table of tags, so it cannot run code either.

This file runs inside the sandbox (both processes import it), so it depends only on
the standard library. Framing: an 8-byte big-endian length, then UTF-8 JSON.
"""

from __future__ import annotations

import base64
import builtins
import collections
import json
import os
from collections.abc import Callable
from typing import Any

MAX_MESSAGE_BYTES = 64 << 20  # one call's arguments or result
MAX_DEPTH = 100  # nesting of containers in one value
MAX_ITERATOR_ITEMS = 1_000_000

_HEADER = 8


class NotPlainData(TypeError):
    """A value that may not cross the channel (it could carry behaviour)."""


class ChannelError(Exception):
    """A malformed or oversized message, or the other side went away."""


class RemoteHandle:
    """A candidate object the tests may hold and pass back, never look inside.

    Equality and hashing are identity, truthiness is refused: no candidate code can
    decide a comparison made in the test process. Attribute reads and writes are
    forwarded (MBPP 367 and 927 build trees of the candidate's ``Node`` in their setup
    code); what comes back is again plain data or a handle.
    """

    __slots__ = ("_hid", "_kind", "_channel")

    def __init__(self, hid: int, kind: str, channel: Any) -> None:
        object.__setattr__(self, "_hid", hid)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_channel", channel)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._channel.getattr(self._hid, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._channel.setattr(self._hid, name, value)

    def __bool__(self) -> bool:
        raise TypeError(f"the truth value of an opaque candidate object ({self._kind}) is not available to the tests")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __repr__(self) -> str:
        return f"<candidate {self._kind} object #{self._hid}>"


_SCALAR_TAGS = {"i", "f", "c", "b", "ba"}


def encode(value: Any, handle_of: Callable[[Any], int | None] | None = None) -> Any:
    """``value`` as a JSON-ready tree; ``NotPlainData`` names what could not be encoded.

    ``handle_of(obj)`` may give an object a handle number (the candidate side knows
    which objects the tests were handed); otherwise only plain data encodes. Types are
    matched exactly: a subclass of ``int`` or ``list`` could override ``__eq__``.
    """
    return _encode(value, handle_of, 0, set())


def _encode(v: Any, handle_of: Callable[[Any], int | None] | None, depth: int, path: set[int]) -> Any:
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return ["i", hex(v)]
    if t is float:
        return ["f", v.hex()]
    if t is complex:
        return ["c", v.real.hex(), v.imag.hex()]
    if t is bytes:
        return ["b", base64.b64encode(v).decode("ascii")]
    if t is bytearray:
        return ["ba", base64.b64encode(bytes(v)).decode("ascii")]
    if t is range:
        return ["r", hex(v.start), hex(v.stop), hex(v.step)]
    if isinstance(v, type) and _builtin_type(v.__name__) is v:  # int, str, list...: MBPP 533 passes them
        return ["ty", v.__name__]
    if handle_of is not None:
        hid = handle_of(v)
        if hid is not None:
            return ["h", hid, type(v).__name__]
    if depth >= MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH} levels")
    if id(v) in path:
        raise NotPlainData("a container that contains itself")
    path.add(id(v))
    try:
        sub = depth + 1
        if t is list or t is tuple or t is set or t is frozenset:
            tag = {list: "l", tuple: "t", set: "s", frozenset: "fs"}[t]
            return [tag, *(_encode(x, handle_of, sub, path) for x in v)]
        if t in _DICT_TAGS:
            flat: list[Any] = [_DICT_TAGS[t]]
            if t is collections.defaultdict:
                factory = v.default_factory
                flat.append(factory.__name__ if isinstance(factory, type) and _builtin_type(factory.__name__) is factory else None)
            for k, x in v.items():
                flat.append(_encode(k, handle_of, sub, path))
                flat.append(_encode(x, handle_of, sub, path))
            return flat
        if _is_builtin_iterator(v):
            items = []
            for x in v:
                if len(items) >= MAX_ITERATOR_ITEMS:
                    raise NotPlainData(f"an iterator with more than {MAX_ITERATOR_ITEMS} items")
                items.append(_encode(x, handle_of, sub, path))
            return ["it", *items]
    finally:
        path.discard(id(v))
    raise NotPlainData(f"a {_type_name(v)} object is not plain data (builtin scalars, str/bytes, list/tuple/dict/set)")


# The standard library's dict types (MBPP 40, 88, 902 return a Counter, 653 a
# defaultdict): rebuilt as the same stdlib type, so they behave as the original did.
_DICT_TAGS = {dict: "d", collections.Counter: "cn", collections.OrderedDict: "od", collections.defaultdict: "dd"}
_DICT_TYPES = {tag: t for t, tag in _DICT_TAGS.items()}


def _builtin_type(name: str) -> type | None:
    found = getattr(builtins, name, None)
    return found if isinstance(found, type) and not issubclass(found, BaseException) else None


def _is_builtin_iterator(v: Any) -> bool:
    """Generators and the builtin lazy iterators (map, filter, zip, ...): drained in the
    candidate's process and rebuilt as a list iterator, so ``list(result)`` works and
    ``result == [...]`` stays False, as it was for the original object."""
    t = type(v)
    if t.__name__ == "generator" and t.__module__ == "builtins":
        return True
    return t.__module__ in ("builtins", "itertools") and hasattr(t, "__next__") and hasattr(t, "__iter__")


def _type_name(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"


def decode(tree: Any, handle: Callable[[int, str], Any] | None = None) -> Any:
    """Rebuild a value from ``encode``'s tree; ``ChannelError`` on anything malformed.

    ``handle(hid, type_name)`` turns a handle into an object (the test side's
    ``RemoteHandle``, the candidate side's own object); without it handles are refused.
    """
    try:
        return _decode(tree, handle)
    except ChannelError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise ChannelError(f"malformed value on the call channel: {type(exc).__name__}: {exc}") from None


def _decode(node: Any, handle: Callable[[int, str], Any] | None) -> Any:
    if node is None or type(node) is bool or type(node) is str:
        return node
    if type(node) is not list or not node or type(node[0]) is not str:
        raise ChannelError(f"malformed value on the call channel: {str(node)[:80]}")
    tag, rest = node[0], node[1:]
    if tag in _SCALAR_TAGS or tag in ("r", "h", "ty"):
        if not all(type(x) in (str, int) for x in rest):
            raise ChannelError(f"malformed {tag!r} value on the call channel")
    if tag == "i":
        (text,) = rest
        return int(text, 16)
    if tag == "f":
        (text,) = rest
        return float.fromhex(text)
    if tag == "c":
        real, imag = rest
        return complex(float.fromhex(real), float.fromhex(imag))
    if tag == "b":
        (text,) = rest
        return base64.b64decode(text, validate=True)
    if tag == "ba":
        (text,) = rest
        return bytearray(base64.b64decode(text, validate=True))
    if tag == "r":
        start, stop, step = rest
        return range(int(start, 16), int(stop, 16), int(step, 16))
    if tag == "ty":
        (name,) = rest
        found = _builtin_type(name)
        if found is None:
            raise ChannelError(f"{name!r} is not a builtin type")
        return found
    if tag == "dd":
        if not rest or not (rest[0] is None or type(rest[0]) is str):
            raise ChannelError("a defaultdict without its factory")
        factory = None if rest[0] is None else _builtin_type(rest[0])
        return collections.defaultdict(factory, dict(_pairs([_decode(x, handle) for x in rest[1:]])))
    if tag == "h":
        if handle is None:
            raise ChannelError("an object handle where only plain data is allowed")
        hid, type_name = rest
        return handle(int(hid), str(type_name))
    items = [_decode(x, handle) for x in rest]
    if tag == "l":
        return items
    if tag == "t":
        return tuple(items)
    if tag == "s":
        return set(items)
    if tag == "fs":
        return frozenset(items)
    if tag == "it":
        return iter(items)
    if tag in _DICT_TYPES:
        return _DICT_TYPES[tag](dict(_pairs(items)))  # via a dict: Counter(pairs) would count the pairs
    raise ChannelError(f"unknown tag {tag!r} on the call channel")


def _pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    if len(items) % 2:
        raise ChannelError("a dict with an odd number of keys and values")
    return list(zip(items[0::2], items[1::2], strict=False))


# ------------------------------------------------------------------ framing


def send(fd: int, message: Any) -> None:
    """Write one message (a JSON-ready tree) to ``fd``."""
    data = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_MESSAGE_BYTES:
        raise NotPlainData(f"a message of {len(data)} bytes exceeds the channel's {MAX_MESSAGE_BYTES} bytes")
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def recv(fd: int) -> Any:
    """Read one message from ``fd``; ``EOFError`` when the other side closed it cleanly."""
    header = _read_exactly(fd, _HEADER, eof_ok=True)
    if header is None:
        raise EOFError("the other side closed the call channel")
    size = int.from_bytes(header, "big")
    if size > MAX_MESSAGE_BYTES:
        raise ChannelError(f"a message of {size} bytes exceeds the channel's {MAX_MESSAGE_BYTES} bytes")
    body = _read_exactly(fd, size, eof_ok=False)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ChannelError(f"a message that is not JSON: {exc}") from None


def _read_exactly(fd: int, size: int, *, eof_ok: bool) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, min(size - len(chunks), 1 << 20))
        if not chunk:
            if eof_ok and not chunks:
                return None
            raise EOFError("the call channel closed in the middle of a message")
        chunks += chunk
    return bytes(chunks)
