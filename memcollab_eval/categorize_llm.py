"""The optional LLM categorizer: a model names the task's category; the keyword rules the subcategory.

MemCollab's retrieval keeps only entries of the task's category, so a bank's tags and a run's
queries must come from the same categorizer. The default is the keyword scorer in
``categorize.py`` (0.65 subject accuracy on MATH500 from the text alone); this module is the
alternative the paper describes, a model asked to pick one category of the fixed taxonomy. It is
selected with ``categorizer=llm`` at build time and ``retrieval.categorizer=llm`` at evaluation,
and the bank's manifest records which one tagged it (``stats.categorizer``).

What stays fixed: the taxonomy (a reply outside it is not a category), MATH's own subject label
when a row has one (the model is asked only about unlabeled text, as the keyword rules are), and
the subcategory, which the keyword rules pick inside the model's category. A reply that names no
category falls back to the keyword category and is counted (``CategorizerStats.unparsed``), so a
confused model degrades to the default rather than to noise.

The model comes in through a ``generate(prompts) -> replies`` callable: the evaluate job and the
build wrap their lm-eval model in it (``lm_generate``), tests use the scripted double. All the
questions of a call go to the model at once, so batching backends answer them together; answers
are cached by (domain, benchmark, text), as lm-eval asks for the same docs several times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from memcollab_eval.categorize import (
    CODE_CATEGORIES,
    MATH_SUBJECTS,
    Category,
    categorize,
    code_text,
    subcategory,
)
from memcollab_eval.retrieval_llm import greedy_replies

KINDS = ("keywords", "llm")  # retrieval.categorizer and the build's categorizer: the rules, or a model
# v1 named the kind of task ("Classify the math problem below into ..."): the 0.5B answered "Math" to
# 351 of the 500 MATH500 problems. v2 asks for the subject and says in a few words what each covers;
# it was written against MATH *train* problems only (scripts/measure_categorizer.py --data).
_PROMPTS = {
    1: """Classify the {what} below into exactly one of these categories:
{names}

{label}:
{text}

Answer with the category name only.""",
    2: """{label}:
{text}

Which one of these {kinds} does it belong to?
{names}

Answer with the {kind}'s name only, exactly as written above.""",
}
PROMPT_VERSION = 2
# what each name covers (prompt v2): topic words only, so the model need not guess from the name
_SCOPE = {
    "Algebra": "linear and quadratic equations, functions, lines and slopes, exponents and radicals",
    "Counting & Probability": "counting, arrangements, combinations, probability",
    "Geometry": "triangles, circles, polygons, areas, volumes, angles",
    "Intermediate Algebra": "polynomials and their roots, inequalities, logarithms, conics, series, complex numbers",
    "Number Theory": "divisibility, primes, remainders and modular arithmetic, number bases, digits",
    "Prealgebra": "arithmetic, fractions, decimals, percents, averages, everyday word problems",
    "Precalculus": "trigonometry, vectors, matrices, polar coordinates, complex numbers in polar form",
    "string manipulation": "characters, substrings, words, case, formatting",
    "list/array processing": "filtering, mapping and combining lists, tuples or arrays",
    "math/number theory": "arithmetic, primes, digits, sequences, geometry formulas",
    "data structures": "dictionaries, sets, heaps, stacks, queues, linked structures",
    "sorting/searching": "sorting, searching, minimum and maximum",
    "recursion/dynamic programming": "recursion, dynamic programming, counting ways",
    "regex/parsing": "regular expressions, parsing and validating text",
}
_DESCRIBE = {"math": ("math problem", "Problem", "subjects", "subject"),
             "code": ("programming task", "Task", "categories", "category")}
GenerateFn = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class CategoryQuery:
    """One task to categorize, with what the keyword categorizer is given."""

    text: str
    domain: str  # "math" | "code"
    benchmark: str = ""
    subject: str | None = None  # MATH's label: kept as the category, never asked


class Categorizer(Protocol):
    """Categorizes tasks; ``name`` is what a bank's manifest and a run's record say tagged them."""

    name: str

    def categorize_many(self, queries: Sequence[CategoryQuery]) -> list[Category]: ...


def category_names(domain: str) -> tuple[str, ...]:
    if domain == "math":
        return MATH_SUBJECTS
    if domain == "code":
        return CODE_CATEGORIES
    raise ValueError(f"unknown domain {domain!r}; expected 'math' or 'code'")


def _check_version(version: int) -> None:
    if version not in _PROMPTS:
        raise ValueError(f"unknown categorizer prompt version {version}; known: {sorted(_PROMPTS)}")


