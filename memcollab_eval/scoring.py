"""Score a response with this project's verifiers: the one rule evaluation and bank building share.

Kept apart from the benchmark adapters because it needs the verifiers (the code sandbox among
them), which reading a benchmark's problems does not; an agent episode's transcript is scored
by its final answer.
"""

from __future__ import annotations

import re

from memcollab_eval.adapters import BenchmarkSpec
from memcollab_eval.agent.transcript import scored_text
from memcollab_eval.verify import SandboxConfig, Verdict, check_answer, run_code

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(response: str) -> str | None:
    """The last fenced code block (an unclosed final fence counts: truncated output)."""
    blocks = _FENCE.findall(response)
    if blocks:
        return blocks[-1]
    return None


def score_response(spec: BenchmarkSpec, doc: dict, response: str, *, sandbox: SandboxConfig | None = None) -> Verdict:
    """Score one response with the same verifiers that build the bank; an agent episode's
    transcript is scored by its final answer."""
    response = scored_text(response)
    if spec.domain == "math":
        return check_answer(response, spec.gold(doc), kind=spec.answer_kind())
    code = extract_code(response)
    if code is None or not code.strip():
        return Verdict("no_answer", None, "no ```python code block in the response")
    test, entry_point, support = spec.tests(doc)
    sandbox = sandbox or SandboxConfig()
    return run_code(spec.program(doc, code), test, entry_point=entry_point, timeout=sandbox.timeout, config=sandbox,
                    support=support)
