"""Token accounting of generation requests: per request, and totals over a run.

Kept apart from the backend so that anything reading usage (the evaluate summary, the build's
cost figures, tests) does not need llama.cpp importable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationUsage:
    """Token accounting for one ``generate_until`` request.

    ``truncated`` is True when generation stopped because it ran out of tokens (the request's
    ``max_gen_toks`` or the context window), not because of a stop string or end-of-turn token:
    such an answer is probably cut off. ``context_truncated`` is True when the prompt itself did
    not fit into ``n_ctx`` and lost tokens from its start.
    """

    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    finish_reason: str
    max_gen_toks: int
    context_truncated: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UsageSummary:
    """Totals over all recorded generation requests."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    truncated: int
    truncation_rate: float
    context_truncated: int
    seconds: float
    completion_tokens_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_usage(records: Sequence[GenerationUsage]) -> UsageSummary:
    """Aggregate per-request usage; rates are 0.0 for an empty list rather than NaN."""
    n = len(records)
    completion = sum(r.completion_tokens for r in records)
    seconds = sum(r.seconds for r in records)
    truncated = sum(r.truncated for r in records)
    return UsageSummary(
        requests=n,
        prompt_tokens=sum(r.prompt_tokens for r in records),
        completion_tokens=completion,
        truncated=truncated,
        truncation_rate=truncated / n if n else 0.0,
        context_truncated=sum(r.context_truncated for r in records),
        seconds=seconds,
        completion_tokens_per_second=completion / seconds if seconds > 0 else 0.0,
    )
