"""The agent protocol with the scripted test double: code blocks run in the sandbox and their
output comes back as the next user turn, visible-test feedback for code, final answers,
max_turns, sandbox timeouts, the transcript and the turns metric. No model weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from memcollab_eval.adapters import get_spec
from memcollab_eval.agent import AgentConfig, AgentTask, decode_transcript, run_episode, scored_text, turns_of
from memcollab_eval.agent import blocks as B
from memcollab_eval.agent.agent_lm import AgentLM, AgentRequestError
from memcollab_eval.agent.messages import PROTOCOL_VERSION, instruction, truncate
from memcollab_eval.agent.task_fields import agent_fields
from memcollab_eval.evaluation.tasks import ProcessResults
from memcollab_eval.models.scripted import ScriptedLM, ScriptExhaustedError

MATH_DOC = {"memcollab_domain": "math", "memcollab_visible_test": "", "memcollab_setup_code": ""}
ADD_DOC = {"memcollab_domain": "code", "memcollab_visible_test": "assert add(2, 3) == 5\n", "memcollab_setup_code": ""}


def scripted(tmp_path: Path, rules: list[list[str]] | None = None, script: list[str] | None = None) -> ScriptedLM:
    args = {}
    if rules is not None:
        (tmp_path / "rules.json").write_text(json.dumps(rules))
        args["rules"] = str(tmp_path / "rules.json")
    if script is not None:
        (tmp_path / "script.json").write_text(json.dumps(script))
        args["script"] = str(tmp_path / "script.json")
    return ScriptedLM(**args)


def run(agent: AgentLM, prompt: str, doc: dict, gen_kwargs: dict | None = None) -> dict:
    """One request through the wrapper, as lm-eval sends it; returns the decoded transcript."""
    request = Instance("generate_until", dict(doc), (prompt, gen_kwargs or {"until": [], "max_gen_toks": 64}), 0)
    (text,) = agent.generate_until([request], disable_tqdm=True)
    transcript = decode_transcript(text)
    assert transcript is not None, text[:200]
    return transcript.data


def user_turns(data: dict) -> list[str]:
    return [m["content"] for m in data["messages"] if m["role"] == "user"]


# ---- parsing -------------------------------------------------------------------------

def test_blocks_markers_and_visible_tests():
    reply = "Try:\n```python\nprint(1)\n```\n```output\n1\n```\nFINAL SOLUTION:\n```python\ndef f():\n    return 2\n```"
    found = B.find_blocks(reply)
    assert [(b.lang, b.closed, b.final) for b in found] == [("python", True, False), ("output", True, False),
                                                            ("python", True, True)]
    assert B.final_block("```python\n# Final\ndef f():\n    pass\n```").code.startswith("# Final")
    assert B.final_block("```python\ndef f():\n    pass  # final\n```") is None
    assert [b.closed for b in B.python_blocks("```python\nprint(1)")] == [False]  # cut off by the token limit
    assert B.has_boxed_answer("so \\boxed{3}") and not B.has_boxed_answer("```python\nprint('\\\\boxed{3}')\n```")
    assert B.doctest_visible_test(get_humaneval_prompt()) == "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False\n"
    assert B.doctest_visible_test('def f():\n    """\n    >>> f()\n    hello there\n    """\n') == ""  # not a literal
    assert B.doctest_visible_test('def f():\n    """No examples."""\n') == ""
    assert B.tested_function("assert remove_Occ('a', 'b') == ''") == "remove_Occ"
    mbpp = agent_fields(get_spec("mbpp"), {"test_list": ["assert f(1) == 2", "assert f(2) == 3"], "test_setup_code": ""})
    assert mbpp == {"memcollab_domain": "code", "memcollab_visible_test": "assert f(1) == 2\n", "memcollab_setup_code": ""}


def get_humaneval_prompt() -> str:
    return ('from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
            '    """ Check if any two numbers are closer than threshold.\n'
            '    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n'
            '    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    """\n')


