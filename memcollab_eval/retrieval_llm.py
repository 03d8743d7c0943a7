"""Prompting-based retrieval: the target model is shown candidate entries and picks up to k, or none.

The paper's ablation of its task-aware retrieval: instead of a score threshold, the model that
will solve the problem reads the problem and a short numbered list of lessons (the
``llm_candidates`` best by the ranker's score, see retrieve.Retriever) and answers with the
numbers of those that help, or ``none``. Its answer is parsed leniently (the first line that
holds a number or "none"; numbers outside the list and repeats are dropped; at most k are kept);
an answer that names nothing counts as "none", so a confused model abstains rather than
injecting noise.

The model comes in through :class:`EntryChooser`, a one-method interface: the evaluate job wraps
the lm-eval model it built (``LMChooser``), and tests use the scripted test double. All problems
of a run are asked in one ``generate_until`` call, so batching backends answer them together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from memcollab_eval.bank.store import MemoryEntry

PROMPT_VERSION = 1
SELECT_PROMPT = """You are about to solve the problem below. Here are lessons written after past solutions to \
other problems. Pick the lessons that would really help with THIS problem: at most {k}, and none if none fits \
(most problems need none).

Problem:
{problem}

Lessons:
{lessons}

Answer with the numbers of the helpful lessons separated by commas (for example: {example}), or with the \
word none. Write nothing else."""
_NUMBER = re.compile(r"\d+")
_NONE = re.compile(r"\b(none|no lesson|nothing)\b", re.IGNORECASE)


class EntryChooser(Protocol):
    """Picks entries for problems: for each problem, indices into its candidate list (at most k)."""

    def choose(self, problems: Sequence[str], candidates: Sequence[Sequence[MemoryEntry]],
               k: int) -> list[list[int]]: ...


def selection_prompt(problem: str, candidates: Sequence[MemoryEntry], k: int) -> str:
    lessons = "\n".join(f"{i}. {entry.render()}" for i, entry in enumerate(candidates, 1))
    example = ", ".join(str(i) for i in range(1, min(k, len(candidates), 2) + 1))
    return SELECT_PROMPT.format(k=k, problem=problem.strip(), lessons=lessons, example=example)


def parse_choice(reply: str, n_candidates: int, k: int) -> list[int] | None:
    """0-based indices the reply names (in its order, valid and distinct, at most k), ``[]`` for
    an explicit none, ``None`` when the reply names neither (counted, then treated as none)."""
    for line in reply.strip().splitlines():
        numbers = [int(m) for m in _NUMBER.findall(line)]
        valid = list(dict.fromkeys(n - 1 for n in numbers if 1 <= n <= n_candidates))
        if valid:
            return valid[:k]
        if _NONE.search(line):
            return []
    return None


@dataclass
class ChooserStats:
    asked: int = 0
    picked_none: int = 0
    unparsed: int = 0  # replies that named no candidate and did not say none (treated as none)
    replies: list[str] = field(default_factory=list)


def greedy_replies(lm: Any, prompts: Sequence[str], *, chat: bool, max_gen_toks: int) -> list[str]:
    """Short greedy answers of an lm-eval model to ``prompts``, in one ``generate_until`` call (a
    batching backend decodes them together), each ending at a blank line. ``chat``: render each
    prompt with the model's chat template, as the run does. Shared by the entry chooser and the
    LLM categorizer, which put short questions to the run's model the same way."""
    from lm_eval.api.instance import Instance  # lm-eval's API module: loaded only when a model is asked

    if not prompts:
        return []
    gen_kwargs = {"until": ["\n\n"], "max_gen_toks": max_gen_toks, "do_sample": False, "temperature": 0.0}
    requests = []
    for i, prompt in enumerate(prompts):
        text = lm.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True) \
            if chat else prompt
        requests.append(Instance(request_type="generate_until", doc={}, idx=i, arguments=(text, dict(gen_kwargs))))
    replies = list(lm.generate_until(requests))
    if len(replies) != len(requests):
        raise RuntimeError(f"the model returned {len(replies)} replies for {len(requests)} requests")
    return replies


class LMChooser:
    """An :class:`EntryChooser` backed by an lm-eval model (``generate_until``), greedy, short
    answers. ``chat``: render the prompt with the model's chat template, as the run does."""

    def __init__(self, lm: Any, *, chat: bool = True, max_gen_toks: int = 24) -> None:
        self.lm, self.chat, self.max_gen_toks = lm, chat, max_gen_toks
        self.stats = ChooserStats()

    def choose(self, problems: Sequence[str], candidates: Sequence[Sequence[MemoryEntry]],
               k: int) -> list[list[int]]:
        prompts = [selection_prompt(p, c, k) for p, c in zip(problems, candidates, strict=True)]
        replies = greedy_replies(self.lm, prompts, chat=self.chat, max_gen_toks=self.max_gen_toks)
        out = []
        for reply, cands in zip(replies, candidates, strict=True):
            picked = parse_choice(reply, len(cands), k)
            self.stats.asked += 1
            self.stats.replies.append(reply)
            if picked is None:
                self.stats.unparsed += 1
            if not picked:
                self.stats.picked_none += 1
            out.append(picked or [])
        return out


__all__ = ["PROMPT_VERSION", "ChooserStats", "EntryChooser", "LMChooser", "greedy_replies", "parse_choice",
           "selection_prompt"]
