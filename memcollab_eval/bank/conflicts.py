"""Contradicting lessons: one entry enforces what another, for the same category and model pair, says to avoid.

Two such entries pull a model in opposite directions on the same problems, and retrieval may put
both in one prompt. The rule, stated so a reviewer can apply it by hand:

1. Only live entries are compared (not retired, not superseded): retiring or superseding one of the
   two is how a conflict is resolved.
2. Only entries of the same category (case- and space-insensitive) and the same model pair, in
   either order ({preferred, unpreferred}), are compared.
3. Each side of a lesson is reduced to its content words: lower-case words, English stop words and
   generic lesson words (``GENERIC_WORDS``: "step", "answer", "carefully", ...) dropped, endings
   ``-ing``, ``-ed``, ``-s`` folded ("checking", "checked", "checks" -> "check"). Its
   *polarity* is the parity of the negating words it holds (``NEGATING_WORDS``: "not", "skip",
   "ignore", "without", "wrong", ...), which are not content words: "avoid skipping the unit check" then says
   the same as "enforce checking the unit", not the opposite.
4. A enforces what B avoids when A's enforce and B's avoid share at least ``MIN_SHARED`` (2) content
   words, the shared words are at least ``MIN_OVERLAP`` (0.6) of the shorter side, and the two sides
   have the same polarity. Either direction makes the pair a conflict.

It is a word-overlap rule, so it finds restated contradictions, not paraphrased ones, and it is
reported as a warning (``bank check --strict`` fails on it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from memcollab_eval.bank.governance import superseded_ids
from memcollab_eval.bank.store import MemoryEntry

MIN_SHARED = 2
MIN_OVERLAP = 0.6
NEGATING_WORDS = frozenset({
    "not", "no", "never", "without", "nor", "cannot", "dont", "don", "skip", "skipping", "skipped", "skips",
    "ignore", "ignoring", "ignored", "ignores", "omit", "omitting", "omitted", "omits", "forget", "forgetting",
    "forgot", "forgets", "neglect", "neglecting", "neglected", "miss", "missing", "missed", "fail", "failing",
    "failed", "fails", "lack", "lacking", "instead", "avoid", "avoiding", "drop", "dropping", "dropped",
    "wrong", "wrongly", "incorrect", "incorrectly", "mistakenly", "isnt", "arent", "wasnt", "werent", "doesnt",
    "didnt", "cant", "couldnt", "shouldnt", "wouldnt", "wont", "hasnt", "havent",
})
GENERIC_WORDS = frozenset({
    "step", "answer", "problem", "solution", "result", "final", "make", "sure", "always", "careful", "carefully",
    "correct", "correctly", "properly", "explicitly", "clearly", "given", "question", "task", "value", "use",
    "using", "used", "uses",
})
_WORD = re.compile(r"[a-z][a-z0-9']*")
# ENGLISH_STOP_WORDS holds no, not, never, without...: polarity is read before stop words go
_STOP = frozenset(ENGLISH_STOP_WORDS) - NEGATING_WORDS


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith(("ss", "us", "is")):
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class Side:
    words: frozenset[str]
    polarity: int  # 0 or 1


def side(text: str) -> Side:
    """Content words and polarity of one side of a lesson (rule 3)."""
    words, negations = set(), 0
    for raw in _WORD.findall(text.lower()):
        w = raw.replace("'", "")
        if w in NEGATING_WORDS:
            negations += 1
            continue
        if w in _STOP or w in GENERIC_WORDS:
            continue
        stem = _stem(w)
        if stem not in GENERIC_WORDS:
            words.add(stem)
    return Side(frozenset(words), negations % 2)


@dataclass(frozen=True)
class Conflict:
    first: MemoryEntry   # enforces ...
    second: MemoryEntry  # ... what this one avoids
    shared: tuple[str, ...]
    overlap: float


def contradicts(enforce: Side, avoid: Side) -> tuple[tuple[str, ...], float] | None:
    """(shared words, overlap) when ``enforce`` asks for what ``avoid`` forbids (rule 4), else None."""
    shared = enforce.words & avoid.words
    if len(shared) < MIN_SHARED or enforce.polarity != avoid.polarity:
        return None
    overlap = len(shared) / min(len(enforce.words), len(avoid.words))
    return (tuple(sorted(shared)), overlap) if overlap >= MIN_OVERLAP else None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def find_conflicts(entries: Sequence[MemoryEntry]) -> list[Conflict]:
    """Every conflicting pair of live entries (rules 1-4), in bank order."""
    gone = superseded_ids(entries)
    live = [e for e in entries if e.status != "retired" and e.id not in gone]
    groups: dict[tuple[str, frozenset[str]], list[MemoryEntry]] = {}
    for e in live:
        groups.setdefault((_norm(e.category), frozenset((e.preferred_model, e.unpreferred_model))), []).append(e)
    out = []
    for group in groups.values():
        sides = [(e, side(e.enforce), side(e.avoid)) for e in group]
        for i, (a, a_enf, a_avo) in enumerate(sides):
            for b, b_enf, b_avo in sides[i + 1:]:
                hit = contradicts(a_enf, b_avo)
                if hit is not None:
                    out.append(Conflict(a, b, *hit))
                    continue
                hit = contradicts(b_enf, a_avo)
                if hit is not None:
                    out.append(Conflict(b, a, *hit))
    return out


__all__ = ["GENERIC_WORDS", "MIN_OVERLAP", "MIN_SHARED", "NEGATING_WORDS", "Conflict", "contradicts",
           "find_conflicts", "side"]
