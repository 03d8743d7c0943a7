"""The agent protocol: a multi-turn episode in which the model may run Python in the
sandbox before it commits to a final answer.

Why a state machine (``EpisodeRunner``) and not only a loop: the lm-eval wrapper advances
many episodes in lock-step so that each model call is one batch (vLLM and HF batch, a
per-episode loop would not); ``run_episode`` is the same logic for a single
``chat(messages) -> str`` callable. Nothing here knows about lm-eval or a particular model.

An episode: a system message (the protocol instruction) and the problem as the first
user message; each assistant reply either ends the episode (a final answer, see
:mod:`memcollab_eval.agent.blocks` for the markers) or has its ```python blocks run in
the sandbox, their output coming back as the next user message; after ``max_turns``
replies the episode ends regardless. Turns = number of assistant messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from memcollab_eval.agent import blocks as B
from memcollab_eval.agent.messages import BlockReport, clean_error, feedback, instruction, truncate
from memcollab_eval.verify import Execution, SandboxConfig, execute_code

Domain = Literal["math", "code"]
Stopped = Literal["final", "max_turns"]
Message = dict[str, str]
Executor = Callable[[str, float], Execution]

MAX_BLOCKS_PER_TURN = 4  # a runaway reply must not cost max_turns x many x block_timeout


@dataclass(frozen=True)
class AgentConfig:
    """How an episode runs. ``sandbox`` is the sandbox configuration blocks run under (None =
    the default, as the scorer uses); ``use_chat_template`` tells the lm-eval wrapper to
    render turns with the model's chat template (else a plain "Role: text" transcript)."""

    max_turns: int = 5
    output_chars: int = 2000
    block_timeout: float = 10.0
    sandbox: SandboxConfig | None = None
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"agent.max_turns must be >= 1, got {self.max_turns}")
        if self.output_chars < 1:
            raise ValueError(f"agent.output_chars must be >= 1, got {self.output_chars}")
        if self.block_timeout <= 0:
            raise ValueError(f"agent.block_timeout must be > 0, got {self.block_timeout}")

    def summary(self) -> dict[str, float | int]:
        return {"max_turns": self.max_turns, "output_chars": self.output_chars, "block_timeout": self.block_timeout}


@dataclass(frozen=True)
class AgentTask:
    """One problem as the agent sees it: the prompt (memory included), the domain, and for
    code the visible example test and the setup code (imports) every run gets."""

    prompt: str
    domain: Domain
    visible_test: str = ""
    setup_code: str = ""

    def __post_init__(self) -> None:
        if self.domain not in ("math", "code"):
            raise ValueError(f"agent task domain must be 'math' or 'code', got {self.domain!r}")


@dataclass(frozen=True)
class BlockRun:
    """One executed block: the turn (1-based assistant reply) it came from, its code, what the
    model was shown, and for a solution block the visible test and whether it passed."""

    turn: int
    index: int
    code: str
    status: str  # ok | error | timeout
    output: str
    seconds: float
    visible_test: str | None = None
    test_passed: bool | None = None


@dataclass(frozen=True)
class Episode:
    turns: int
    messages: tuple[Message, ...]
    blocks: tuple[BlockRun, ...]
    final_text: str
    stopped: Stopped
    domain: Domain


def sandbox_executor(config: AgentConfig) -> Executor:
    """Blocks run only in the sandbox: this is the one executor the protocol uses by default."""
    sandbox = config.sandbox or SandboxConfig()
    return lambda program, timeout: execute_code(program, timeout=timeout, config=sandbox)