def test_visible_tests_pass_with_the_reference_solutions(sandbox):
    """The converted examples are right: each passes with the benchmark's own solution, run as
    the agent runs a solution block (setup code first, the explained assert after it)."""
    from conftest import read_jsonl

    items = []
    for doc in read_jsonl("humaneval/HumanEval.jsonl"):
        fields = agent_fields(get_spec("humaneval"), doc)
        if fields["memcollab_visible_test"]:
            items.append((fields["memcollab_setup_code"] + doc["prompt"] + doc["canonical_solution"], fields))
    for doc in read_jsonl("mbpp/test.jsonl")[:100]:
        items.append((doc["code"], agent_fields(get_spec("mbpp"), doc)))
    assert len(items) == 69 + 100  # 69 of the 164 HumanEval prompts have a literal first >>> example
    for program, fields in items:
        verdict = sandbox.run(fields["memcollab_setup_code"] + program, B.explain_assert(fields["memcollab_visible_test"]))
        assert verdict.passed, (fields["memcollab_visible_test"], verdict.detail)


def test_instruction_defines_the_markers():
    assert "\\boxed{answer}" in instruction("math", 5) and "at most 5 replies" in instruction("math", 5)
    assert "first line is exactly `# final`" in instruction("code", 3)
    cut = truncate("a" * 20 + "b" * 30, 10)
    assert cut == "aaaaa\n[... output truncated: 40 of 50 characters omitted ...]\nbbbbb"
    assert truncate("short", 10) == "short"


# ---- episodes through the wrapper ---------------------------------------------------------

def test_tool_output_comes_back_as_the_next_user_turn_and_a_final_answer_ends_it(tmp_path):
    lm = scripted(tmp_path, rules=[["```output\n18\n```", "The code says 18, so the answer is \\boxed{18}."],
                                   ["What is 6 times 3?", "Let me compute.\n```python\nprint(6 * 3)\n```"]])
    data = run(AgentLM(lm, AgentConfig(max_turns=5)), "What is 6 times 3?", MATH_DOC)
    assert (data["turns"], data["stopped"], data["final_text"]) == (2, "final", lm_reply(data, 2))
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "The code block ran.\nOutput:\n```output\n18\n```" in user_turns(data)[1]
    assert data["blocks"] == [{"turn": 1, "index": 1, "code": "print(6 * 3)\n", "status": "ok", "output": "18\n",
                               "seconds": data["blocks"][0]["seconds"], "visible_test": None, "test_passed": None}]
    # each turn was rendered with the inner model's chat template, the whole history included
    assert lm.prompts[1].startswith("<system>: You may run Python code") and "<user>: The code block ran." in lm.prompts[1]
    assert lm.prompts[1].endswith("<assistant>: ")
    assert scored_text(encode(data)) == data["final_text"] and turns_of(encode(data)) == 2


def lm_reply(data: dict, turn: int) -> str:
    return [m["content"] for m in data["messages"] if m["role"] == "assistant"][turn - 1]


def encode(data: dict) -> str:
    return "<memcollab_episode>" + json.dumps(data) + "</memcollab_episode>"


def test_visible_test_feedback_for_a_proposed_solution_then_the_final_block(tmp_path):
    lm = scripted(tmp_path, script=[
        "```python\ndef add(a, b):\n    return a - b\n```",
        "Oops.\n```python\ndef add(a, b):\n    return a + b\n```",
        "```python\n# final\ndef add(a, b):\n    return a + b\n```\nDone.",
    ])
    data = run(AgentLM(lm, AgentConfig()), "Write add(a, b).", ADD_DOC)
    first, second = user_turns(data)[1:3]
    assert "the example test `assert add(2, 3) == 5` ran after it: it failed." in first
    assert "AssertionError: expected 5, got -1" in first
    assert "ran after it: it passed." in second
    assert [(b["visible_test"], b["test_passed"]) for b in data["blocks"]] == [(ADD_DOC["memcollab_visible_test"], False),
                                                                             (ADD_DOC["memcollab_visible_test"], True)]
    assert data["stopped"] == "final" and data["turns"] == 3
    assert data["final_text"] == "```python\n# final\ndef add(a, b):\n    return a + b\n```"


