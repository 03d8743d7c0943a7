"""String work for the math checker: find the final answer in a response (and in a
gold field), and the few rewrites of an answer that math-verify needs.

It is kept apart from equivalence because it is pure string work: no sympy, no
timeout needed, testable exhaustively. Extraction rules, in order of trust, are the
ones MATH/GSM8K harnesses converge on:

1. the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces, also ``\\boxed 5``);
   adjacent boxes joined by "," / ";" / "and" / "or" / ``\\quad`` count as one
   multi-part answer; boxes with only spaces or ``$`` between them are successive
   attempts, and the last one is the answer;
2. the last ``#### N`` (GSM8K's own answer format);
3. the last "answer is ..." / "final answer is ..." / "Answer: ...";
4. the last number anywhere in the text.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

KINDS: tuple[str, ...] = ("math", "gsm8k")

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
# Between two boxes that together form one answer ("\boxed{1}$ and $\boxed{2}").
_BOX_JOINER_RE = re.compile(r"^(?:\s|\$|,|;|\\quad|\\qquad|\band\b|\bor\b|\\text\{\s*(?:and|or)\s*\})*$")
# ...of which at least one must be a real joiner: "\boxed{1} \boxed{2} \boxed{5}" is three attempts.
_BOX_REAL_JOINER_RE = re.compile(r",|;|\\quad|\\qquad|\band\b|\bor\b")
_HASHES_RE = re.compile(r"####\s*([^\n]*)")
# The tail is captured in a lookahead so matches may overlap: in "Answer: The
# final answer is 7" the inner "answer is" must still be found.
_ANSWER_IS_RE = re.compile(
    r"\banswer\s*(?:\*\*)?\s*(?:is\b\s*:?|:)\s*(?:\*\*)?\s*(?=(.+))", re.IGNORECASE
)
_EMPTY_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
# Integers with thousands separators first so "1,000" stays one number; then plain
# decimals and simple fractions such as 3/4.
_NUMBER_RE = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![\d])|(?<![\w.])-?\.\d+"
)
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
# Decorations around a GSM8K-style number that carry no value.
_NUMBER_NOISE_RE = re.compile(r"\\\$|\$|\\!|\{,\}|\\,|\\text\{\s*\}")


def check_kind(kind: str) -> str:
    """Reject unknown kinds early, so a typo fails loudly instead of scoring 0."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds are: {', '.join(KINDS)}")
    return kind


def _box_content(text: str, start: int) -> tuple[str, int] | None:
    """Content of the box whose command ends at ``start``; ``None`` if unclosed.

    Brace counting (not a regex) because answers nest braces: ``\\boxed{\\frac{1}{2}}``.
    """
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":  # "\boxed 5": the box holds a single token
        token = re.match(r"[^\s$]+", text[i:])
        return (token.group(0).rstrip(".,;:"), i + token.end()) if token else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip(), j + 1
    return None


def last_boxed(text: str) -> str | None:
    """The last boxed answer, merged with the boxes right before it if only
    separators with a joiner lie between them (models often box each of several
    solutions: "$\\boxed{2}$ and $\\boxed{-3}$"); whitespace alone does not join."""
    boxes: list[tuple[int, int, str]] = []
    for match in _BOX_RE.finditer(text):
        found = _box_content(text, match.end())
        if found is not None and found[0]:
            boxes.append((match.start(), found[1], found[0]))
    if not boxes:
        return None
    parts = [boxes[-1][2]]
    for (_, end, content), (next_start, _, _) in zip(reversed(boxes[:-1]), reversed(boxes[1:]), strict=False):
        gap = text[end:next_start]
        if not _BOX_JOINER_RE.match(gap) or not _BOX_REAL_JOINER_RE.search(gap):
            break
        if content != parts[0]:  # a restated box is not a second answer
            parts.insert(0, content)
    return ", ".join(parts)


