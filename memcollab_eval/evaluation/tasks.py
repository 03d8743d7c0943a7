"""lm-eval task variants: each benchmark's memory variant and its no-memory twin.

Both twins share one prompt template, ``{{memcollab_memory}}{{memcollab_prompt}}``; the
``process_docs`` hook fills ``memcollab_memory`` with the retrieved entries (memory
variant) or leaves it empty (twin), so the prompts differ in the memory text only.
The hook also records, per document, the retrieved entry ids and scores, the task
category and whether retrieval abstained; lm-eval logs the document with each sample.
Scoring (``process_results``) calls this project's verifiers and writes the verdict
into the logged document as well.

Both protocols use the same tasks: under ``protocol=agent`` the model is the
``memcollab_agent`` wrapper, which reads the domain and visible test from the doc
(``memcollab_domain``, ``memcollab_visible_test``, ``memcollab_setup_code``) and answers
with an episode transcript; ``process_results`` scores its final answer and reports
``turns`` (1 for a single-turn response).

The hook learns the bank, retrieval settings and target identity from a
``MemorySetup`` built before ``simple_evaluate`` (our CLI), or from environment
variables when the YAML files in ``tasks/`` are used with ``lm_eval --include_path``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import datasets

from memcollab_eval.adapters import BenchmarkSpec, get_spec
from memcollab_eval.agent.task_fields import agent_fields
from memcollab_eval.agent.transcript import decode_transcript
from memcollab_eval.bank.governance import Access, access_for
from memcollab_eval.bank.store import MemoryBank, load_bank
from memcollab_eval.categorize import Category, categorize
from memcollab_eval.categorize_llm import Categorizer, CategoryQuery
from memcollab_eval.retrieval_llm import EntryChooser
from memcollab_eval.retrieve import RetrievalConfig, Retriever, render_memory
from memcollab_eval.sample_fields import (
    FILTER_REASONS,
    FILTERED_IDS,
    RETRIEVED_KEYS,
    ProblemFields,
    RetrievedRef,
    ScoreFields,
)
from memcollab_eval.sample_fields import SampleFields as F
from memcollab_eval.scoring import score_response
from memcollab_eval.verify import SandboxConfig

PROMPT_TEMPLATE = "{{memcollab_memory}}{{memcollab_prompt}}"
METRICS = ("acc", "no_answer", "memory_injected", "turns")
# One schema for the retrieved entries on every row (a list of one struct), whatever the rows hold.
RETRIEVED_FEATURE = datasets.Features(
    {F.RETRIEVED: [{k: datasets.Value("float64" if t is float else "string") for k, t in RETRIEVED_KEYS.items()}]}
)[F.RETRIEVED]


FILTERED_FEATURE = datasets.Features(
    {F.FILTERED: {**{r: datasets.Value("int64") for r in FILTER_REASONS}, FILTERED_IDS: [datasets.Value("string")]}}
)[F.FILTERED]


def problem_features(governed: bool = False) -> dict[str, Any]:
    """The ``datasets`` type of each field ``process_docs`` adds, so that no column's type is
    guessed from its rows (a guess gives the no-memory twin's all-empty lists the type "list of null").
    ``governed``: the memory twin also logs what the access and lifecycle screen removed."""
    text = datasets.Value("string")
    return {F.ID: text, F.PROMPT: text, F.MEMORY: text, F.CATEGORY: text, F.SUBCATEGORY: text,
            F.RETRIEVED: RETRIEVED_FEATURE, F.ABSTAINED: datasets.Value("bool"), F.DOMAIN: text,
            F.VISIBLE_TEST: text, F.SETUP_CODE: text, **({F.FILTERED: FILTERED_FEATURE} if governed else {})}


@dataclass(frozen=True)
class MemorySetup:
    """What the memory variant needs: a bank, how to retrieve, and who the target is."""

    bank: MemoryBank
    retrieval: RetrievalConfig
    target_identity: str
    chooser: EntryChooser | None = None  # the target model, for retrieval.selector=llm (the evaluate job sets it)
    access: Access | None = None  # who retrieves (principal, groups, external target, as-of); None: from retrieval
    categorizer: Categorizer | None = None  # retrieval.categorizer=llm (the evaluate job sets it); None: keywords


def task_name(benchmark: str, with_memory: bool) -> str:
    return f"{benchmark}_{'memcollab' if with_memory else 'nomemory'}"


class ProcessDocs:
    """The ``process_docs`` hook: adds the prompt, memory and retrieval record to each doc."""

    def __init__(self, spec: BenchmarkSpec, setup: MemorySetup | None, evaluated: frozenset[int] | None = None):
        self.spec = spec
        self.setup = setup
        # The doc indices the run scores (None: all). lm-eval processes the whole split before it applies
        # its limit, and under selector=llm each retrieval is a generation: 1,319 of them for GSM8K's test
        # split when the run scores 30. Docs outside get no retrieval; they are never shown to the model.
        self.evaluated = evaluated
        self._retriever: Retriever | None = None
        self._done: dict[str, Any] = {}  # lm-eval asks for the docs several times per run
        self._asked: dict[str, Category] = {}  # query text -> the LLM categorizer's answer (scored docs)

    def __deepcopy__(self, memo: dict) -> ProcessDocs:
        """The hook itself, not a copy. lm-eval deep-copies every task config when it loads it; the
        hook holds a bank, its retriever and, for ``selector=llm``, the run's model, which owns
        locks and a llama.cpp context that cannot be copied (and must not be: one model per run)."""
        return self

    def scored(self, index: int) -> bool:
        return self.evaluated is None or index in self.evaluated

    def retriever(self) -> Retriever | None:
        if self.setup is not None and self._retriever is None:
            self._retriever = Retriever(self.setup.bank, self.setup.retrieval, self.setup.target_identity,
                                        chooser=self.setup.chooser, access=self.setup.access)
        return self._retriever

    def prepare(self, dataset) -> None:
        """Hand the retriever every query of the split at once (embedded in batches; one model
        call for selector=llm), before the docs are processed one by one."""
        retriever = self.retriever()
        if retriever is None:
            return
        docs = [doc for i, doc in enumerate(dataset) if self.scored(i)]
        categorizer = self.setup.categorizer
        if categorizer is not None:  # one call for every scored doc: a batching backend answers them together
            asks = [CategoryQuery(self.spec.text(d), self.spec.domain, self.spec.name, self.spec.subject(d))
                    for d in docs if self.spec.text(d) not in self._asked]
            self._asked.update((q.text, c) for q, c in zip(asks, categorizer.categorize_many(asks), strict=True))
        queries = []
        for doc in docs:
            text = self.spec.text(doc)
            queries.append((text, self.category(doc) if self.setup.retrieval.use_categories else None))
        retriever.prepare(queries)

    def category(self, doc: dict) -> Category:
        """The doc's category: the LLM categorizer's answer when it was asked (scored docs of the
        memory twin under retrieval.categorizer=llm), else the keyword rules'."""
        text = self.spec.text(doc)
        if text in self._asked:
            return self._asked[text]
        return categorize(text, domain=self.spec.domain, benchmark=self.spec.name, subject=self.spec.subject(doc))

    def fields(self, doc: dict, *, evaluated: bool = True) -> dict[str, Any]:
        text = self.spec.text(doc)
        cat = self.category(doc)
        retrieved, filtered = [], None
        retriever = self.retriever()
        if retriever is not None:
            query_cat = cat if self.setup.retrieval.use_categories else None
            retrieved = retriever.retrieve(text, category=query_cat) if evaluated else []
            if retriever.governed:
                screen = retriever.filtered(query_cat)
                filtered = {**screen.counts, FILTERED_IDS: list(screen.lifecycle_ids)}
        memory = render_memory(retrieved)
        facts = agent_fields(self.spec, doc)
        return ProblemFields(
            id=self.spec.problem_id(doc), prompt=self.spec.prompt(doc), memory=memory + "\n\n" if memory else "",
            category=cat.category, subcategory=cat.subcategory,
            retrieved=tuple(RetrievedRef(r.entry.id, r.score, r.entry.render(), r.entry.preferred_model,
                                         r.entry.unpreferred_model, r.entry.source_benchmark,
                                         r.entry.source_problem_id) for r in retrieved),
            abstained=retriever is not None and not retrieved,
            domain=facts[F.DOMAIN], visible_test=facts[F.VISIBLE_TEST], setup_code=facts[F.SETUP_CODE],
            filtered=filtered,
        ).to_doc()

    def __call__(self, dataset):
        key = getattr(dataset, "_fingerprint", None)
        if key is not None and key in self._done:
            return self._done[key]
        self.prepare(dataset)
        rows = [{**doc, **self.fields(doc, evaluated=self.scored(i))} for i, doc in enumerate(dataset)]
        known = getattr(dataset, "features", None)  # the source's own columns keep their types
        retriever = self.retriever()
        governed = retriever is not None and retriever.governed
        features = None if known is None else datasets.Features({**known, **problem_features(governed)})
        processed = datasets.Dataset.from_list(rows, features=features)
        if processed.features.get(F.RETRIEVED) != RETRIEVED_FEATURE:  # inferred: all-empty lists are lists of null
            processed = processed.cast_column(F.RETRIEVED, RETRIEVED_FEATURE)
        if key is not None:
            self._done[key] = processed
        return processed


class ProcessResults:
    """The ``process_results`` hook: score with the project's verifiers (an agent transcript
    by its final answer) and count the turns."""

    def __init__(self, spec: BenchmarkSpec, sandbox: SandboxConfig | None = None):
        self.spec = spec
        self.sandbox = sandbox

    def __call__(self, doc: dict, results: list[str]) -> dict[str, float]:
        response = results[0] if results else ""
        verdict = score_response(self.spec, doc, response, sandbox=self.sandbox)
        episode = decode_transcript(response)
        turns = 1 if episode is None else episode.turns
        record = None if episode is None else {
            "turns": turns, "stopped": episode.stopped, "blocks_run": episode.n_blocks,
            "protocol_version": episode.data.get("protocol_version")}
        doc.update(ScoreFields(verdict.status, verdict.extracted, verdict.detail, turns, record).to_doc())
        return {
            "acc": float(verdict.passed),
            "no_answer": float(verdict.status == "no_answer"),
            "memory_injected": float(bool(doc.get(F.MEMORY))),
            "turns": float(turns),
        }


def task_config(benchmark: str, *, data_dir: str | None, setup: MemorySetup | None,
                max_gen_toks: int | None = None, sandbox: SandboxConfig | None = None,
                evaluated: frozenset[int] | None = None) -> dict[str, Any]:
    """An lm-eval task config dict (pass it to ``simple_evaluate(tasks=[...])``). ``evaluated``: the
    doc indices the run scores, the only ones retrieval is done for (None: every doc)."""
    spec = get_spec(benchmark)
    return {
        "task": task_name(benchmark, setup is not None),
        **spec.dataset_fields(data_dir),
        "output_type": "generate_until",
        "process_docs": ProcessDocs(spec, setup, evaluated),
        "doc_to_text": PROMPT_TEMPLATE,
        "doc_to_target": "{{" + F.ID + "}}",
        "process_results": ProcessResults(spec, sandbox),
        "metric_list": metric_list(),
        "generation_kwargs": {"until": [], "max_gen_toks": max_gen_toks or spec.max_gen_toks,
                              "do_sample": False, "temperature": 0.0},
        "num_fewshot": 0,
        "repeats": 1,
        "metadata": {"version": 1.0},
    }


def metric_list() -> list[dict[str, Any]]:
    return [{"metric": m, "aggregation": "mean", "higher_is_better": m == "acc"} for m in METRICS]


# ---- hooks for the YAML files in tasks/ (lm_eval --include_path tasks) ----------------

ENV_BANK, ENV_TARGET, ENV_TOP_K = "MEMCOLLAB_BANK", "MEMCOLLAB_TARGET", "MEMCOLLAB_TOP_K"
ENV_RANKER = "MEMCOLLAB_RANKER"  # tfidf (default) | bm25 | embedding
# access (README "Governing a shared bank"): the principal, its groups (comma-separated), an external target
ENV_PRINCIPAL, ENV_GROUPS, ENV_EXTERNAL = "MEMCOLLAB_PRINCIPAL", "MEMCOLLAB_GROUPS", "MEMCOLLAB_EXTERNAL"


@lru_cache(maxsize=None)
def _setup_from_env() -> MemorySetup:
    bank_dir, target = os.environ.get(ENV_BANK), os.environ.get(ENV_TARGET)
    if not bank_dir or not target:
        raise RuntimeError(
            f"the *_memcollab tasks need {ENV_BANK}=<bank directory> and {ENV_TARGET}=<target identity> "
            "in the environment when run through lm_eval --include_path tasks"
        )
    principal = os.environ.get(ENV_PRINCIPAL) or None
    retrieval = RetrievalConfig(top_k=int(os.environ.get(ENV_TOP_K, "3")), ranker=os.environ.get(ENV_RANKER, "tfidf"),
                                principal=principal)
    groups = [g.strip() for g in os.environ.get(ENV_GROUPS, "").split(",") if g.strip()]
    external = os.environ.get(ENV_EXTERNAL, "").strip().lower() in ("1", "true", "yes")
    access = access_for(principal, {principal: groups} if principal else None, external_target=external)
    return MemorySetup(load_bank(bank_dir), retrieval, target, access=access)


class EnvProcessDocs(ProcessDocs):
    """``process_docs`` for the YAML tasks: the memory setup comes from the environment."""

    def __init__(self, benchmark: str, with_memory: bool):
        super().__init__(get_spec(benchmark), None)
        self.with_memory = with_memory

    def __call__(self, dataset):
        if self.with_memory and self.setup is None:
            self.setup = _setup_from_env()
        return super().__call__(dataset)
