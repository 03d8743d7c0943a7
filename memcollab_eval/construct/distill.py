"""Contrastive distillation: a summarizer model turns each (preferred, unpreferred) pair
into "enforce <invariant>; avoid <violation>" lines.

Prompts are versioned files under ``memcollab_eval/prompts``. Parsing is strict: only lines
of the exact form count; a reply with none is retried once with a format reminder, then
logged as malformed and skipped -- never silently kept. Every parsed lesson then goes
through the abstraction gate (``entry_lint``).
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

PROMPT_VERSION = "v2"  # v1: small summarizers copied its example lessons verbatim
MAX_LESSONS = 2
MAX_SOLUTION_CHARS = 2500

_LESSON = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*enforce\s+(?P<enforce>.+?)\s*;\s*avoid\s+(?P<avoid>.+?)\s*\.?\s*$",
                     re.IGNORECASE)


@dataclass(frozen=True)
class Lesson:
    enforce: str
    avoid: str


def prompt_template(kind: str) -> str:
    """``contrast`` (preferred vs unpreferred), ``self`` (a success alone) or ``retry``."""
    name = {"contrast": "distill_contrast", "self": "distill_self", "retry": "retry"}[kind]
    return (importlib.resources.files("memcollab_eval") / "prompts" / f"{name}_{PROMPT_VERSION}.txt").read_text()


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_SOLUTION_CHARS else text[:MAX_SOLUTION_CHARS] + "\n[... truncated]"


def distill_prompt(*, domain: str, problem: str, preferred: str, unpreferred: str | None,
                   unpreferred_status: str = "fail") -> str:
    if unpreferred is None:
        return prompt_template("self").format(domain=domain, problem=problem.strip(), preferred=_clip(preferred))
    return prompt_template("contrast").format(domain=domain, problem=problem.strip(), preferred=_clip(preferred),
                                              unpreferred=_clip(unpreferred), unpreferred_status=unpreferred_status)


def prompt_examples() -> list[str]:
    """The example lessons shown in the prompts: a lesson that repeats one is not distilled."""
    lines = []
    for kind in ("contrast", "self"):
        lines += [line.strip() for line in prompt_template(kind).splitlines() if line.lower().startswith("enforce ")]
    return sorted(set(lines))


def parse_lessons(reply: str) -> list[Lesson]:
    """Lines of the exact form ``enforce ...; avoid ...`` (at most two); [] means malformed."""
    lessons = []
    for line in reply.splitlines():
        m = _LESSON.match(line.replace("**", ""))
        if m:
            enforce, avoid = m.group("enforce").strip(" ."), m.group("avoid").strip(" .")
            if enforce and avoid and ";" not in avoid:
                lessons.append(Lesson(enforce, avoid))
    return lessons[:MAX_LESSONS]
