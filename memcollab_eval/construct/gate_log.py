"""Every candidate lesson's way through the gates: ``gates.<bank>.jsonl`` in the work directory.

The manifest counts rejections by reason, which says how many lessons each gate stopped but not
which ones, nor what they said. When a bank comes out small or empty, the question is what the
gates saw: was the lesson vague, did it fail its own problem, did it break held-out problems?
This file answers that lesson by lesson (one line per candidate, in pool, pair and reply order),
with the evidence each gate looked at, so a write-up can quote it without running anything again.
It is written whole (atomically) at the end of every build, replays included.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memcollab_eval.jsonl_store import read_records, write_atomic

ADMITTED = "admitted"


@dataclass
class Candidate:
    """One candidate lesson (or one reply that gave none: ``gate`` is then ``malformed``).
    ``gate`` names the gate that stopped it: a lint reason, ``near_duplicate``, ``failed_resolve``,
    ``failed_heldout``, ``failed_validation``, or ``admitted`` (``bank_id`` then names its entry)."""

    pair: str
    sample: int
    source_problem_id: str
    category: str
    enforce: str = ""
    avoid: str = ""
    difference: str = ""
    key: str = ""  # evidence.lesson_key: how the gate records name the lesson
    gate: str = ADMITTED
    evidence: dict[str, Any] = field(default_factory=dict)
    bank_id: str | None = None


class GateLog:
    """Collects the candidates as the stages decide on them; a lesson that passes a gate keeps
    ``admitted`` until a later gate stops it."""

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []

    def add(self, candidate: Candidate) -> Candidate:
        self.candidates.append(candidate)
        return candidate

    def _open(self, key: str) -> list[Candidate]:
        return [c for c in self.candidates if c.key == key and c.gate == ADMITTED]

    def record(self, key: str, stage: str, evidence: dict[str, Any], passed: bool) -> None:
        """What ``stage`` saw for the lesson ``key``; ``passed`` False stops it there."""
        for c in self._open(key):
            c.evidence[stage] = evidence
            if not passed:
                c.gate = f"failed_{stage}"

    def finish(self, entries: list[dict], key_of, otherwise: str) -> None:
        """Name the bank entry of every admitted candidate; one still open whose lesson is not among
        ``entries`` was dropped by ``otherwise`` (a gate that decides per group, not per lesson)."""
        ids = {key_of(e): e["id"] for e in entries}
        for c in self.candidates:
            if c.gate == ADMITTED:
                if c.key in ids:
                    c.bank_id = ids[c.key]
                else:
                    c.gate = otherwise

    def write(self, path: Path) -> None:
        write_atomic(path, "".join(json.dumps(asdict(c), sort_keys=True) + "\n" for c in self.candidates))


REQUIRED = ("pair", "sample", "source_problem_id", "category", "gate")


def read_gate_log(path: Path) -> list[Candidate]:
    """The candidates of a written log (for reports); a damaged line is named with its file and field."""
    known = set(Candidate.__dataclass_fields__)
    return [Candidate(**{k: v for k, v in r.items() if k in known}) for r in read_records(Path(path), REQUIRED)]


__all__ = ["ADMITTED", "Candidate", "GateLog", "read_gate_log"]
