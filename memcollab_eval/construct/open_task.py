"""The open-ended training task that ships with the project: ``concepts``, 36 questions that ask
*why* or *what the difference is* (18 about math, 18 about Python programming), written for this
project (``construct/data/README.md``).

Why it exists: MemCollab's preference rule needs a verifier, and an explanation has none. These
questions have no single checkable answer, so a bank built from them needs another preference
signal (``preference=judge`` or ``preference=labels``); each row carries the key points a good
answer covers, which the judge's rubric shows as a reference. Questions are categorized with the
evaluation's categorizer (math rows carry their MATH subject), so their lessons land in the same
taxonomy as the math and code lessons and are retrieved like them.

The adapters here mirror :mod:`memcollab_eval.adapters`' ``BenchmarkSpec`` (prompt, text, domain),
and :func:`task_spec` is the one lookup construction uses: a pool problem names either an
evaluation benchmark or one of these.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memcollab_eval.adapters import BenchmarkSpec, get_spec

CONCEPTS_FILE = "concepts.jsonl"
CONCEPTS_ROWS = 36
CONCEPTS_SHA256 = "25763ba188bca352431044fb876b796a5ec9d1afdb7d4c397b12a35b06b78570"

OPEN_INSTRUCTION = (
    "Answer the following question about {topic}. Explain your reasoning in one short paragraph "
    "(at most 150 words); an example helps.\n\nQuestion: {question}"
)


class OpenTaskDataError(ValueError):
    """The shipped open-ended questions are missing or edited."""


@dataclass(frozen=True)
class OpenConceptSpec(BenchmarkSpec):
    """An explanation question: no gold answer, no tests, a reference list of key points."""

    def problem_id(self, doc: dict, split: str = "train") -> str:
        return str(doc["id"])

    def text(self, doc: dict) -> str:
        return doc["question"]

    def prompt(self, doc: dict) -> str:
        topic = "mathematics" if self.domain == "math" else "Python programming"
        return OPEN_INSTRUCTION.format(topic=topic, question=self.text(doc))

    def subject(self, doc: dict) -> str | None:
        return doc.get("subject")

    def reference(self, doc: dict) -> str:
        """The key points a good answer covers (shown to the judge)."""
        return "\n".join(f"- {p}" for p in doc.get("key_points", ()))


OPEN_SPECS: dict[str, OpenConceptSpec] = {
    "concepts_math": OpenConceptSpec("concepts_math", "math", "", None, "train", CONCEPTS_FILE, 256),
    "concepts_code": OpenConceptSpec("concepts_code", "code", "", None, "train", CONCEPTS_FILE, 256),
}


def task_spec(name: str) -> BenchmarkSpec:
    """The adapter of a pool problem's benchmark: an evaluation benchmark or an open-ended task."""
    return OPEN_SPECS.get(name) or get_spec(name)


def is_open_ended(name: str) -> bool:
    """True for a task without a verifier (its trajectories need a judge or human labels)."""
    return name in OPEN_SPECS


def reference_text(benchmark: str, doc: dict[str, Any]) -> str:
    """What the judge may see besides the answer: the key points of an open-ended question; nothing
    for math and code, whose gold answer or tests would turn the judge into the verifier."""
    spec = OPEN_SPECS.get(benchmark)
    return spec.reference(doc) if spec is not None else ""


@lru_cache(maxsize=1)
def concept_rows() -> tuple[tuple[str, str, dict[str, Any]], ...]:
    """(problem id, benchmark, row) of every shipped question, its sha256 checked once per process."""
    resource = importlib.resources.files("memcollab_eval.construct") / "data" / CONCEPTS_FILE
    if not resource.is_file():
        raise OpenTaskDataError(f"the open-ended task file memcollab_eval/construct/data/{CONCEPTS_FILE} is missing: "
                                "reinstall memcollab-eval (pip install -e . from a checkout)")
    data = resource.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != CONCEPTS_SHA256:
        raise OpenTaskDataError(f"memcollab_eval/construct/data/{CONCEPTS_FILE} has sha256 {found}, expected "
                                f"{CONCEPTS_SHA256}: the file was edited; restore it from the repository")
    out = []
    for row in (json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()):
        benchmark = f"concepts_{row['domain']}"
        out.append((OPEN_SPECS[benchmark].problem_id(row), benchmark, row))
    return tuple(out)
