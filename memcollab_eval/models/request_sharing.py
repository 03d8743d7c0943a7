"""Generate each distinct (prompt, settings) once per ``generate_until`` call.

Why: when retrieval abstains, a memory twin's prompt is byte-identical to its no-memory twin's,
and lm-eval hands both to the model in the same call; in the default job that was 18 of 20 memory
prompts, about 45% of the compute spent generating the same answers again. Without
``use_cache`` nothing else catches it.

The grouping is by a key the backend computes from everything that decides a completion (the
prompt, stop strings, token limit and the resolved sampler arguments). For sampling the key
includes the request's seed: requests without an explicit seed get distinct seeds, so repeated
samples of one prompt stay distinct samples (what a user asking for several samples wants);
requests that name the same seed would produce the same text anyway and are shared.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SharedPlan:
    """Which requests to actually generate, and where each request's answer comes from.

    ``unique[j]`` is the request index generated for group ``j``; ``source[i]`` is the group whose
    answer request ``i`` receives. ``shared`` counts requests answered by another's generation.
    """

    unique: tuple[int, ...]
    source: tuple[int, ...]

    @property
    def shared(self) -> int:
        return len(self.source) - len(self.unique)

    def is_copy(self, index: int) -> bool:
        """True when request ``index`` reuses an earlier request's generation."""
        return self.unique[self.source[index]] != index


def plan_sharing(keys: Sequence[Hashable]) -> SharedPlan:
    """Group equal keys; the first request of each group (in request order) is generated."""
    first: dict[Hashable, int] = {}
    unique: list[int] = []
    source: list[int] = []
    for index, key in enumerate(keys):
        group = first.get(key)
        if group is None:
            group = first[key] = len(unique)
            unique.append(index)
        source.append(group)
    return SharedPlan(unique=tuple(unique), source=tuple(source))
