"""The build's categorizer stage under ``categorizer=llm``: a model re-tags the training problems.

The pool (and the held-out problems of validation) are first tagged by the keyword rules, which
cost nothing. With ``categorizer=llm`` the categorizer model (the summarizer unless
``categorizer_model`` names another) is asked for the category of every problem without a
subject label, and its answers replace the keyword ones before anything is paired or gated: an
entry's category is then the one evaluation's ``retrieval.categorizer=llm`` will compute for a
query, by the same model and prompt (``categorize_llm.PROMPT_VERSION``).

The answers are kept in ``categories.<model identity>.v<prompt version>.jsonl`` in the work
directory, one record per problem id, appended as each batch is answered: an interrupted build
asks only what is missing, and builds of several banks in one work directory share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from memcollab_eval.categorize_llm import Categorizer, CategoryQuery
from memcollab_eval.construct.open_task import task_spec
from memcollab_eval.construct.pools import PoolProblem
from memcollab_eval.jsonl_store import append_records, read_records


class PoolCategorizer:
    """Re-tags pool problems with an LLM categorizer, caching each answer in ``path``."""

    def __init__(self, categorizer: Categorizer, path: Path, batch: int = 32) -> None:
        self.categorizer, self.path, self.batch = categorizer, path, max(1, batch)
        self.known: dict[str, tuple[str, str]] = {}
        if path.exists():
            for r in read_records(path, ("id", "category", "subcategory")):
                self.known[r["id"]] = (r["category"], r["subcategory"])
        self.asked = 0

    @staticmethod
    def labeled(problem: PoolProblem) -> bool:
        """MATH rows carry their subject: it stays the category, as under the keyword rules."""
        return bool(task_spec(problem.benchmark).subject(problem.doc))

    def query(self, problem: PoolProblem) -> CategoryQuery:
        spec = task_spec(problem.benchmark)
        return CategoryQuery(spec.text(problem.doc), spec.domain, spec.name)

    def apply(self, problems: Sequence[PoolProblem]) -> list[PoolProblem]:
        """The problems with the model's categories (labeled ones unchanged), asking the model only
        about problems it has not answered before, ``batch`` at a time."""
        todo = [p for p in problems if not self.labeled(p) and p.id not in self.known]
        for start in range(0, len(todo), self.batch):
            chunk = todo[start:start + self.batch]
            cats = self.categorizer.categorize_many([self.query(p) for p in chunk])
            records = [{"id": p.id, "category": c.category, "subcategory": c.subcategory}
                       for p, c in zip(chunk, cats, strict=True)]
            append_records(self.path, records)
            self.known.update((r["id"], (r["category"], r["subcategory"])) for r in records)
            self.asked += len(chunk)
        out = []
        for p in problems:
            if p.id in self.known and not self.labeled(p):
                category, sub = self.known[p.id]
                p = replace(p, category=category, subcategory=sub)
            out.append(p)
        return out


def cache_path(work: Path, identity: str, prompt_version: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in identity)
    return work / f"categories.{safe}.v{prompt_version}.jsonl"


__all__ = ["PoolCategorizer", "cache_path"]