# A leading math span: $$..$$, $..$ (``\\$`` is an escaped dollar), \\(..\\) or \\[..\\].
_LEADING_MATH_RE = re.compile(
    r"^(?:\$\$(.+?)\$\$|\$((?:\\\$|[^$])+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\])", re.DOTALL
)


def _trim_span(span: str) -> str:
    """Cut an "answer is ..." tail down to the answer itself: the first math
    span if it starts with one, else up to the end of the sentence."""
    span = _EMPTY_BOX_RE.sub("", span).strip().strip("*").strip()
    math = _LEADING_MATH_RE.match(span)
    if math:
        return next(group for group in math.groups() if group is not None).strip()
    span = re.split(r"\.(?:\s|$)|\n", span.lstrip("$"), maxsplit=1)[0]
    return span.strip().rstrip(".,;:$").strip("*").strip()


def _last_match(pattern: re.Pattern[str], text: str) -> str | None:
    """Group 1 of the last non-empty match, trimmed."""
    for match in reversed(list(pattern.finditer(text))):
        value = _trim_span(match.group(1))
        if value:
            return value
    return None


def last_number(text: str) -> str | None:
    """The last number in the text: the fallback of every GSM8K harness."""
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def _clean_number(text: str) -> str:
    """Drop currency signs and LaTeX thousands spacing: ``\\$1,\\!000.`` -> ``1,000``."""
    return _NUMBER_NOISE_RE.sub("", text).strip().rstrip(".")


def to_number(text: str) -> Fraction | None:
    """Exact value of a plain number such as ``$1,000.00`` or ``-3``, else ``None``.

    Fractions (not floats) so ``29.00 == 29`` holds exactly and no rounding
    tolerance can make two different GSM8K answers equal.
    """
    cleaned = _clean_number(text)
    if not _PLAIN_NUMBER_RE.fullmatch(cleaned):
        return None
    # via Decimal: Fraction("...") goes through int(str), which refuses more than 4,300 digits
    return Fraction(Decimal(cleaned.replace(",", "")))


def _as_gsm8k_number(answer: str) -> str:
    """Reduce a GSM8K answer span to its number ("18 dollars" -> "18"); keep the
    span when it is not one number (e.g. ``\\frac{1}{2}``) for the math path."""
    cleaned = _clean_number(answer)
    if not _PLAIN_NUMBER_RE.fullmatch(cleaned):
        numbers = _NUMBER_RE.findall(cleaned)
        if len(numbers) != 1:
            return answer
        cleaned = numbers[0]
    return cleaned.replace(",", "")


def extract_answer(response: str, kind: str = "math") -> str | None:
    """The final answer stated in ``response``, or ``None`` if there is none."""
    check_kind(kind)
    answer = (
        last_boxed(response)
        or _last_match(_HASHES_RE, response)
        or _last_match(_ANSWER_IS_RE, response)
        or last_number(response)
    )
    if answer is None:
        return None
    return _as_gsm8k_number(answer) if kind == "gsm8k" else answer


def extract_gold(gold: str, kind: str = "math") -> str:
    """The reference answer: a bare answer, a MATH solution (last box) or a full
    GSM8K answer field (after ``####``)."""
    check_kind(kind)
    if kind == "gsm8k" and "####" in gold:
        return _as_gsm8k_number(gold.rsplit("####", 1)[1].strip())
    if kind == "math" and _BOX_RE.search(gold):
        return last_boxed(gold) or gold.strip()
    return _as_gsm8k_number(gold.strip()) if kind == "gsm8k" else gold.strip()


# ------------------------------------------- rewrites for equivalence checking

_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\\text\{\s*percent(?:age)?\s*\}|\bpercent(?:age)?\b)")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm)\s*\{([^{}]*)\}")
_THIN_SPACE_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\[,;:! ]|\{,\})\s*(?=\d{3}(?!\d))")
_BASE_RE = re.compile(r"[0-9A-Za-z]+_\{?(\d+)\}?")
_VECTOR_RE = re.compile(r"\\begin\{([pbv]?matrix)\}((?:(?!&).)*?)\\end\{\1\}", re.DOTALL)


