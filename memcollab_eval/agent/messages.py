"""What the harness says to the model in an agent episode: the protocol instruction and
the user turns that report what the code blocks did.

Kept apart from the episode loop so the exact wording is in one place (the README and the
run's transcripts quote it) and can be read, tested and versioned on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from memcollab_eval.agent.blocks import FINAL_COMMENT

# 2: the code instruction says that the task's "single code block" request is about the final solution
# 3: a final block holding only the marker finalises the last solution proposed before (it was scored empty)
# 4: a reply that starts with the `# final` line is a final block even when its opening fence is missing
PROTOCOL_VERSION = 4

_RUN_RULE = (
    "- To run code, write it in a ```python block and end your reply there. The harness runs each block on its "
    "own in a sandbox (nothing is kept between blocks) and replies with what it printed, so use print().\n"
)
_TURNS_RULE = "- You have at most {max_turns} replies."
MATH_INSTRUCTION = (
    "You may run Python code while you solve the problem.\n" + _RUN_RULE
    + "- When you know the answer, write it as \\boxed{answer}. That ends the conversation: code in that reply "
      "is not run.\n" + _TURNS_RULE
)
CODE_INSTRUCTION = (
    "You may run Python code while you solve the task.\n" + _RUN_RULE
    + "- A block that defines the required function is also run with the task's example test (when it has one), "
      "and the reply says whether the test passed.\n"
      "- When your solution is ready, reply with the complete solution in a ```python block whose first line is "
      "exactly `" + FINAL_COMMENT + "`. That block is your answer and ends the conversation: it is not run.\n"
      "- Where the task asks for a single code block, it means this final solution; before it you may run as "
      "many blocks as you need.\n"
    + _TURNS_RULE
)
NO_ACTION = {
    "math": "There was no ```python block to run and no final answer. Write code to run, or give the final answer "
            "as \\boxed{answer}.",
    "code": "There was no ```python block to run and no final solution. Write code to run, or give the complete "
            "solution in a ```python block whose first line is `" + FINAL_COMMENT + "`.",
}
LAST_TURN = {
    "math": "This is your last reply: give the final answer as \\boxed{answer}.",
    "code": "This is your last reply: give the complete solution in a ```python block whose first line is `"
            + FINAL_COMMENT + "`.",
}


def instruction(domain: str, max_turns: int) -> str:
    """The system message of an episode."""
    template = MATH_INSTRUCTION if domain == "math" else CODE_INSTRUCTION
    return template.replace("{max_turns}", str(max_turns))


@dataclass(frozen=True)
class BlockReport:
    """What one executed block did, as the model is told (``shown`` is already truncated)."""

    index: int
    status: str  # ok | error | timeout
    shown: str
    seconds: float
    test: str | None = None  # the visible test run after the block
    test_passed: bool | None = None
    timeout: float = 0.0


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``: its start and its end (where an error's last
    line is), with a note in between saying how much was cut."""
    if len(text) <= limit:
        return text
    head = limit - limit // 2
    tail = limit - head
    note = f"\n[... output truncated: {len(text) - limit} of {len(text)} characters omitted ...]\n"
    return text[:head] + note + (text[-tail:] if tail else "")


def clean_error(detail: str) -> str:
    """The sandbox's error detail as a plain Python traceback: its first line repeats the
    exception, and the frames of the sandbox worker are noise to the model."""
    if "Traceback (most recent call last):" not in detail:
        return detail.replace(" before the tests completed", "").strip()
    trace = detail[detail.index("Traceback (most recent call last):"):]
    out, skip = [], False
    for line in trace.splitlines():
        if line.lstrip().startswith('File "') and "<program>" not in line and "<test>" not in line:
            skip = True
            continue
        if skip and (line.startswith("    ") and not line.lstrip().startswith('File "')):
            continue  # the source lines (and ^^^ markers) of a skipped frame
        skip = False
        out.append(line)
    return "\n".join(out).strip()


def report_text(report: BlockReport, n_blocks: int) -> str:
    """One block's paragraph: what happened in a sentence, then its (truncated) output."""
    name = "The code block" if n_blocks == 1 else f"Code block {report.index}"
    limit = f"it was stopped after {report.timeout:g} s, the time limit."
    if report.test is None:
        head = {"ok": f"{name} ran.", "error": f"{name} raised an error.",
                "timeout": f"{name} did not finish: {limit}"}[report.status]
    else:
        test = f"the example test `{report.test.strip()}`"
        ran = f"{name} defines the required function, so {test} ran after it"
        if report.status == "timeout":
            head = f"{name} defines the required function and ran with {test}, but did not finish: {limit}"
        else:
            head = {True: f"{ran}: it passed.", False: f"{ran}: it failed.",
                    None: f"{name} defines the required function, but it raised an error before {test} could "
                          "run."}[report.test_passed]
    body = report.shown if report.shown.strip() else "(no output)"
    return f"{head}\nOutput:\n```output\n{body.rstrip()}\n```"


def feedback(reports: list[BlockReport], *, domain: str, skipped: int, incomplete: int, last_turn: bool) -> str:
    """The user turn after a reply that was not final."""
    parts = [report_text(r, len(reports)) for r in reports] if reports else [NO_ACTION[domain]]
    if skipped:
        parts.append(f"({skipped} more code block(s) in your reply were not run: at most {len(reports)} per reply.)")
    if incomplete:
        parts.append("(A code block was not closed with ``` - your reply was probably cut off by the length limit.)")
    if last_turn:
        parts.append(LAST_TURN[domain])
    return "\n\n".join(parts)
