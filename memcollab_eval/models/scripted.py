"""A scripted test double for lm-eval: replays fixed responses, records what it was asked.

Selectable like any lm-eval model (``model=memcollab_scripted``), so tests and the hook
benchmark exercise the real evaluation path with no model weights. It is a test double
and says so: it never pretends to reason. When a script runs out it raises, so a test
cannot silently pass on an empty answer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lm_eval.models  # noqa: F401  - register built-ins before adding ours
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


class ScriptExhaustedError(RuntimeError):
    """The scripted model was asked more often than it has responses."""


@register_model("memcollab_scripted")
class ScriptedLM(LM):
    """Responses come from ``rules`` (a JSON file of ``[substring, response]`` pairs: the
    first pair whose substring occurs in the prompt answers), then ``script`` (a JSON list
    or JSONL file of strings, consumed in order), then ``default``. ``prompts`` keeps every
    rendered prompt."""

    def __init__(self, script: str | None = None, default: str | None = None, rules: str | None = None,
                 delay: float = 0.0, **_: object) -> None:
        super().__init__()
        self.delay = float(delay)  # seconds per response: lets tests interrupt a run midway
        self.responses: list[str] = _load_script(script) if script else []
        self.rules: list[tuple[str, str]] = _load_rules(rules) if rules else []
        self.default = default
        self.prompts: list[str] = []
        self.usage: list[dict] = []

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in requests:
            prompt = request.args[0]
            self.prompts.append(prompt)
            matched = next((response for key, response in self.rules if key in prompt), None)
            if matched is not None:
                text = matched
            elif self.responses:
                text = self.responses.pop(0)
            elif self.default is not None:
                text = self.default
            else:
                raise ScriptExhaustedError(f"scripted model has no response left for request {len(self.prompts)}")
            if self.delay:
                time.sleep(self.delay)
            self.usage.append({"prompt_chars": len(prompt), "completion_chars": len(text), "truncated": False})
            self.cache_hook.add_partial("generate_until", request.args, text)  # as real backends do: per reply
            out.append(text)
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("memcollab_scripted supports generate_until tasks only")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("memcollab_scripted supports generate_until tasks only")

    @property
    def tokenizer_name(self) -> str:
        return "memcollab_scripted"

    def chat_template(self, chat_template: bool | str = False) -> str:
        return "memcollab_scripted: <role>: content lines"

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        text = "".join(f"<{m['role']}>: {m['content']}\n" for m in chat_history)
        return text + ("<assistant>: " if add_generation_prompt else "")


def _load_script(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".jsonl"):
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = json.loads(text)
    if not all(isinstance(i, str) for i in items):
        raise ValueError(f"{path}: the script must be a list of strings")
    return items


def _load_rules(path: str) -> list[tuple[str, str]]:
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not all(isinstance(i, list) and len(i) == 2 and all(isinstance(x, str) for x in i) for i in items):
        raise ValueError(f"{path}: rules must be a JSON list of [substring, response] pairs")
    return [(k, v) for k, v in items]
