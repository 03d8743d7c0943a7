"""The build stages' records: what each stage writes to its JSONL file and the next one reads.

Why frozen dataclasses: the stages meet only through these files (a killed build resumes from
them), so the file layout is the contract. Each record type writes itself with ``to_json``
(field order as in the files written before these types existed, so old work directories
resume unchanged) and reads itself with ``from_json``, which names the missing field. The pool's
problem record is :class:`memcollab_eval.construct.pools.PoolProblem`; a contrastive pair is
:class:`memcollab_eval.construct.preference.Pair`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Self

Key = tuple[str, str, int]  # (problem_id, model, sample_idx)


class RecordError(ValueError):
    """A stage record without a field it needs."""


def _take(cls: type, obj: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    missing = [k for k in required if k not in obj]
    if missing:
        raise RecordError(f"{cls.__name__} record without field(s) {missing}")
    return {f.name: obj[f.name] for f in fields(cls) if f.name in obj}


class _KeyedRecord:
    """What the records keyed by a trajectory share: the key, writing as in the file, and reading
    with the missing fields named (subclasses are frozen dataclasses with ``REQUIRED``)."""

    REQUIRED: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return (self.problem_id, self.model, int(self.sample_idx))  # type: ignore[attr-defined]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(**_take(cls, obj, cls.REQUIRED))


@dataclass(frozen=True)
class Trajectory(_KeyedRecord):
    """One model's response to one pool problem (``trajectories.jsonl``); for the agent protocol
    the text is the episode transcript."""

    problem_id: str
    model: str
    sample_idx: int
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool | None = None
    seconds: float = 0.0

    REQUIRED = ("problem_id", "model", "sample_idx", "text")



@dataclass(frozen=True)
class VerdictRecord(_KeyedRecord):
    """The verifier's verdict on one trajectory (``verdicts.jsonl``)."""

    problem_id: str
    model: str
    sample_idx: int
    status: str
    extracted: str | None = None
    detail: str = ""
    seconds: float = 0.0

    REQUIRED = ("problem_id", "model", "sample_idx", "status")

    @property
    def passed(self) -> bool:
        return self.status == "pass"



@dataclass(frozen=True)
class DistillRecord:
    """The summarizer's lessons for one pair (``distill.jsonl``): status ``ok`` or ``malformed``."""

    pair: str
    prompt_version: str
    status: str
    lessons: tuple[dict[str, str], ...]
    replies: tuple[str, ...] = ()
    seconds: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    sample: int = 0  # which candidate reply of the pair (0: decoded as the build decodes; others sampled)

    REQUIRED = ("pair", "status", "lessons")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["lessons"], out["replies"] = list(self.lessons), list(self.replies)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DistillRecord:
        values = _take(cls, obj, cls.REQUIRED)
        values.setdefault("prompt_version", "v1")  # files from before prompt versions were recorded
        values["lessons"] = tuple(values["lessons"])
        values["replies"] = tuple(values.get("replies", ()))
        return cls(**values)


@dataclass(frozen=True)
class JudgeRecord(_KeyedRecord):
    """A judge model's score of one trajectory against a rubric (``judgments.jsonl``): status ``ok``
    (``score`` set) or ``unparsed`` (the reply named no score; the trajectory takes part in no pair).
    Kept per judge and rubric version, so changing either judges again and a resumed build does not."""

    problem_id: str
    model: str
    sample_idx: int
    judge: str
    rubric_version: str
    status: str
    score: int | None
    reply: str = ""
    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    REQUIRED = ("problem_id", "model", "sample_idx", "judge", "rubric_version", "status", "score")

