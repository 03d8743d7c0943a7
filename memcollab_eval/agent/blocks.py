"""Reading an assistant reply: its fenced code blocks, the final-answer markers, and the
visible example test a code task may show the model.

Why line-based parsing: a reply is read by humans and by this harness, so a fence is a line
that starts with three backticks (as Markdown renders it). A regex over the whole text can
take the closing fence of one block for the opening of the next when blocks of other
languages (``output``) sit between them; a line scanner cannot.

The markers are defined here once and quoted by the protocol instruction:

* math: the reply contains ``\\boxed{`` outside its code blocks;
* code: a ```python block whose first non-blank line is ``# final`` (any case; a line
  ``FINAL SOLUTION:`` or ``# final`` right before the block is accepted too, for models that
  label blocks instead of commenting them). A marked block that holds nothing but the marker
  finalises the last solution proposed in an earlier reply (``marker_only``).
* code, unopened: a reply whose first non-blank line is ``# final`` is a final python block
  even without its opening fence; it runs to the first closing fence or to the end of the
  reply. Qwen2.5-Coder-1.5B answers the instruction this way in a third of its replies and
  repeats it after every reminder, so reading it strictly scored a stated solution as none.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

PYTHON_LANGS = frozenset({"", "python", "py", "python3"})
FINAL_COMMENT = "# final"

_OPEN = re.compile(r"^\s*```\s*([\w+.-]*)\s*$")
_CLOSE = re.compile(r"^\s*```\s*$")
_FINAL_LINE = re.compile(r"^\s*#\s*final\b", re.IGNORECASE)
_FINAL_LABEL = re.compile(r"^\W*final\s+solution\W*$", re.IGNORECASE)
_DOCTEST = re.compile(r"^\s*>>>\s?(.*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of a reply. ``closed`` is False for a block cut off by the end of the
    reply (the token limit); ``final`` says whether it carries the final-solution marker."""

    code: str
    lang: str
    closed: bool
    final: bool

    @property
    def is_python(self) -> bool:
        return self.lang.lower() in PYTHON_LANGS


def find_blocks(text: str) -> list[CodeBlock]:
    """Every fenced block of ``text`` in order (any language; see ``CodeBlock.is_python``)."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    nonblank = [k for k, line in enumerate(lines) if line.strip()]
    # an unopened final block (module docstring); a marker line followed by a fence labels that block instead
    if nonblank and _FINAL_LINE.match(lines[nonblank[0]]) and not (
            len(nonblank) > 1 and _OPEN.match(lines[nonblank[1]])):
        code, j = _body(lines, nonblank[0])
        blocks.append(CodeBlock(code=code, lang="python", closed=j < len(lines), final=True))
        i = j + 1
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        label = _previous_nonblank(lines, i)
        code, j = _body(lines, i + 1)
        lang = opened.group(1)
        first = next((line for line in code.splitlines() if line.strip()), "")
        final = lang.lower() in PYTHON_LANGS and any(
            rule.match(text) for rule, text in ((_FINAL_LINE, first), (_FINAL_LABEL, label), (_FINAL_LINE, label)))
        blocks.append(CodeBlock(code=code, lang=lang, closed=j < len(lines), final=final))
        i = j + 1
    return blocks


def _body(lines: list[str], start: int) -> tuple[str, int]:
    """The code from line ``start`` up to the closing fence, and that fence's index
    (``len(lines)`` when the block is never closed)."""
    end = start
    while end < len(lines) and not _CLOSE.match(lines[end]):
        end += 1
    body = lines[start:end]
    return "\n".join(body) + ("\n" if body else ""), end


def _previous_nonblank(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.strip():
            return line
    return ""


def python_blocks(text: str) -> list[CodeBlock]:
    return [b for b in find_blocks(text) if b.is_python and b.code.strip()]


def final_block(text: str) -> CodeBlock | None:
    """The last python block marked final, if any."""
    marked = [b for b in python_blocks(text) if b.final]
    return marked[-1] if marked else None


def marker_only(block: CodeBlock) -> bool:
    """A final block with nothing in it but comments: the model declares a solution it
    proposed earlier final rather than repeating it."""
    return all(not line.strip() or line.lstrip().startswith("#") for line in block.code.splitlines())


def prose(text: str) -> str:
    """``text`` without its fenced blocks: where a math answer counts."""
    out, inside = [], False
    for line in text.splitlines():
        if inside:
            inside = not _CLOSE.match(line)
        elif _OPEN.match(line):
            inside = True
        else:
            out.append(line)
    return "\n".join(out)


def has_boxed_answer(text: str) -> bool:
    return "\\boxed" in prose(text)


def fenced(code: str) -> str:
    """A block as the single-turn scorer expects it: ```python ... ```."""
    return "```python\n" + code + ("" if code.endswith("\n") else "\n") + "```"


# ---- the visible example test ----------------------------------------------------------

def mbpp_visible_test(test_list: list[str]) -> str:
    """MBPP shows its asserts in the prompt; the first one is the example the agent may run."""
    return test_list[0].strip() + "\n" if test_list else ""


def doctest_visible_test(prompt: str) -> str:
    """The first ``>>>`` example of a HumanEval docstring as an assert, or "" when its
    expected output is missing or not a Python literal (printed text, several lines of
    statements): a wrong test is worse feedback than none."""
    lines = prompt.splitlines()
    for i, line in enumerate(lines):
        example = _DOCTEST.match(line)
        if not example:
            continue
        expected: list[str] = []
        for nxt in lines[i + 1:]:
            stripped = nxt.strip()
            if not stripped or _DOCTEST.match(nxt) or stripped.startswith(('"""', "'''")):
                break
            expected.append(stripped)
        expr, want = example.group(1).strip(), " ".join(expected)
        try:
            ast.parse(expr, mode="eval")
            ast.literal_eval(want)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            return ""
        return f"assert {expr} == {want}\n"
    return ""


def import_lines(prompt: str) -> str:
    """The top-level imports of a HumanEval prompt: the scorer runs the answer after the
    prompt, so the agent's runs get the same imports."""
    keep = [line for line in prompt.splitlines() if line.startswith(("import ", "from "))]
    return "\n".join(keep) + "\n" if keep else ""


def tested_function(test: str) -> str | None:
    """The name of the first function an assert calls (``assert f(1) == 2`` -> ``f``)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    return None


def defines_function(code: str, name: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def explain_assert(test: str) -> str:
    """Rewrite ``assert a == b`` so a failure prints what the code returned, as pytest would;
    any other test is returned unchanged."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return test
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert) or tree.body[0].msg is not None:
        return test
    cond = tree.body[0].test
    if not (isinstance(cond, ast.Compare) and len(cond.ops) == 1 and isinstance(cond.ops[0], ast.Eq)):
        return test
    got, want = ast.unparse(cond.left), ast.unparse(cond.comparators[0])
    return (f"_memcollab_got = {got}\n"
            f"assert _memcollab_got == ({want}), 'expected ' + repr({want}) + ', got ' + repr(_memcollab_got)\n")
