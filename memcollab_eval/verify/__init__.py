"""Verifiers: the math answer checker and the code sandbox.

The same functions decide which trajectories become memory and score every
evaluation, so they are a library of their own with no dependency on the rest.
"""

from memcollab_eval.verify.code_exec import execute_code, run_code, run_codes
from memcollab_eval.verify.math_answer import check_answer, check_answers, extract_answer
from memcollab_eval.verify.sandbox_pool import (
    Execution,
    IsolationReport,
    SandboxConfig,
    SandboxPool,
    SandboxUnavailableError,
)
from memcollab_eval.verify.verdict import STATUSES, Verdict

__all__ = [
    "STATUSES",
    "Execution",
    "IsolationReport",
    "SandboxConfig",
    "SandboxPool",
    "SandboxUnavailableError",
    "Verdict",
    "check_answer",
    "check_answers",
    "execute_code",
    "extract_answer",
    "run_code",
    "run_codes",
]
