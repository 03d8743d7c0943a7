"""The per-sample fields: what the memcollab tasks add to each lm-eval doc, by name and type.

Why one schema: lm-eval logs each sample's doc in its samples file, and that doc is the only
place where a sample's retrieval record and verdict survive the run. Three stages meet on it:
the task hooks write it (:mod:`memcollab_eval.evaluation.tasks`), the agent wrapper reads the
problem facts from it (:mod:`memcollab_eval.agent.agent_lm`), and the leaderboard and
attribution read it back from the samples files. Each of them names the fields through this
module, so a renamed or retyped field is one change here rather than a silent miss elsewhere.

The module imports nothing of the project: it sits below every stage that uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class SampleFields:
    """Names of the doc fields (all prefixed ``memcollab_``, so they cannot clash with a dataset's)."""

    # written by the process_docs hook, before generation
    ID = "memcollab_id"                  # str: the problem id (stable across runs; pairs twins)
    PROMPT = "memcollab_prompt"          # str: the user-turn text without memory
    MEMORY = "memcollab_memory"          # str: the rendered memory block ("" = no memory in the prompt)
    CATEGORY = "memcollab_category"      # str: the task category retrieval filtered by
    SUBCATEGORY = "memcollab_subcategory"
    RETRIEVED = "memcollab_retrieved"    # [{"id", "score", "text", "preferred_model", ...}] (RETRIEVED_KEYS), best
                                         # first; runs before the list form logged JSON text of [{"id", "score"}]
    ABSTAINED = "memcollab_abstained"    # bool: the memory twin's retrieval returned nothing
    FILTERED = "memcollab_filtered"      # {reason: n, ..., "lifecycle_ids": [id]}: candidates the access and
                                         # lifecycle screen removed (FILTERED_KEYS); only for a governed bank
                                         # or a run with retrieval.principal set, else absent
    DOMAIN = "memcollab_domain"          # "math" | "code": what the agent protocol needs
    VISIBLE_TEST = "memcollab_visible_test"
    SETUP_CODE = "memcollab_setup_code"
    # written by the process_results hook, after scoring
    VERDICT = "memcollab_verdict"        # {"status", "extracted", "detail"}
    TURNS = "memcollab_turns"            # int: assistant messages (1 for a single-turn response)
    EPISODE = "memcollab_episode"        # {"turns", "stopped", "blocks_run", "protocol_version"} (agent only)
    # optional, read when present: a backend that counts the memory's real tokens may add it
    MEMORY_TOKENS = "memcollab_memory_tokens"


# The keys of one logged retrieved entry, in order, with their types. Every entry carries all of
# them (empty strings when unknown): lm-eval turns the docs into a ``datasets.Dataset``, whose
# column needs one schema on every row, the empty lists of abstained problems included.
RETRIEVED_KEYS: dict[str, type] = {
    "id": str, "score": float, "text": str, "preferred_model": str, "unpreferred_model": str,
    "source_benchmark": str, "source_problem_id": str,
}


# The keys of the per-sample screen record: a count per reason (memcollab_eval/bank/governance.py), then the
# ids the lifecycle removed. Spelled out here because this module imports nothing of the project.
FILTER_REASONS = ("scope", "policy", "retired", "superseded", "not_yet_valid", "expired")
FILTERED_IDS = "lifecycle_ids"


@dataclass(frozen=True)
class RetrievedRef:
    """One retrieved entry as logged: its id and score, the text put in the prompt, the two
    models whose trajectories it was distilled from and the problem it came from ("" when a run
    logged only id and score)."""

    id: str
    score: float
    text: str = ""
    preferred_model: str = ""
    unpreferred_model: str = ""
    source_benchmark: str = ""
    source_problem_id: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "text": self.text,
                "preferred_model": self.preferred_model, "unpreferred_model": self.unpreferred_model,
                "source_benchmark": self.source_benchmark, "source_problem_id": self.source_problem_id}


@dataclass(frozen=True)
class ProblemFields:
    """What ``process_docs`` adds to a doc (see :class:`SampleFields` for each field)."""

    id: str
    prompt: str
    memory: str
    category: str
    subcategory: str
    retrieved: tuple[RetrievedRef, ...]
    abstained: bool
    domain: str
    visible_test: str
    setup_code: str
    filtered: dict[str, Any] | None = None  # SampleFields.FILTERED, written only when set

    def to_doc(self) -> dict[str, Any]:
        out = {
            SampleFields.ID: self.id,
            SampleFields.PROMPT: self.prompt,
            SampleFields.MEMORY: self.memory,
            SampleFields.CATEGORY: self.category,
            SampleFields.SUBCATEGORY: self.subcategory,
            SampleFields.RETRIEVED: [r.to_doc() for r in self.retrieved],
            SampleFields.ABSTAINED: self.abstained,
            SampleFields.DOMAIN: self.domain,
            SampleFields.VISIBLE_TEST: self.visible_test,
            SampleFields.SETUP_CODE: self.setup_code,
        }
        if self.filtered is not None:
            out[SampleFields.FILTERED] = self.filtered
        return out


def filtered_counts(value: object) -> dict[str, int]:
    """The per-reason counts of a logged ``memcollab_filtered`` (zeros when the field is absent)."""
    if not isinstance(value, dict):
        return dict.fromkeys(FILTER_REASONS, 0)
    try:
        return {r: int(value.get(r) or 0) for r in FILTER_REASONS}
    except (TypeError, ValueError):
        raise SampleFieldError(f"field {SampleFields.FILTERED}: the counts must be integers") from None


@dataclass(frozen=True)
class ScoreFields:
    """What ``process_results`` adds to a doc once the response is scored."""

    status: str
    extracted: str | None
    detail: str
    turns: int
    episode: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            SampleFields.VERDICT: {"status": self.status, "extracted": self.extracted, "detail": self.detail[:1000]},
            SampleFields.TURNS: self.turns,
        }
        if self.episode is not None:
            out[SampleFields.EPISODE] = self.episode
        return out


class SampleFieldError(ValueError):
    """A logged sample whose memcollab fields are malformed; the message names the field."""


def retrieved_refs(value: object) -> list[RetrievedRef]:
    """The entries of a logged ``memcollab_retrieved``, best first. Accepts the list form (since
    the entries carry their text and sources) and the JSON text of older runs (ids and scores)."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SampleFieldError(f"field {SampleFields.RETRIEVED} is not JSON ({exc.msg})") from None
    if not isinstance(value, list) or not all(isinstance(r, dict) and "id" in r for r in value):
        raise SampleFieldError(f"field {SampleFields.RETRIEVED} must be a list of {{\"id\", \"score\", ...}} objects")
    out = []
    for r in value:
        try:
            score = float(r.get("score", float("nan")))
        except (TypeError, ValueError):
            raise SampleFieldError(f"field {SampleFields.RETRIEVED}: entry {r['id']!r} has a score that is not a "
                                   "number") from None
        out.append(RetrievedRef(str(r["id"]), score, *(str(r.get(k) or "") for k in list(RETRIEVED_KEYS)[2:])))
    return out


def retrieved_ids(value: object) -> list[str]:
    """The entry ids of a logged ``memcollab_retrieved`` (either form, see :func:`retrieved_refs`)."""
    return [r.id for r in retrieved_refs(value)]


def sample_acc(sample: dict[str, Any]) -> float:
    """The sample's ``acc`` metric; a record without it must not count as a failure silently."""
    try:
        return float(sample["acc"])
    except (KeyError, TypeError, ValueError):
        raise SampleFieldError("field acc is missing or not a number") from None
