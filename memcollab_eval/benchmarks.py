"""The four evaluation benchmarks: where their data lives, how a problem is prompted,
and how a response is scored with this project's verifiers.

One place defines the single-turn protocol (zero-shot chat prompts asking for
``\\boxed{}`` or a fenced code block) so that the memory variant and its no-memory twin
differ in nothing but the memory text, and so that bank building prompts the same way.
The agent protocol (:mod:`memcollab_eval.agent`) starts from the same prompt; what it
needs besides (domain, visible example test, setup code) comes from ``agent_fields``, and
``score_response`` scores an episode's final answer.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcollab_eval.agent.blocks import doctest_visible_test, import_lines, mbpp_visible_test
from memcollab_eval.agent.transcript import scored_text
from memcollab_eval.verify import SandboxConfig, Verdict, check_answer, run_code
from memcollab_eval.verify.code_exec import function_under_test

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
    """Where a benchmark's evaluation split lives (hub and local) and its domain."""

    name: str
    domain: str  # "math" | "code"
    hub_path: str
    hub_name: str | None
    hub_split: str
    local_file: str  # relative to the data directory (laid out as ../shared/data)
    max_gen_toks: int


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "math500": BenchmarkSpec("math500", "math", "HuggingFaceH4/MATH-500", None, "test", "math500/test.jsonl", 1024),
    "gsm8k": BenchmarkSpec("gsm8k", "math", "openai/gsm8k", "main", "test", "gsm8k/test.jsonl", 768),
    "mbpp": BenchmarkSpec("mbpp", "code", "google-research-datasets/mbpp", "full", "test", "mbpp/test.jsonl", 768),
    "humaneval": BenchmarkSpec("humaneval", "code", "openai/openai_humaneval", None, "test", "humaneval/HumanEval.jsonl", 768),
}


def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; valid: {sorted(BENCHMARKS)}") from None


def dataset_fields(spec: BenchmarkSpec, data_dir: str | None) -> dict[str, Any]:
    """lm-eval task keys that load the split: a local JSONL under ``data_dir``, else the hub."""
    if data_dir:
        path = Path(data_dir).expanduser().resolve() / spec.local_file
        if not path.exists():
            raise FileNotFoundError(
                f"{spec.name}: local data file {path} not found (data_dir={data_dir!r}); "
                f"lay the directory out as ../shared/data is, or unset data_dir to use the hub"
            )
        return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(path)}},
                "test_split": "test"}
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{spec.name}: offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set) and no local data: "
            "set data_dir=/path/to/data or MEMCOLLAB_DATA_DIR (laid out as ../shared/data)"
        )
    return {"dataset_path": spec.hub_path, "dataset_name": spec.hub_name, "test_split": spec.hub_split}


def problem_id(spec: BenchmarkSpec, doc: dict, split: str = "test") -> str:
    """A stable id; GSM8K rows have none, so theirs is a hash of the question (``split`` names
    which GSM8K split the row came from: bank pools use ``train``)."""
    if spec.name == "math500":
        return str(doc["unique_id"])
    if spec.name == "gsm8k":
        return f"gsm8k/{split}/{hash_text(doc['question']) % 10**10}"
    if spec.name == "mbpp":
        return f"mbpp/{doc['task_id']}"
    return str(doc["task_id"])


def hash_text(text: str) -> int:
    """A stable (not PYTHONHASHSEED-dependent), non-negative integer hash of a string."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def problem_text(spec: BenchmarkSpec, doc: dict) -> str:
    """The text categorization and retrieval look at."""
    if spec.name == "math500":
        return doc["problem"]
    if spec.name == "gsm8k":
        return doc["question"]
    if spec.name == "mbpp":
        return doc["text"]
    return doc["prompt"]


def build_prompt(spec: BenchmarkSpec, doc: dict) -> str:
    """The user-turn text of the single-turn protocol, without any memory."""
    if spec.domain == "math":
        return MATH_INSTRUCTION.format(question=problem_text(spec, doc))
    if spec.name == "mbpp":
        return MBPP_INSTRUCTION.format(question=doc["text"], tests="\n".join(doc["test_list"]))
    return HUMANEVAL_INSTRUCTION.format(prompt=doc["prompt"])


def agent_fields(spec: BenchmarkSpec, doc: dict) -> dict[str, str]:
    """Per-problem facts the agent protocol needs: the domain, the visible example test a
    solution block is run with (MBPP: the first assert; HumanEval: the first ``>>>`` example
    as an assert, or "" when it is not parseable) and setup code every run gets (MBPP's
    ``test_setup_code``, HumanEval's imports). Scoring still uses the full tests."""
    if spec.domain == "math":
        return {"memcollab_domain": "math", "memcollab_visible_test": "", "memcollab_setup_code": ""}
    if spec.name == "mbpp":
        setup = doc.get("test_setup_code") or ""
        return {"memcollab_domain": "code", "memcollab_visible_test": mbpp_visible_test(doc["test_list"]),
                "memcollab_setup_code": setup + "\n" if setup.strip() else ""}
    return {"memcollab_domain": "code", "memcollab_visible_test": doctest_visible_test(doc["prompt"]),
            "memcollab_setup_code": import_lines(doc["prompt"])}


def gold(spec: BenchmarkSpec, doc: dict) -> str:
    if spec.name == "math500":
        return doc["answer"]
    if spec.name == "gsm8k":
        return doc["answer"].split("####")[-1].strip()
    return ""


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(response: str) -> str | None:
    """The last fenced code block (an unclosed final fence counts: truncated output)."""
    blocks = _FENCE.findall(response)
    if blocks:
        return blocks[-1]
    return None


def code_program(spec: BenchmarkSpec, doc: dict, code: str) -> str:
    """HumanEval answers may omit the prompt's imports: run them after the prompt's text."""
    if spec.name == "humaneval":
        return doc["prompt"] + "\n    pass\n\n" + code
    return code


def code_test(spec: BenchmarkSpec, doc: dict) -> tuple[str, str | None, str]:
    """The tests, the entry point and the benchmark's support code: the code the tests
    call that the benchmark supplies (HumanEval's prompt, for helpers such as ``poly``;
    MBPP's setup code). run_code runs support beside the tests, never from the program."""
    if spec.name == "mbpp":
        tests = doc["test_list"]
        return "\n".join(tests) + "\n", function_under_test(doc.get("code", ""), tests), doc.get("test_setup_code", "")
    return doc["test"], doc["entry_point"], doc["prompt"]


def score_response(spec: BenchmarkSpec, doc: dict, response: str, *, sandbox: SandboxConfig | None = None) -> Verdict:
    """Score one response with the same verifiers that build the bank; an agent episode's
    transcript is scored by its final answer."""
    response = scored_text(response)
    if spec.domain == "math":
        return check_answer(response, gold(spec, doc), kind="gsm8k" if spec.name == "gsm8k" else "math")
    code = extract_code(response)
    if code is None or not code.strip():
        return Verdict("no_answer", None, "no ```python code block in the response")
    test, entry_point, support = code_test(spec, doc)
    sandbox = sandbox or SandboxConfig()
    return run_code(code_program(spec, doc, code), test, entry_point=entry_point, timeout=sandbox.timeout,
                    config=sandbox, support=support)
