"""Contrastive distillation: a summarizer model turns each (preferred, unpreferred) pair
into "enforce <invariant>; avoid <violation>" lines.

Prompts are versioned files under ``memcollab_eval/prompts`` (v1 and v2 showed example
lessons, which a 1.5B summarizer copied; v3 shows only the form). Parsing accepts the
harmless variants small models write ("enforce X. avoid Y", "Enforce: X; Avoid: Y",
"enforce X - avoid Y") and nothing looser; a reply with no lesson is retried once with a
format reminder, then logged as malformed and skipped -- never silently kept. The reply's
DIFFERENCE line (where the unpreferred solution went wrong) is kept with each lesson, so the
gates can check that the lesson is about that step. Every parsed lesson then goes through
the abstraction gate (``entry_lint``) and, when enabled, the evidence gates (``evidence``).
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

PROMPT_VERSIONS = ("v1", "v2", "v3")
PROMPT_VERSION = "v2"  # the version banks built before v3 record (their manifests say so)
LATEST_PROMPT_VERSION = "v3"  # v1, v2: small summarizers copied their example lessons verbatim
# Pairs preferred by a judge or by human labels are not "verified correct / wrong": they get their own
# wording (distill_judged_*), written for v3 only.
JUDGED_PROMPT_VERSIONS = ("v3",)
MAX_LESSONS = 2
MAX_SOLUTION_CHARS = 2500

# "enforce X; avoid Y" and the variants small models write instead of the semicolon: a period,
# a comma, or a dash before "avoid", and a colon after either keyword.
_LESSON = re.compile(
    r"^\s*(?:[-*•]|\d+[.)])?\s*enforce\s*:?\s+(?P<enforce>.+?)\s*(?:;|\.|,|\s[-–—])\s*avoid\s*:?\s+"
    r"(?P<avoid>.+?)\s*\.?\s*$",
    re.IGNORECASE)
_DIFFERENCE = re.compile(r"^\s*(?:[-*]\s*)?(?:difference|key step)\s*:\s*(?P<text>.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Lesson:
    enforce: str
    avoid: str
    difference: str = ""  # the reply's DIFFERENCE line: the step the lesson should be about


def prompt_template(kind: str, version: str = PROMPT_VERSION) -> str:
    """``contrast`` (preferred vs unpreferred), ``self`` (a success alone) or ``retry``; ``judged_contrast``
    and ``judged_self`` for pairs a judge or a human preferred."""
    if version not in PROMPT_VERSIONS:
        raise ValueError(f"unknown distillation prompt version {version!r}; valid: {list(PROMPT_VERSIONS)}")
    if kind.startswith("judged_") and version not in JUDGED_PROMPT_VERSIONS:
        raise ValueError(f"judged pairs need distill_prompt_version {list(JUDGED_PROMPT_VERSIONS)}, not {version!r}")
    name = {"contrast": "distill_contrast", "self": "distill_self", "retry": "retry",
            "judged_contrast": "distill_judged_contrast", "judged_self": "distill_judged_self"}[kind]
    return (importlib.resources.files("memcollab_eval") / "prompts" / f"{name}_{version}.txt").read_text()


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_SOLUTION_CHARS else text[:MAX_SOLUTION_CHARS] + "\n[... truncated]"


def distill_prompt(*, domain: str, problem: str, preferred: str, unpreferred: str | None,
                   unpreferred_status: str = "fail", version: str = PROMPT_VERSION, why: str | None = None) -> str:
    """``why`` (e.g. "a judge scored it 5 of 5, the other 2 of 5") selects the judged wording: the pair's
    sides were chosen by a judge or a human, not by the verifier."""
    if why is not None:
        kind = "judged_self" if unpreferred is None else "judged_contrast"
        return prompt_template(kind, version).format(
            domain=domain, problem=problem.strip(), preferred=_clip(preferred),
            unpreferred="" if unpreferred is None else _clip(unpreferred), why=why)
    if unpreferred is None:
        return prompt_template("self", version).format(domain=domain, problem=problem.strip(),
                                                       preferred=_clip(preferred))
    return prompt_template("contrast", version).format(
        domain=domain, problem=problem.strip(), preferred=_clip(preferred), unpreferred=_clip(unpreferred),
        unpreferred_status=unpreferred_status)


def retry_prompt(version: str, prompt: str, reply: str) -> str:
    """The second try for a reply that gave no lesson in the required form.

    v1 and v2 append a format reminder to the whole conversation. Measured on the demo_v3 build's
    first 8 v3 replies (Qwen2.5-Coder-1.5B): that second try repeated the first reply word for
    word in 6 of 8 (and began with it in a seventh), after prefilling the ~800-token prompt and
    the reply again. So v3 asks for a repair instead: only the first reply, to be restated as
    lesson lines (a short prompt; its DIFFERENCE line is taken from the first reply). On those 8
    replies the repair gave a parsable lesson for 6.
    """
    if version in ("v1", "v2"):
        return prompt + "\n" + reply + "\n\n" + prompt_template("retry", version)
    return prompt_template("retry", version).format(reply=reply.strip())


def prompt_examples(version: str = PROMPT_VERSION) -> list[str]:
    """The example lessons shown in the prompts: a lesson that repeats one is not distilled.
    v3 shows none, so its lessons are checked against every earlier version's examples (a
    summarizer may still know them); v1 and v2 builds check their own, as they were built."""
    lines = []
    for v in (PROMPT_VERSIONS[: PROMPT_VERSIONS.index(version) + 1] if version == "v3" else (version,)):
        for kind in ("contrast", "self"):
            lines += [line.strip() for line in prompt_template(kind, v).splitlines()
                      if line.lower().startswith("enforce ")]
    return sorted(set(lines))


_HEADING = re.compile(r"^\s*#+\s*")
_HALF = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(?P<kind>enforce|avoid)\s*:\s*(?P<text>.+?)\s*$", re.IGNORECASE)


def _plain_lines(reply: str) -> list[str]:
    """The reply's lines without Markdown emphasis or heading marks, with two harmless layouts
    folded into the one-line forms the patterns read: a "DIFFERENCE:" heading whose text is on
    the next line, and "Enforce: X" with "Avoid: Y" on the line after it (as bullets, say)."""
    lines = [_HEADING.sub("", line.replace("**", "")) for line in reply.splitlines()]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        # the next non-blank line, one blank line in between at most
        j = next((k for k in (i + 1, i + 2) if k < len(lines) and lines[k].strip()), None)
        following = lines[j] if j is not None else None
        if following and re.fullmatch(r"\s*(?:difference|key step)\s*:\s*", line, re.IGNORECASE):
            out.append(line.strip() + " " + following.strip())
            i = j + 1
            continue
        first = _HALF.match(line)
        second = _HALF.match(following) if first and following else None
        if first and second and first.group("kind").lower() == "enforce" and second.group("kind").lower() == "avoid":
            out.append(f"enforce {first.group('text').rstrip(' .;')}; avoid {second.group('text')}")
            i = j + 1
            continue
        out.append(line)
        i += 1
    return out


def difference_line(reply: str) -> str:
    """The text of the reply's first ``DIFFERENCE:`` (contrast) or ``KEY STEP:`` (self) line, "" if none."""
    for line in _plain_lines(reply):
        m = _DIFFERENCE.match(line)
        if m:
            return m.group("text")
    return ""


def parse_lessons(reply: str, difference: str | None = None) -> list[Lesson]:
    """Lesson lines (``enforce ...; avoid ...`` or a variant, at most two), each with the reply's
    DIFFERENCE line (or ``difference``, e.g. a repaired reply's original one); [] means malformed.
    A line with two "avoid" halves is refused, not split."""
    difference = difference_line(reply) or (difference or "")
    lessons = []
    for line in _plain_lines(reply):
        m = _LESSON.match(line)
        if m:
            enforce, avoid = m.group("enforce").strip(" ."), m.group("avoid").strip(" .")
            if enforce and avoid and ";" not in avoid and not re.search(r"\bavoid\b", avoid, re.IGNORECASE):
                lessons.append(Lesson(enforce, avoid, difference))
    return lessons[:MAX_LESSONS]
