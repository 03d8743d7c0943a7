"""Chat-message fixes applied around a GGUF's Jinja chat template.

Templates differ in what they accept; these two helpers make lm-eval's requests render the
way Hugging Face's ``apply_chat_template`` would, without dropping content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def continue_final_message(rendered: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """Cut the rendered chat right after the final message's content (HF ``continue_final_message``).

    lm-eval calls ``apply_chat_template(..., add_generation_prompt=False)`` when the last message
    is a partial assistant turn to be continued; the template would close that turn with an
    end-of-turn marker, which must go so the model continues the text instead of starting anew.
    """
    final = str(messages[-1].get("content") or "")
    for candidate in (final, final.strip()):
        if candidate and candidate in rendered:
            return rendered[: rendered.rindex(candidate) + len(candidate)]
    return rendered


def merge_system_into_user(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fold system messages into the next user message, for templates that reject a system role.

    Why not drop them (as lm-eval's HF backend does): the system message may carry the memory
    bank or the task instruction, and losing it silently would change what is being measured.
    """
    merged: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message.get("role") == "system":
            pending.append(str(message.get("content") or ""))
            continue
        message = dict(message)
        if pending and message.get("role") == "user":
            message["content"] = "\n\n".join([*pending, str(message.get("content") or "")])
            pending = []
        merged.append(message)
    if pending:
        merged.insert(0, {"role": "user", "content": "\n\n".join(pending)})
    return merged