def test_a_final_block_with_only_the_marker_finalises_the_last_proposed_solution(tmp_path):
    """Seen with Qwen2.5-Coder-0.5B: after "it passed" it replies ```python\n# final\n``` meaning "that one"."""
    lm = scripted(tmp_path, script=["```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(add(1, 1))\n```",
                                    "It passed.\n```python\n# final\n```"])
    data = run(AgentLM(lm, AgentConfig()), "Write add(a, b).", ADD_DOC)
    assert data["stopped"] == "final" and data["turns"] == 2
    assert data["final_text"] == "```python\ndef add(a, b):\n    return a + b\n```"  # the solution, not the print
    # with nothing proposed before, the empty final block is the answer (and fails the tests)
    alone = run(AgentLM(scripted(tmp_path, script=["```python\n# final\n# see above\n```"]), AgentConfig()),
                "Write add(a, b).", ADD_DOC)
    assert alone["stopped"] == "final" and alone["final_text"] == "```python\n# final\n# see above\n```"


def test_a_reply_that_starts_with_the_marker_is_a_final_block_without_its_opening_fence(tmp_path):
    """Seen with Qwen2.5-Coder-1.5B (130 of its first 411 agent replies): "# final\ndef ...\n```", or
    the code alone, without the opening fence, repeated after every reminder."""
    closed = B.final_block("# final\ndef add(a, b):\n    return a + b\n```\nThat is my answer.")
    assert (closed.code, closed.closed) == ("# final\ndef add(a, b):\n    return a + b\n", True)
    bare = B.final_block("\n# Final\ndef add(a, b):\n    return a + b")
    assert (bare.code, bare.closed) == ("# Final\ndef add(a, b):\n    return a + b\n", False)
    # blocks after it are still read; a marker further down a prose reply is not a block
    assert [b.final for b in B.python_blocks("# final\nx = 1\n```\n```python\nprint(2)\n```")] == [True, False]
    assert B.final_block("Here it is:\n# final\ndef add(a, b):\n    return a + b\n```") is None
    labelled = B.final_block("# final\n```python\ndef add(a, b):\n    return a + b\n```")  # a label, not a block
    assert labelled.code == "def add(a, b):\n    return a + b\n"
    data = run(AgentLM(scripted(tmp_path, script=["# final\ndef add(a, b):\n    return a + b\n```"]), AgentConfig()),
               "Write add(a, b).", ADD_DOC)
    assert (data["stopped"], data["turns"]) == ("final", 1)
    assert data["final_text"] == "```python\n# final\ndef add(a, b):\n    return a + b\n```"


def test_max_turns_ends_the_episode_and_the_last_reply_is_warned(tmp_path):
    lm = scripted(tmp_path, rules=[["Count", "```python\nprint('still thinking')\n```"]])
    data = run(AgentLM(lm, AgentConfig(max_turns=3)), "Count the primes below 10.", MATH_DOC)
    assert (data["turns"], data["stopped"]) == (3, "max_turns")
    assert len(data["blocks"]) == 2  # the third reply's block is not run: no turn is left to report it
    assert "This is your last reply" in user_turns(data)[-1] and "This is your last reply" not in user_turns(data)[1]
    assert data["final_text"] == lm_reply(data, 3)


def test_a_block_that_times_out_is_reported_and_the_episode_continues(tmp_path):
    lm = scripted(tmp_path, script=["```python\nimport time\nprint('start', flush=True)\ntime.sleep(30)\n```",
                                    "It hangs; the answer is \\boxed{7}."])
    data = run(AgentLM(lm, AgentConfig(block_timeout=1.0)), "Find x.", MATH_DOC)
    assert data["blocks"][0]["status"] == "timeout" and data["blocks"][0]["seconds"] < 10
    assert "did not finish: it was stopped after 1 s, the time limit." in user_turns(data)[1]
    assert (data["turns"], data["stopped"]) == (2, "final")