def _vector_as_tuple(match: re.Match[str]) -> str:
    rows = [row.strip() for row in match.group(2).split("\\\\") if row.strip()]
    return "(" + ", ".join(rows) + ")"


def rewrites(answer: str) -> list[str]:
    """Alternative readings of ``answer`` for cases math-verify 0.9 gets wrong:

    * ``50\\%``: latex2sympy2_extended 1.11 with the antlr 4.9.3 parser crashes on
      any percent atom, so the number is compared without the sign (50% == 50, as
      MATH graders do) and as a fraction (50% == 0.5);
    * ``\\text{10 inches}`` / ``\\text{A, C}``: text wrappers hide the number or list;
    * ``1\\,000``: a thin-space thousands separator reads as ``1*0``;
    * a column vector ``\\begin{pmatrix}1\\\\2\\end{pmatrix}`` never equals the
      tuple ``(1, 2)`` the model may write for it.
    """
    text = _TEXT_RE.sub(r"\1", answer)
    text = _THIN_SPACE_THOUSANDS_RE.sub("", text)
    text = _VECTOR_RE.sub(_vector_as_tuple, text)
    variants = [text]
    if _PERCENT_RE.search(text):
        number = _PERCENT_RE.sub("", text).strip()
        variants = [number, f"\\frac{{{number}}}{{100}}"]
    return [v for v in variants if v and v != answer]


_TOWER_RE = re.compile(r"\s*(\d+)\s*\^\s*(?:\{(.+)\}|(\d+))\s*", re.DOTALL)
_LOG10_2 = math.log10(2)


def power_tower_log10(text: str) -> float | None:
    """log10 of a pure power tower such as ``9^{9^{9^9}}`` (``inf`` when even that
    overflows), ``None`` when ``text`` is not one. Estimated, never computed: sympy
    would try to build the number itself and run into the checker's timeout."""
    match = _TOWER_RE.fullmatch(text)
    if not match:
        return None
    base = int(match.group(1))
    if base < 2:
        return None
    if match.group(3) is not None:
        exponent = float(match.group(3))
    else:
        inner = power_tower_log10(match.group(2))
        if inner is None:
            inner_number = match.group(2).strip()
            if not inner_number.isdigit():
                return None
            exponent = float(inner_number)
        else:
            exponent = math.inf if inner > 308 else 10.0**inner
    return exponent * math.log10(base)


def magnitude_mismatch(pred: str, gold: str) -> str | None:
    """Why a huge power tower cannot equal a plain number (or the reverse), judged by
    their number of digits alone; ``None`` when that does not decide it."""
    for tower, other in ((pred, gold), (gold, pred)):
        log10 = power_tower_log10(tower)
        number = to_number(other) if log10 is not None and log10 > 50 else None
        if number is None:
            continue
        digits = _log10_abs(number)
        if abs(log10 - digits) > 1:
            size = "more than 10^308" if math.isinf(log10) else f"about {log10:.4g}"
            return f"{tower!r} has {size} digits, {other[:40]!r} about {max(digits, 0):.0f}"
    return None


def _log10_abs(number: Fraction) -> float:
    if number == 0:
        return -math.inf
    return (abs(number.numerator).bit_length() - number.denominator.bit_length()) * _LOG10_2


def bases_conflict(pred: str, gold: str) -> bool:
    """True for ``52_9`` vs ``52_8``: math-verify drops a number's base subscript,
    so a wrong base would otherwise pass."""
    pred_base, gold_base = _BASE_RE.fullmatch(pred.strip()), _BASE_RE.fullmatch(gold.strip())
    return bool(pred_base and gold_base and pred_base.group(1) != gold_base.group(1))