def category_prompt(query: CategoryQuery, version: int = PROMPT_VERSION) -> str:
    _check_version(version)
    what, label, kinds, kind = _DESCRIBE[query.domain]
    names = category_names(query.domain)
    listed = "\n".join(f"- {n}" for n in names) if version == 1 else \
        "\n".join(f"- {n} ({_SCOPE[n]})" for n in names)
    return _PROMPTS[version].format(what=what, names=listed, label=label, text=query.text.strip(), kinds=kinds,
                                    kind=kind)


def _key(name: str) -> str:
    """A spelling-tolerant form: lower case, '&' as 'and', punctuation and hyphens as spaces."""
    return " ".join(re.sub(r"[^a-z]+", " ", name.lower().replace("&", " and ")).split())


_ALIASES = {"pre algebra": "prealgebra", "pre calculus": "precalculus", "counting and probabilities":
            "counting and probability", "combinatorics and probability": "counting and probability"}


def parse_category(reply: str, names: Sequence[str]) -> str | None:
    """The category the reply names first (``None`` when it names none). At one position the
    longer name wins, and names are matched as whole words, so "Intermediate Algebra" is not read
    as "Algebra" and "Prealgebra" is not read as "Algebra"; "Pre-Algebra" is read as "Prealgebra"."""
    text = f" {_key(reply)} "
    for alias, name in _ALIASES.items():
        text = text.replace(f" {alias} ", f" {name} ")
    found = [(text.find(f" {_key(n)} "), -len(n), n) for n in names]
    found = [f for f in found if f[0] >= 0]
    return min(found)[2] if found else None


@dataclass
class CategorizerStats:
    asked: int = 0  # questions put to the model (labeled rows and cache hits are not asked)
    unparsed: int = 0  # replies naming no category: the keyword category was used
    replies: list[str] = field(default_factory=list)

    def record(self) -> dict[str, int]:
        return {"asked": self.asked, "unparsed": self.unparsed}


class LMCategorizer:
    """A :class:`Categorizer` backed by a model. ``identity`` names the model in records
    (``llm:<identity>:v<prompt version>``), so a bank tagged by one model can be told apart
    from a run categorized by another."""

    def __init__(self, generate: GenerateFn, identity: str, prompt_version: int = PROMPT_VERSION) -> None:
        _check_version(prompt_version)
        self.generate = generate
        self.prompt_version = prompt_version
        self.name = f"llm:{identity}:v{prompt_version}"
        self.stats = CategorizerStats()
        self._cache: dict[tuple[str, str, str], Category] = {}

    def categorize_many(self, queries: Sequence[CategoryQuery]) -> list[Category]:
        out: list[Category | None] = [None] * len(queries)
        ask: dict[tuple[str, str, str], list[int]] = {}
        for i, q in enumerate(queries):
            if q.subject:  # a labeled row: the label is the category, as under the keyword rules
                out[i] = categorize(q.text, domain=q.domain, benchmark=q.benchmark, subject=q.subject)
                continue
            key = (q.domain, q.benchmark, q.text)
            if key in self._cache:
                out[i] = self._cache[key]
            else:
                ask.setdefault(key, []).append(i)
        if ask:
            firsts = [queries[idx[0]] for idx in ask.values()]
            replies = self.generate([category_prompt(q, self.prompt_version) for q in firsts])
            if len(replies) != len(firsts):
                raise RuntimeError(f"the categorizer model returned {len(replies)} replies for {len(firsts)} tasks")
            for (key, idx), q, reply in zip(ask.items(), firsts, replies, strict=True):
                self.stats.asked += 1
                self.stats.replies.append(reply)
                name = parse_category(reply, category_names(q.domain))
                if name is None:
                    self.stats.unparsed += 1
                    cat = categorize(q.text, domain=q.domain, benchmark=q.benchmark)
                else:
                    body = code_text(q.text) if q.domain == "code" else q.text
                    cat = Category(name, subcategory(body, q.domain, name))
                self._cache[key] = cat
                for i in idx:
                    out[i] = cat
        return [c for c in out if c is not None]


def lm_generate(lm: Any, *, chat: bool = True, max_gen_toks: int = 16) -> GenerateFn:
    """``generate`` over an lm-eval model: short greedy replies, one ``generate_until`` call for all
    prompts (retrieval_llm.greedy_replies). ``chat``: render each prompt with the model's chat template."""
    return lambda prompts: greedy_replies(lm, prompts, chat=chat, max_gen_toks=max_gen_toks)


__all__ = ["KINDS", "PROMPT_VERSION", "Categorizer", "CategorizerStats", "CategoryQuery", "LMCategorizer",
           "category_names", "category_prompt", "lm_generate", "parse_category"]