def test_errors_truncation_and_replies_without_code(tmp_path):
    lm = scripted(tmp_path, script=["I will think first.",
                                    "```python\nprint('a' * 500)\n```\n```python\n1 / 0\n```",
                                    "\\boxed{1}"])
    data = run(AgentLM(lm, AgentConfig(output_chars=100)), "Compute.", MATH_DOC)
    nudge, report = user_turns(data)[1:3]
    assert nudge.startswith("There was no ```python block to run and no final answer.")
    assert "Code block 1 ran." in report and "401 of 501 characters omitted" in report
    assert "Code block 2 raised an error." in report and "ZeroDivisionError: division by zero" in report
    assert "sandbox_worker" not in report  # the sandbox's own frames are not shown
    assert [b["status"] for b in data["blocks"]] == ["ok", "error"]


def test_turns_metric_and_final_answer_scoring(tmp_path):
    lm = scripted(tmp_path, script=["```python\nprint(2 + 2)\n```", "The total is \\boxed{4}."])
    text = AgentLM(lm, AgentConfig()).generate_until(
        [Instance("generate_until", dict(MATH_DOC), ("Add 2 and 2.", {}), 0)], disable_tqdm=True)[0]
    doc = {"answer": "Natalia sold 2 + 2 = 4 clips.\n#### 4", **MATH_DOC}
    metrics = ProcessResults(get_spec("gsm8k"))(doc, [text])
    assert metrics == {"acc": 1.0, "no_answer": 0.0, "memory_injected": 0.0, "turns": 2.0}
    assert doc["memcollab_turns"] == 2 and doc["memcollab_episode"] == {"turns": 2, "stopped": "final", "blocks_run": 1,
                                                                  "protocol_version": PROTOCOL_VERSION}
    single = {"answer": "#### 4"}
    assert ProcessResults(get_spec("gsm8k"))(single, ["\\boxed{4}"])["turns"] == 1.0 and single["memcollab_turns"] == 1


def test_run_episode_takes_any_chat_callable():
    replies = iter(["```python\nprint(sum(range(5)))\n```", "\\boxed{10}"])
    seen: list[list[dict]] = []

    def chat(messages):
        seen.append(messages)
        return next(replies)

    episode = run_episode(AgentTask("Sum 0..4.", "math"), chat, AgentConfig())
    assert episode.turns == 2 and episode.stopped == "final" and episode.blocks[0].output == "10\n"
    assert [len(m) for m in seen] == [2, 4]


def test_wrapper_through_the_registry_and_clear_errors(tmp_path):
    from lm_eval.api.registry import get_model

    agent = get_model("memcollab_agent").create_from_arg_string(
        "inner=memcollab_scripted,default=\\boxed{1},max_turns=2", {"batch_size": 1, "max_batch_size": None,
                                                                     "device": None})
    assert isinstance(agent.inner, ScriptedLM) and agent.config.max_turns == 2
    packed = get_model("memcollab_agent").create_from_arg_string("inner=memcollab_scripted,inner_args=default=B;delay=0")
    assert packed.inner.default == "B" and packed.config.max_turns == 5
    assert run(agent, "Say 1.", MATH_DOC)["turns"] == 1
    with pytest.raises(AgentRequestError, match="memcollab_domain"):
        run(agent, "Say 1.", {})
    with pytest.raises(NotImplementedError, match="apply_chat_template=False"):
        agent.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(TypeError, match="inner="):
        AgentLM()
    with pytest.raises(ValueError, match="max_turns must be >= 1"):
        AgentConfig(max_turns=0)


def test_episodes_advance_in_lock_step(tmp_path):
    """Two requests: each model call carries every unfinished episode (a batch per turn)."""
    lm = scripted(tmp_path, rules=[["```output\n", "\\boxed{2}"], ["Q", "```python\nprint(2)\n```"]])
    calls: list[int] = []
    generate = lm.generate_until
    lm.generate_until = lambda reqs, disable_tqdm=False: calls.append(len(reqs)) or generate(reqs)  # type: ignore
    requests = [Instance("generate_until", dict(MATH_DOC), (f"Q{i}", {}), i) for i in range(2)]
    texts = AgentLM(lm, AgentConfig()).generate_until(requests, disable_tqdm=True)
    assert calls == [2, 2] and [turns_of(t) for t in texts] == [2, 2]


