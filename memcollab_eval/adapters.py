"""The four evaluation benchmarks as adapters: where a benchmark's data lives, and how one of
its problems is identified, shown to retrieval, prompted, and checked (gold answer or tests).

One place defines the single-turn protocol (zero-shot chat prompts asking for ``\\boxed{}``
or a fenced code block) so that the memory variant and its no-memory twin differ in nothing
but the memory text, and so that bank building prompts the same way. Each benchmark is one
class: what differs between benchmarks is a method of its adapter, not an ``if name ==``
chain in every function. Scoring lives in :mod:`memcollab_eval.scoring` (it needs the
verifiers); what the agent protocol adds lives in :mod:`memcollab_eval.agent.task_fields`.
This module imports nothing of the project but :mod:`memcollab_eval.packaged_data` (the shipped
evaluation sets).
"""

from __future__ import annotations

import ast
import hashlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memcollab_eval.packaged_data import data_file

MATH_INSTRUCTION = (
    "Solve the following math problem. Reason step by step, then give the final answer "
    "in the form \\boxed{{answer}}.\n\nProblem: {question}"
)
MBPP_INSTRUCTION = (
    "Write a Python function for the following task.\n\nTask: {question}\n\n"
    "Your code should pass tests like these:\n{tests}\n\n"
    "Answer with the complete solution in a single ```python code block."
)
HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function "
    "(including its signature and any imports it needs) in a single ```python code block.\n\n"
    "```python\n{prompt}```"
)



@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark's evaluation split (hub and local), its domain, and its generation budget.

    Subclasses say how a problem of theirs reads: ``problem_id``, ``text`` (what categorization
    and retrieval look at), ``prompt`` (the single-turn user turn), ``gold`` (math) or
    ``program``/``tests`` (code)."""

    name: str
    domain: str  # "math" | "code"
    hub_path: str
    hub_name: str | None
    hub_split: str
    local_file: str  # relative to the data directory, laid out as the package's own copy (memcollab_eval/data)
    max_gen_toks: int

    def problem_id(self, doc: dict, split: str = "test") -> str:
        """A stable id (``split`` matters for GSM8K only, whose rows have no id of their own)."""
        return str(doc["task_id"])

    def text(self, doc: dict) -> str:
        raise NotImplementedError

    def prompt(self, doc: dict) -> str:
        return MATH_INSTRUCTION.format(question=self.text(doc))

    def gold(self, doc: dict) -> str:
        """The reference answer of a math problem ("" for code, which is checked by tests)."""
        return ""

    def answer_kind(self) -> str:
        """How the math checker compares answers: ``math`` (symbolic equivalence) or ``gsm8k`` (numbers)."""
        return "math"

    def subject(self, doc: dict) -> str | None:
        """The dataset's own subject label, which the categorizer trusts over its keyword rules."""
        return None

    def program(self, doc: dict, code: str) -> str:
        """The program to run for an extracted code answer."""
        return code

    def tests(self, doc: dict) -> tuple[str, str | None, str]:
        """(test code, entry point or None, support) for a code problem. Support is the code the
        benchmark supplies and its tests call (HumanEval's prompt, for helpers such as ``poly``;
        MBPP's setup code): the sandbox runs it beside the tests, never from the program."""
        raise NotImplementedError(f"{self.name} is not a code benchmark")

    def dataset_fields(self, data_dir: str | None) -> dict[str, Any]:
        """lm-eval task keys that load the split from a local JSONL: ``data_dir``'s copy, or with
        ``data_dir`` unset the one shipped in the package (sha256-checked). Never the hub."""
        path = data_file(self.local_file, data_dir)
        if not path.exists():
            raise FileNotFoundError(
                f"{self.name}: local data file {path} not found (data_dir={data_dir!r}, which defaults to "
                f"$MEMCOLLAB_DATA_DIR); lay the directory out as memcollab_eval/data is ({self.local_file}), "
                "or unset data_dir (data_dir=null) and MEMCOLLAB_DATA_DIR to use the evaluation sets shipped "
                "with the package"
            )
        return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(path)}},
                "test_split": "test"}


class Math500(BenchmarkSpec):
    def problem_id(self, doc: dict, split: str = "test") -> str:
        return str(doc["unique_id"])

    def text(self, doc: dict) -> str:
        return doc["problem"]

    def gold(self, doc: dict) -> str:
        return doc["answer"]

    def subject(self, doc: dict) -> str | None:
        return doc.get("subject")


class Gsm8k(BenchmarkSpec):
    def problem_id(self, doc: dict, split: str = "test") -> str:
        """GSM8K rows have no id: a hash of the question, with the split it came from (pools use train)."""
        return f"gsm8k/{split}/{hash_text(doc['question']) % 10**10}"

    def text(self, doc: dict) -> str:
        return doc["question"]

    def gold(self, doc: dict) -> str:
        return doc["answer"].split("####")[-1].strip()

    def answer_kind(self) -> str:
        return "gsm8k"


class Mbpp(BenchmarkSpec):
    def problem_id(self, doc: dict, split: str = "test") -> str:
        return f"mbpp/{doc['task_id']}"

    def text(self, doc: dict) -> str:
        return doc["text"]

    def prompt(self, doc: dict) -> str:
        return MBPP_INSTRUCTION.format(question=doc["text"], tests="\n".join(doc["test_list"]))

    def tests(self, doc: dict) -> tuple[str, str | None, str]:
        tests = doc["test_list"]
        return "\n".join(tests) + "\n", function_under_test(doc.get("code", ""), tests), doc.get("test_setup_code", "")


class HumanEval(BenchmarkSpec):
    def text(self, doc: dict) -> str:
        return doc["prompt"]

    def prompt(self, doc: dict) -> str:
        return HUMANEVAL_INSTRUCTION.format(prompt=doc["prompt"])

    def program(self, doc: dict, code: str) -> str:
        """HumanEval answers may omit the prompt's imports: run them after the prompt's text."""
        return doc["prompt"] + "\n    pass\n\n" + code

    def tests(self, doc: dict) -> tuple[str, str | None, str]:
        return doc["test"], doc["entry_point"], doc["prompt"]


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "math500": Math500("math500", "math", "HuggingFaceH4/MATH-500", None, "test", "math500/test.jsonl", 1024),
    "gsm8k": Gsm8k("gsm8k", "math", "openai/gsm8k", "main", "test", "gsm8k/test.jsonl", 768),
    "mbpp": Mbpp("mbpp", "code", "google-research-datasets/mbpp", "full", "test", "mbpp/test.jsonl", 768),
    "humaneval": HumanEval("humaneval", "code", "openai/openai_humaneval", None, "test", "humaneval/HumanEval.jsonl",
                           768),
}


def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; valid: {sorted(BENCHMARKS)}") from None


def hash_text(text: str) -> int:
    """A stable (not PYTHONHASHSEED-dependent), non-negative integer hash of a string."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def function_under_test(reference_code: str, tests: Iterable[str]) -> str | None:
    """The top-level function (or class) of a benchmark's reference solution that its
    tests call first: MBPP's ``entry_point``. It matters when that name shadows a
    builtin (MBPP 126 defines ``sum``); ``None`` when nothing matches."""
    try:
        with warnings.catch_warnings():  # MBPP's texts hold invalid escapes such as '\\d'
            warnings.simplefilter("ignore")
            defined = {n.name for n in ast.parse(reference_code).body
                       if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            parsed = [ast.parse(test) for test in tests]
        for tree in parsed:
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
            for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
                if call.func.id in defined:  # type: ignore[union-attr]
                    return call.func.id  # type: ignore[union-attr]
    except SyntaxError:
        return None
    return None
