"""The abstraction gate: reject memory entries that are about one problem, not a kind of problem.

A pilot on this machine (0.5B target, 1.5B summarizer) produced entries such as "When Josh
buys a hat for $10, enforce $20 - $10 = $10; ..." -- 15 of 23 carried numbers from their
problem, one code entry leaked a function name into later answers -- and with them the
target got worse. So an entry is rejected when it copies a number, a proper name or a code
identifier from its source problem or trajectories, restates the gold answer, or is too
short/long to be a usable constraint. Each rejection has a reason the manifest counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"(?<![A-Za-z_])\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
# identifiers with underscores or camelCase, calls, brackets, operators: code, not prose
_CODE_SHAPED = re.compile(r"\b\w+_\w+\b|\b[a-z]+[A-Z]\w*\b|\w\(|\[\]|==|!=|->|\bdef\b|\blambda\b")
MIN_CHARS, MAX_CHARS = 25, 320


@dataclass(frozen=True)
class LintResult:
    ok: bool
    reason: str = ""  # copied_example, number, answer, problem_specific, proper_name, code_identifier, too_short/long
    detail: str = ""


def _numbers(text: str) -> set[str]:
    return {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}


_SENTENCE_STARTERS = {
    "The", "This", "That", "These", "Those", "There", "Then", "Than", "What", "Which", "Who", "Whom", "Whose",
    "When", "Where", "Why", "How", "If", "In", "On", "At", "For", "From", "Find", "Given", "Let", "Suppose",
    "Write", "Return", "Compute", "Calculate", "Determine", "Express", "Each", "Every", "All", "Some", "After",
    "Before", "She", "He", "They", "Her", "His", "Their", "It", "Its", "One", "Two", "And", "But", "Also",
}


def _proper_names(source: str) -> set[str]:
    """Capitalised words of the problem (names of people, places, objects), apart from the
    words that are capitalised only because they start a sentence."""
    return {w for w in _WORD.findall(source) if len(w) >= 3 and w[0].isupper() and not w.isupper()} - _SENTENCE_STARTERS


def _words_of(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _halves(lesson: str) -> list[str]:
    body = lesson.split("enforce", 1)[-1]
    return [part.strip() for part in body.split("; avoid")]


def _jaccard(a: str, b: str) -> float:
    x, y = _words_of(a), _words_of(b)
    return len(x & y) / len(x | y) if x and y else 0.0


def copies_example(text: str, examples: list[str], threshold: float = 0.7) -> str | None:
    """The prompt example that ``text`` (or its enforce or avoid half) repeats, if any:
    small summarizers copy example halves as well as whole examples."""
    for example in examples:
        if any(_jaccard(mine, theirs) >= threshold for mine in _halves(text) for theirs in _halves(example)):
            return example
    return None


_COMMON = {
    "that", "this", "with", "from", "into", "each", "every", "when", "before", "after", "than", "then", "them",
    "they", "their", "there", "which", "what", "avoid", "enforce", "only", "also", "without", "while", "over",
    "under", "more", "less", "same", "other", "both", "first", "last", "number", "numbers", "value", "values",
    "total", "result", "answer", "final", "step", "steps", "problem", "question", "given", "correct", "correctly",
    "check", "checking", "make", "sure", "using", "use", "find", "finding", "calculate", "calculating", "list",
    "function", "return", "string", "input", "output", "element", "elements",
}


def problem_specific_words(text: str, problem: str) -> list[str]:
    """Content words of the lesson that come from the problem's own story (e.g. "cats",
    "shelter", "adopted"): a lesson built from them does not transfer."""
    mine = {w for w in _words_of(text) if len(w) >= 4 and w not in _COMMON}
    return sorted(mine & _words_of(problem))


def lint_entry(enforce: str, avoid: str, *, problem: str, trajectories: list[str], gold: str = "",
               examples: list[str] = ()) -> LintResult:
    """Decide whether an (enforce, avoid) pair is abstract enough, and the summarizer's own, to keep."""
    text = f"enforce {enforce}; avoid {avoid}"
    copied_example = copies_example(text, list(examples))
    if copied_example:
        return LintResult(False, "copied_example", f"repeats the prompt's example {copied_example!r}")
    if len(enforce) + len(avoid) < MIN_CHARS:
        return LintResult(False, "too_short", text)
    if len(text) > MAX_CHARS:
        return LintResult(False, "too_long", f"{len(text)} characters")
    sources = "\n".join([problem, *trajectories])
    copied = sorted(_numbers(text) & _numbers(sources))
    if copied:
        return LintResult(False, "number", f"copies {copied} from its source")
    gold_clean = gold.strip().strip("$").strip()
    if len(gold_clean) >= 2 and gold_clean.lower() in text.lower():
        return LintResult(False, "answer", f"restates the answer {gold_clean!r}")
    story = problem_specific_words(text, problem)
    if len(story) >= 3:
        return LintResult(False, "problem_specific", f"built from the problem's own words {story}")
    names = sorted(set(_WORD.findall(text)) & _proper_names(problem))
    if names:
        return LintResult(False, "proper_name", f"copies {names} from its problem")
    shaped = _CODE_SHAPED.search(text)
    if shaped:
        return LintResult(False, "code_identifier", f"code-shaped text {shaped.group(0)!r}")
    return LintResult(True)