def test_an_interrupted_run_replays_finished_turns_and_episodes(tmp_path):
    """What the evaluate job wires under use_cache=true: an inner model in lm-eval's CachingLM
    (per-turn replies) and the agent in another (episodes). The first run dies in turn 2; the
    re-run asks the model only for what had not been answered."""
    from lm_eval.api.model import CachingLM

    requests = [Instance("generate_until", dict(MATH_DOC), (f"Q{i}", {}), i) for i in range(3)]
    turn_db, episode_db = str(tmp_path / "turns.db"), str(tmp_path / "episodes.db")

    def attempt(lm: ScriptedLM) -> list[str]:
        agent = CachingLM(AgentLM(CachingLM(lm, turn_db), AgentConfig()), episode_db)
        return agent.generate_until(requests)

    # turn 1: Q0 and Q2 answer at once, Q1 runs code; turn 2: Q1 gets no reply (the script runs out: the "crash")
    first = scripted(tmp_path, script=["\\boxed{0}", "```python\nprint(1)\n```", "\\boxed{2}"])
    with pytest.raises(ScriptExhaustedError):
        attempt(first)
    assert len(first.prompts) == 4
    from sqlitedict import SqliteDict

    with SqliteDict(episode_db) as episodes:  # Q0 and Q2 ended in turn 1 and were stored then, before the crash
        assert len(episodes) == 2
    (tmp_path / "rules.json").write_text(json.dumps([["```output\n1\n", "\\boxed{1}"]]))
    second = ScriptedLM(rules=str(tmp_path / "rules.json"))  # would raise if asked anything but Q1's turn 2
    texts = attempt(second)
    # Q0 and Q2 came from the episode cache (stored as they ended), Q1's first turn from the turn cache
    assert len(second.prompts) == 1 and "Q1" in second.prompts[0] and "```output\n1\n" in second.prompts[0]
    assert [decode_transcript(t).data["messages"][-1]["content"] for t in texts] == ["\\boxed{0}", "\\boxed{1}",
                                                                                      "\\boxed{2}"]
    assert [turns_of(t) for t in texts] == [1, 2, 1]
    third = ScriptedLM()  # every episode is cached now: no model call at all
    assert attempt(third) == texts and third.prompts == []


def test_a_sequential_backend_runs_each_episode_to_its_end(tmp_path):
    """llama_cpp declares sequential_generation: episode by episode, so each turn's prompt extends
    the previous prompt (llama.cpp then reads only the new part)."""
    lm = scripted(tmp_path, rules=[["```output\n", "\\boxed{2}"], ["Q", "```python\nprint(2)\n```"]])
    lm.sequential_generation = True  # type: ignore[attr-defined]
    calls: list[int] = []
    generate = lm.generate_until
    lm.generate_until = lambda reqs, disable_tqdm=False: calls.append(len(reqs)) or generate(reqs)  # type: ignore
    requests = [Instance("generate_until", dict(MATH_DOC), (f"Q{i}", {}), i) for i in range(2)]
    texts = AgentLM(lm, AgentConfig()).generate_until(requests, disable_tqdm=True)
    assert calls == [1, 1, 1, 1] and [turns_of(t) for t in texts] == [2, 2]
    assert ["Q0" in p for p in lm.prompts] == [True, True, False, False]
    assert lm.prompts[1].startswith(lm.prompts[0]) and lm.prompts[3].startswith(lm.prompts[2])


def test_the_llama_cpp_backend_declares_sequential_generation():
    """Sequential with n_parallel=1 (episodes run to their end, reusing the KV prefix); batched
    decoding (issue 15) advances episodes in lock-step instead. The property reads only
    n_parallel, so it is checked without loading a model."""
    from types import SimpleNamespace

    from memcollab_eval.models.llamacpp_lm import LlamaCppLM

    prop = LlamaCppLM.sequential_generation
    assert prop.fget(SimpleNamespace(n_parallel=1)) is True
    assert prop.fget(SimpleNamespace(n_parallel=8)) is False
