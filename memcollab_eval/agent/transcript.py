"""The transcript an agent episode leaves as its "response text".

lm-eval logs one string per request (``resps``) and hands the same string to the task's
``process_results``. Returning the whole episode as that string, wrapped as
``<memcollab_episode>{json}</memcollab_episode>``, keeps the turns, the executed blocks and
their outputs in the standard samples file with no side channel (and survives lm-eval's
request cache); the scorer unwraps it and scores ``final_text`` only.

The JSON object (``format`` = ``memcollab_episode/1``)::

    {"format", "protocol_version", "domain", "turns", "stopped": "final" | "max_turns",
     "final_text", "config": {"max_turns", "output_chars", "block_timeout"},
     "messages": [{"role", "content"}, ...],          # system, user, assistant, user, ...
     "blocks": [{"turn", "index", "code", "status": "ok" | "error" | "timeout", "output",
                 "seconds", "visible_test", "test_passed"}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from memcollab_eval.agent.messages import PROTOCOL_VERSION

OPEN, CLOSE = "<memcollab_episode>", "</memcollab_episode>"
FORMAT = "memcollab_episode/1"


class TranscriptError(ValueError):
    """A response looks like an episode transcript but cannot be read."""


@dataclass(frozen=True)
class Transcript:
    """The parts of a logged episode the scorer and the summaries need (``data`` is all of it)."""

    turns: int
    stopped: str
    final_text: str
    n_blocks: int
    data: dict[str, Any]


def encode_episode(episode: Any, config: dict[str, Any] | None = None) -> str:
    """``Episode`` -> the wrapped JSON text (keys in a fixed order, so reruns are byte-identical)."""
    payload = {
        "format": FORMAT, "protocol_version": PROTOCOL_VERSION, "domain": episode.domain, "turns": episode.turns,
        "stopped": episode.stopped, "final_text": episode.final_text, "config": dict(config or {}),
        "messages": [dict(m) for m in episode.messages], "blocks": [asdict(b) for b in episode.blocks],
    }
    return OPEN + json.dumps(payload, ensure_ascii=False) + CLOSE


def is_transcript(text: str) -> bool:
    return isinstance(text, str) and text.startswith(OPEN) and text.endswith(CLOSE)


def decode_transcript(text: str) -> Transcript | None:
    """The episode inside ``text``, or None for a plain (single-turn) response."""
    if not is_transcript(text):
        return None
    try:
        data = json.loads(text[len(OPEN):-len(CLOSE)])
        return Transcript(turns=int(data["turns"]), stopped=str(data["stopped"]), final_text=str(data["final_text"]),
                          n_blocks=len(data.get("blocks", [])), data=data)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TranscriptError(f"unreadable {OPEN} transcript ({exc}); starts with {text[:120]!r}") from None


def scored_text(response: str) -> str:
    """What the verifiers score: an episode's final answer, or the response itself."""
    transcript = decode_transcript(response)
    return response if transcript is None else transcript.final_text


def turns_of(response: str) -> int:
    """Assistant messages behind a response: an episode's turns, 1 for a single-turn response."""
    transcript = decode_transcript(response)
    return 1 if transcript is None else transcript.turns


def readable(response: str) -> str:
    """An episode as plain dialogue text (for prompts that quote a trajectory, e.g. distillation);
    a plain response is returned as is. The system instruction is left out."""
    transcript = decode_transcript(response)
    if transcript is None:
        return response
    parts = []
    for message in transcript.data["messages"][1:]:
        role = message["role"]
        if role == "user" and not parts:
            continue  # the problem itself: prompts that quote a trajectory show it already
        parts.append(("ASSISTANT: " if role == "assistant" else "HARNESS: ") + message["content"].strip())
    return "\n\n".join(parts)
