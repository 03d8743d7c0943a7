"""The per-problem facts the agent protocol needs beyond the single-turn prompt.

The domain, the visible example test a solution block is run with (MBPP: the first assert;
HumanEval: the first ``>>>`` example as an assert, or "" when it is not parseable) and setup
code every run gets (MBPP's ``test_setup_code``, HumanEval's imports). Scoring still uses the
full tests. The task hooks put these into each doc, and bank building passes them to episodes.
"""

from __future__ import annotations

from memcollab_eval.adapters import BenchmarkSpec
from memcollab_eval.agent.blocks import doctest_visible_test, import_lines, mbpp_visible_test
from memcollab_eval.sample_fields import SampleFields as F


def agent_fields(spec: BenchmarkSpec, doc: dict) -> dict[str, str]:
    """The doc fields (``memcollab_domain``, ``memcollab_visible_test``, ``memcollab_setup_code``)."""
    if spec.domain == "math":
        return {F.DOMAIN: "math", F.VISIBLE_TEST: "", F.SETUP_CODE: ""}
    if spec.name == "mbpp":
        setup = doc.get("test_setup_code") or ""
        return {F.DOMAIN: "code", F.VISIBLE_TEST: mbpp_visible_test(doc["test_list"]),
                F.SETUP_CODE: setup + "\n" if setup.strip() else ""}
    return {F.DOMAIN: "code", F.VISIBLE_TEST: doctest_visible_test(doc["prompt"]),
            F.SETUP_CODE: import_lines(doc["prompt"])}
