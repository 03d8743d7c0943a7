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

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memcollab_eval.agent.transcript import decode_transcript
from memcollab_eval.bank import MemoryBank, load_bank
from memcollab_eval.benchmarks import (
    BENCHMARKS, BenchmarkSpec, agent_fields, build_prompt, dataset_fields, get_spec, problem_id, problem_text,
    score_response,
)
from memcollab_eval.categorize import categorize
from memcollab_eval.retrieve import RetrievalConfig, Retriever, render_memory
from memcollab_eval.verify import SandboxConfig

PROMPT_TEMPLATE = "{{memcollab_memory}}{{memcollab_prompt}}"
METRICS = ("acc", "no_answer", "memory_injected", "turns")


@dataclass(frozen=True)
class MemorySetup:
    """What the memory variant needs: a bank, how to retrieve, and who the target is."""

    bank: MemoryBank
    retrieval: RetrievalConfig
    target_identity: str


def task_name(benchmark: str, with_memory: bool) -> str:
    return f"{benchmark}_{'memcollab' if with_memory else 'nomemory'}"


class ProcessDocs:
    """The ``process_docs`` hook: adds the prompt, memory and retrieval record to each doc."""

    def __init__(self, spec: BenchmarkSpec, setup: MemorySetup | None):
        self.spec = spec
        self.setup = setup
        self._retriever: Retriever | None = None
        self._done: dict[str, Any] = {}  # lm-eval asks for the docs several times per run

    def retriever(self) -> Retriever | None:
        if self.setup is not None and self._retriever is None:
            self._retriever = Retriever(self.setup.bank, self.setup.retrieval, self.setup.target_identity)
        return self._retriever

    def fields(self, doc: dict) -> dict[str, Any]:
        text = problem_text(self.spec, doc)
        cat = categorize(text, domain=self.spec.domain, benchmark=self.spec.name, subject=doc.get("subject"))
        retrieved = []
        retriever = self.retriever()
        if retriever is not None:
            retrieved = retriever.retrieve(text, category=cat if self.setup.retrieval.use_categories else None)
        memory = render_memory(retrieved)
        return {
            "memcollab_id": problem_id(self.spec, doc),
            "memcollab_prompt": build_prompt(self.spec, doc),
            "memcollab_memory": memory + "\n\n" if memory else "",
            "memcollab_category": cat.category,
            "memcollab_subcategory": cat.subcategory,
            "memcollab_retrieved": json.dumps([{"id": r.entry.id, "score": round(r.score, 4)} for r in retrieved]),
            "memcollab_abstained": retriever is not None and not retrieved,
            **agent_fields(self.spec, doc),
        }

    def __call__(self, dataset):
        import datasets

        key = getattr(dataset, "_fingerprint", None)
        if key is not None and key in self._done:
            return self._done[key]
        processed = datasets.Dataset.from_list([{**doc, **self.fields(doc)} for doc in dataset])
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
        doc["memcollab_verdict"] = {"status": verdict.status, "extracted": verdict.extracted,
                                    "detail": verdict.detail[:1000]}
        episode = decode_transcript(response)
        turns = 1 if episode is None else episode.turns
        doc["memcollab_turns"] = turns
        if episode is not None:
            doc["memcollab_episode"] = {"turns": turns, "stopped": episode.stopped, "blocks_run": episode.n_blocks,
                                        "protocol_version": episode.data.get("protocol_version")}
        return {
            "acc": float(verdict.passed),
            "no_answer": float(verdict.status == "no_answer"),
            "memory_injected": float(bool(doc.get("memcollab_memory"))),
            "turns": float(turns),
        }


def task_config(benchmark: str, *, data_dir: str | None, setup: MemorySetup | None,
                max_gen_toks: int | None = None, sandbox: SandboxConfig | None = None) -> dict[str, Any]:
    """An lm-eval task config dict (pass it to ``simple_evaluate(tasks=[...])``)."""
    spec = get_spec(benchmark)
    return {
        "task": task_name(benchmark, setup is not None),
        **dataset_fields(spec, data_dir),
        "output_type": "generate_until",
        "process_docs": ProcessDocs(spec, setup),
        "doc_to_text": PROMPT_TEMPLATE,
        "doc_to_target": "{{memcollab_id}}",
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

YAML_HEADER = ("# Generated by `python -m memcollab_eval.lmeval_tasks tasks/` to match task_config; "
               "tests/test_agent_tasks.py checks it.")


def task_yaml(benchmark: str, with_memory: bool) -> str:
    """The text of ``tasks/<benchmark>_<variant>.yaml``: ``task_config`` for the hub data,
    with the hooks of ``tasks/memcollab_hooks.py``."""
    spec = get_spec(benchmark)
    name = task_name(benchmark, with_memory)
    lines = [YAML_HEADER, f"task: {name}", f"dataset_path: {spec.hub_path}"]
    if spec.hub_name is not None:
        lines.append(f"dataset_name: {spec.hub_name}")
    lines += [f"test_split: {spec.hub_split}", "output_type: generate_until",
              f"process_docs: !function memcollab_hooks.process_docs_{name}",
              f'doc_to_text: "{PROMPT_TEMPLATE}"', 'doc_to_target: "{{memcollab_id}}"',
              f"process_results: !function memcollab_hooks.process_results_{benchmark}", "metric_list:"]
    for metric in metric_list():
        lines += [f"  - metric: {metric['metric']}", "    aggregation: mean",
                  f"    higher_is_better: {str(metric['higher_is_better']).lower()}"]
    lines += ["generation_kwargs:", "  until: []", f"  max_gen_toks: {spec.max_gen_toks}", "  do_sample: false",
              "  temperature: 0.0", "num_fewshot: 0", "repeats: 1", "metadata:", "  version: 1.0"]
    return "\n".join(lines) + "\n"


def write_task_yamls(folder: str) -> list[str]:
    """(Re)write every task YAML in ``folder``; returns the file names."""
    from pathlib import Path

    written = []
    for benchmark in BENCHMARKS:
        for with_memory in (True, False):
            path = Path(folder) / f"{task_name(benchmark, with_memory)}.yaml"
            path.write_text(task_yaml(benchmark, with_memory))
            written.append(path.name)
    return written

ENV_BANK, ENV_TARGET, ENV_TOP_K = "MEMCOLLAB_BANK", "MEMCOLLAB_TARGET", "MEMCOLLAB_TOP_K"


@lru_cache(maxsize=None)
def _setup_from_env() -> MemorySetup:
    bank_dir, target = os.environ.get(ENV_BANK), os.environ.get(ENV_TARGET)
    if not bank_dir or not target:
        raise RuntimeError(
            f"the *_memcollab tasks need {ENV_BANK}=<bank directory> and {ENV_TARGET}=<target identity> "
            "in the environment when run through lm_eval --include_path tasks"
        )
    retrieval = RetrievalConfig(top_k=int(os.environ.get(ENV_TOP_K, "3")))
    return MemorySetup(load_bank(bank_dir), retrieval, target)


class EnvProcessDocs(ProcessDocs):
    """``process_docs`` for the YAML tasks: the memory setup comes from the environment."""

    def __init__(self, benchmark: str, with_memory: bool):
        super().__init__(get_spec(benchmark), None)
        self.with_memory = with_memory

    def __call__(self, dataset):
        if self.with_memory and self.setup is None:
            self.setup = _setup_from_env()
        return super().__call__(dataset)


if __name__ == "__main__":
    import sys

    print("\n".join(write_task_yamls(sys.argv[1] if len(sys.argv) > 1 else "tasks")))
