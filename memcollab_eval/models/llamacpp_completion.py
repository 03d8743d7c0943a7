"""When does one sequence stop, and what is its text? The per-request rules of batched decoding.

Why a module of its own: batched decoding must stop each sequence exactly where
``Llama.create_completion`` (the sequential path, ``n_parallel=1``) would, or batched and
sequential runs of the same greedy tokens would give different answers and different usage
records. The rules, as llama-cpp-python 0.3 applies them token by token:

1. an end-of-generation token ends the request (``finish_reason="stop"``) and is not counted;
2. otherwise the token is counted and its bytes appended;
3. while the text ends inside a multi-byte UTF-8 character, the stop-string and length checks are
   skipped for as many tokens as bytes are missing (a counter that only runs down, so a token
   that completes the character early still skips its check: kept, since this is what the
   sequential path does);
4. the first stop string of the request's list that occurs in the text cuts it there ("stop");
5. ``max_tokens`` counted tokens end it with ``finish_reason="length"``.

The final text is decoded with ``errors="ignore"``, like the sequential path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# (bytes in the character, lead-byte bit pattern) for 2-, 3- and 4-byte UTF-8 characters
_UTF8_LEADS = ((2, 0b1100_0000), (3, 0b1110_0000), (4, 0b1111_0000))


def missing_utf8_bytes(text: bytes) -> int:
    """How many bytes the last (possibly incomplete) multi-byte character of ``text`` still
    lacks, judged from its last three bytes; 0 when it ends on a complete character."""
    missing = 0
    tail = text[-3:]
    for offset, byte in enumerate(tail):
        distance = len(tail) - offset  # 3, 2, 1: bytes from this one to the end, itself included
        for width, pattern in _UTF8_LEADS:
            if width > distance and byte & pattern == pattern:
                missing = width - distance
    return missing


@dataclass
class CompletionTracker:
    """Follows one request's generated tokens and says when and why it stops."""

    max_tokens: int
    stop: Sequence[str] = ()
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    finish_reason: str | None = None
    _stop_bytes: tuple[bytes, ...] = field(init=False, repr=False)
    _skip: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._stop_bytes = tuple(s.encode("utf-8") for s in self.stop if s)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token: int, piece: bytes, end_of_generation: bool) -> bool:
        """Take the next sampled token (``piece`` = its bytes); True when the request is finished."""
        if self.done:
            raise RuntimeError("push() after the request finished")
        if end_of_generation:
            self.finish_reason = "stop"
            return True
        self.tokens.append(int(token))
        self.text += piece
        missing = missing_utf8_bytes(self.text)
        if missing:
            self._skip = missing
        if self._skip > 0:
            self._skip -= 1
            return False
        present = [s for s in self._stop_bytes if s in self.text]
        if present:
            self.text = self.text[: self.text.index(present[0])]
            self.finish_reason = "stop"
            return True
        if len(self.tokens) >= self.max_tokens:
            self.finish_reason = "length"
            return True
        return False

    def force_finish(self, reason: str) -> None:
        """End the request from outside (e.g. its sequence reached the context window)."""
        if not self.done:
            self.finish_reason = reason

    def decoded(self) -> str:
        return self.text.decode("utf-8", errors="ignore")