_GENERIC = _COMMON | {
    "solution", "preferred", "unpreferred", "wrong", "instead", "went", "part", "ways", "where", "what", "does",
    "did", "done", "doing", "should", "would", "could", "been", "being", "have", "having", "used", "gives",
    "given", "getting", "correctly", "wrongly", "mistake", "mistakes", "kind", "kinds", "rule", "rules", "general",
}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content_stems(text: str) -> set[str]:
    return {_stem(w) for w in _words_of(text) if len(w) >= 4 and w not in _GENERIC}


def about_difference(enforce: str, avoid: str, difference: str) -> LintResult:
    """Is the lesson about the step the summarizer said differed? Why: a 1.5B summarizer writes
    a plausible DIFFERENCE line and then a lesson about something else (or a stock lesson);
    such a lesson explains nothing about this pair. The rule: the lesson shares at least one
    content word (stemmed; generic words such as "step", "solution", "check" do not count) with
    the DIFFERENCE line. A reply that says the difference is "none" yields no lesson. A reply
    without a DIFFERENCE line (prompt v1) is not judged here."""
    diff = difference.strip().strip(".").strip().lower()
    if not diff:
        return LintResult(True)
    if diff in {"none", "no difference", "n/a"}:
        return LintResult(False, "no_difference", "the summarizer found no step that differed")
    shared = sorted(_content_stems(f"{enforce} {avoid}") & _content_stems(difference))
    if not shared:
        return LintResult(False, "not_about_difference", f"shares no content word with DIFFERENCE: {difference[:120]!r}")
    return LintResult(True, detail=f"shares {shared}")


RESTATE_JACCARD = 0.9


def _inflection_stem(word: str) -> str:
    """The word without a verb or plural ending and a final e ("multiplying" and "multiply",
    "dividing" and "divide" meet); adverbs keep their "ly", unlike :func:`_stem`."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def _all_stems(text: str) -> set[str]:
    return {_inflection_stem(w) for w in _words_of(text)}


def restates_itself(enforce: str, avoid: str) -> LintResult:
    """Does the avoid half restate the enforce half? A 1.5B summarizer sometimes writes the same
    step on both sides ("enforce multiply the days by the hours; avoid multiplying the days by the
    hours"), which tells the reader to do and not to do one thing. The rule: the two halves'
    stemmed words (all of them: "first" against "last", "up to" against "greater than" make a real
    contrast) overlap with a Jaccard index of at least ``RESTATE_JACCARD``."""
    a, b = _all_stems(enforce), _all_stems(avoid)
    if not a or not b:
        return LintResult(True)
    overlap = len(a & b) / len(a | b)
    if overlap >= RESTATE_JACCARD:
        return LintResult(False, "restates_enforce",
                          f"the avoid half repeats the enforce half (word overlap {overlap:.2f}): it forbids what it asks")
    return LintResult(True)
