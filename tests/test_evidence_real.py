"""The re-solve gate on a real model (SmolLM2-135M, the CI model), through lm-eval's registry.

The gate's rule is tested with scripted doubles in test_build.py; this checks the real path:
the lesson reaches the model's prompt rendered as evaluation renders memory, the model's
answer is scored by the project's verifier, and the outcome is a resumable record.
"""

import json

from conftest import require_smollm2

from memcollab_eval.adapters import get_spec
from memcollab_eval.construct.evidence import lesson_key, resolve_lessons
from memcollab_eval.construct.pools import categorized
from memcollab_eval.models.generation import build_lm, generate, load_target
from memcollab_eval.retrieve import MEMORY_HEADER

ROW = {"question": "Tom has 3 apples and buys 4 more. How many apples does he have now?",
       "answer": "He has 3 + 4 = 7 apples.\n#### 7"}


def test_resolve_runs_a_real_model_with_the_lesson_in_its_prompt(tmp_path):
    require_smollm2()
    problem = categorized("gsm8k_train", "gsm8k/train/demo", ROW)
    entry = {"enforce": "adding every quantity the story gives before answering",
             "avoid": "reporting only the last quantity mentioned", "category": problem.category,
             "subcategory": problem.subcategory, "preferred_model": "a", "unpreferred_model": "smollm2_135m",
             "source_benchmark": "gsm8k_train", "source_problem_id": problem.id, "summarizer": "s", "created_at": ""}
    lm = build_lm(load_target("smollm2_135m"))
    prompts: list[str] = []

    def generate_for(model):
        assert model == "smollm2_135m"

        def run(batch, kwargs):
            prompts.extend(batch)
            out = generate(lm, batch, kwargs)
            return [g.text for g in out], sum(g.seconds for g in out), sum(g.completion_tokens or 0 for g in out)
        return run

    kwargs = {"until": [], "max_gen_toks": 48, "do_sample": False, "temperature": 0.0}
    outcomes = resolve_lessons([(entry, "smollm2_135m")], {problem.id: problem}, tmp_path, generate_for,
                               lambda spec, s: kwargs, 1, None)
    outcome = outcomes[lesson_key(entry)]
    assert outcome.samples == 1 and outcome.passed in (0, 1) and outcome.tokens > 0
    assert prompts and prompts[0].startswith(MEMORY_HEADER) and entry["enforce"] in prompts[0]
    assert prompts[0].endswith(get_spec("gsm8k").prompt(ROW))
    records = [json.loads(x) for x in (tmp_path / "resolve.jsonl").read_text().splitlines()]
    assert [r["status"] in {"pass", "fail", "no_answer"} for r in records] == [True]
    # a second call resumes from the record: nothing is generated again
    prompts.clear()
    again = resolve_lessons([(entry, "smollm2_135m")], {problem.id: problem}, tmp_path, generate_for,
                            lambda spec, s: kwargs, 1, None)
    assert prompts == [] and again[lesson_key(entry)].passed == outcome.passed