@dataclass
class EpisodeRunner:
    """One episode, advanced by the caller: ``messages`` is what to send the model next,
    ``receive(reply)`` takes its answer (and runs its code), ``done`` says when to stop."""

    task: AgentTask
    config: AgentConfig = field(default_factory=AgentConfig)
    execute: Executor | None = None
    messages: list[Message] = field(init=False)
    runs: list[BlockRun] = field(init=False, default_factory=list)
    stopped: Stopped | None = field(init=False, default=None)
    final_text: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.messages = [{"role": "system", "content": instruction(self.task.domain, self.config.max_turns)},
                         {"role": "user", "content": self.task.prompt}]
        self._function = B.tested_function(self.task.visible_test) if self.task.visible_test else None
        if self.execute is None:
            self.execute = sandbox_executor(self.config)

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    @property
    def done(self) -> bool:
        return self.stopped is not None

    def receive(self, reply: str) -> None:
        if self.done:
            raise RuntimeError("the episode has ended; it takes no more replies")
        self.messages.append({"role": "assistant", "content": reply})
        final = self._final_answer(reply)
        if final is not None:
            self.stopped, self.final_text = "final", final
            return
        if self.turns >= self.config.max_turns:
            self.stopped, self.final_text = "max_turns", self._fallback_answer()
            return
        candidates = B.python_blocks(reply)
        reports = [self._run(block, i) for i, block in enumerate(candidates[:MAX_BLOCKS_PER_TURN], start=1)]
        self.messages.append({"role": "user", "content": feedback(
            reports, domain=self.task.domain, skipped=max(0, len(candidates) - MAX_BLOCKS_PER_TURN),
            incomplete=sum(not b.closed for b in candidates[:MAX_BLOCKS_PER_TURN]),
            last_turn=self.turns == self.config.max_turns - 1)})

    def episode(self) -> Episode:
        if not self.done:
            raise RuntimeError("the episode has not ended yet")
        assert self.stopped is not None
        return Episode(turns=self.turns, messages=tuple(dict(m) for m in self.messages), blocks=tuple(self.runs),
                       final_text=self.final_text, stopped=self.stopped, domain=self.task.domain)

    # ---- answers ---------------------------------------------------------------------

    def _final_answer(self, reply: str) -> str | None:
        if self.task.domain == "math":
            return reply if B.has_boxed_answer(reply) else None
        block = B.final_block(reply)
        if block is None:
            return None
        if B.marker_only(block):  # "```python\n# final\n```": the solution it already proposed is the answer
            earlier = self._last_proposed()
            return B.fenced(block.code) if earlier is None else B.fenced(earlier.code)
        return B.fenced(block.code)

    def _fallback_answer(self) -> str:
        """What is scored when the turns ran out: for math the last reply (the scorer falls back
        to "the answer is" or the last number); for code the last proposed solution block,
        else the last python block, of any reply."""
        replies = [m["content"] for m in self.messages if m["role"] == "assistant"]
        if self.task.domain == "math":
            return replies[-1]
        chosen = self._last_proposed()
        return replies[-1] if chosen is None else B.fenced(chosen.code)

    def _last_proposed(self) -> B.CodeBlock | None:
        """The last block of any reply that defines the tested function, else the last python
        block with code in it (marker-only final blocks are not proposals)."""
        replies = [m["content"] for m in self.messages if m["role"] == "assistant"]
        proposed = [b for r in replies for b in B.python_blocks(r) if not (b.final and B.marker_only(b))]
        solutions = [b for b in proposed if self._function and B.defines_function(b.code, self._function)]
        return (solutions or proposed or [None])[-1]

    # ---- running a block -------------------------------------------------------------

    def _run(self, block: B.CodeBlock, index: int) -> BlockReport:
        setup = self.task.setup_code if self.task.domain == "code" else ""
        program = setup + block.code
        test = None
        if self.task.domain == "code" and self._function and B.defines_function(block.code, self._function):
            test = self.task.visible_test
            program = program.rstrip("\n") + "\n\n" + B.explain_assert(test)
        assert self.execute is not None
        ran = self.execute(program, self.config.block_timeout)
        status = {"pass": "ok", "timeout": "timeout"}.get(ran.status, "error")
        text = ran.output
        if status == "error":
            text = (text.rstrip("\n") + "\n" if text.strip() else "") + clean_error(ran.detail)
        test_passed = None
        if test is not None and status != "timeout":
            test_passed = True if status == "ok" else _failed_in_test(ran.detail, setup + block.code)
        shown = truncate(text, self.config.output_chars)
        self.runs.append(BlockRun(turn=self.turns, index=index, code=block.code, status=status, output=shown,
                                  seconds=round(ran.seconds, 3), visible_test=test, test_passed=test_passed))
        return BlockReport(index=index, status=status, shown=shown, seconds=ran.seconds, test=test,
                           test_passed=test_passed, timeout=self.config.block_timeout)


def _failed_in_test(detail: str, code_before_test: str) -> bool | None:
    """False when the error was raised while the appended test ran (the outermost frame of the
    program is below the block's own lines, even if the error came from inside the tested
    function), None when the block itself failed before the test started."""
    lines = [int(n) for n in re.findall(r'File "<program>", line (\d+)', detail)]
    if not lines:
        return None
    return False if lines[0] > code_before_test.count("\n") else None


def run_episode(task: AgentTask, chat: Callable[[list[Message]], str], config: AgentConfig | None = None,
                execute: Executor | None = None) -> Episode:
    """Run one episode with ``chat`` answering each turn (given the messages so far)."""
    runner = EpisodeRunner(task, config or AgentConfig(), execute)
    while not runner.done:
        runner.receive(chat([dict(m) for m in runner.messages]))
    return runner.episode()
