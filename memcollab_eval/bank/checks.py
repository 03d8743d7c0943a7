"""The checks behind ``python -m memcollab_eval.bank check``: can this bank be trusted in CI?

``load_bank`` stops at the first problem; a reviewer of a bank change wants *every* problem,
each with the file, the line and the entry id. So this module validates in stages (manifest,
each entry line, sha256, counts) and collects findings, then looks at the content:

* duplicates: exact (same normalised text) and near: TF-IDF cosine (word unigrams, sublinear
  tf, idf fitted on the bank) >= ``NEAR_DUP_THRESHOLD`` = 0.8. Measured on the demo bank's
  lessons: changing, dropping or replacing one or two words scores 0.85-0.97, while the most
  similar pair of distinct demo lessons scores 0.32. Duplicates waste retrieval's top-k slots.
* leakage: an entry that shares ``LEAK_NGRAM`` (8) or more consecutive normalised words with
  an evaluation problem (MATH500, GSM8K test, MBPP test, HumanEval) carries the test problem
  into the prompt, so the bank would be graded on its own answers. N-grams that occur in
  ``BOILERPLATE_PROBLEMS`` (3) or more problems are benchmark boilerplate ("write a python
  function to ...") and are ignored.
* evaluation-sourced entries: ``source_problem_id`` names an evaluation problem (by pattern,
  e.g. ``test/...`` MATH ids, ``HumanEval/N``, ``mbpp/11..510``, ``gsm8k/test/...``, and by the
  ids of the data files): the lesson was distilled from a problem it will be evaluated on.
* categories: a taxonomy category of a covered domain with no entry always abstains (a
  warning; an error with ``strict``); an entry whose category is not in the taxonomy can never
  be retrieved (a warning).
* governance (issue 18): every field's value is validated line by line (bank/fields.py); across
  entries, ``supersedes`` must name an entry of the bank, not form a cycle, and a retired entry
  should say why (warning); each ``v<N>/`` version must carry its number and its parent's manifest
  sha256 (the hash chain of bank/versions.py); and contradicting live lessons of one category and
  model pair are reported with both ids (warning; the rule is in bank/conflicts.py).
* content (warnings): an empty bank (no memory ever reaches a prompt); an entry whose lesson
  renders to more than ``MAX_ENTRY_CHARS`` (1,000) characters: the builder's gate keeps lessons of
  at most 320 and the longest packaged entry has 350, while retrieval puts up to top_k (3) of them
  in every prompt; an entry that carries an answer (``\\boxed{...}``, "the answer is") or reads
  as an instruction to the model rather than a lesson ("ignore previous instructions", chat-template
  control tokens, role headers): what an injected prompt or a copied solution looks like.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from memcollab_eval.adapters import BENCHMARKS, get_spec
from memcollab_eval.bank.conflicts import find_conflicts
from memcollab_eval.bank.store import (
    ENTRIES_FILE,
    MANIFEST_FILE,
    BankError,
    BankManifest,
    MemoryEntry,
    bank_versions,
    entry_from_dict,
    load_bank,
    manifest_from_dict,
    resolve_version,
    sha256_bytes,
    utf8_where,
)
from memcollab_eval.categorize import TAXONOMY
from memcollab_eval.packaged_data import data_file

NEAR_DUP_THRESHOLD = 0.8
LEAK_NGRAM = 8
BOILERPLATE_PROBLEMS = 3
EVAL_ID_PATTERNS = (
    (re.compile(r"^test/"), "a MATH test-split id (MATH500 is drawn from it)"),
    (re.compile(r"^gsm8k/test/"), "a GSM8K test id"),
    (re.compile(r"^HumanEval/\d+$"), "a HumanEval id"),
)
_MBPP_ID = re.compile(r"^mbpp/(\d+)$")
MAX_ENTRY_CHARS = 1000
SCAN_CHARS = 100 * MAX_ENTRY_CHARS  # how much of a field the content patterns read
# (check, pattern, what it means): searched in the two fields a prompt shows, enforce and avoid.
CONTENT_PATTERNS = (
    ("answer", re.compile(r"\\boxed\s*\{"), "carries a boxed answer"),
    ("answer", re.compile(r"\b(?:final |correct )?answer is\b", re.I), "states an answer"),
    ("instruction", re.compile(r"\b(?:ignore|disregard|forget)\s+(?:(?:all|any|the|of|your)\s+)*"
                               r"(?:previous|prior|above|earlier|preceding|system)\b", re.I),
     "tells the model to drop its instructions"),
    ("instruction", re.compile(r"\b(?:system prompt|new instructions?|you are now|from now on)\b", re.I),
     "addresses the model instead of stating a lesson"),
    ("instruction", re.compile(r"<\|[A-Za-z_]+\|>|\[/?INST\]"), "holds a chat-template control token"),
    ("instruction", re.compile(r"(?:^|\n)\s*(?:system|assistant|user)\s*:", re.I), "holds a chat role header"),
)
_WHERE = "\x00"  # placeholder location given to bank.py's validators, replaced by our own


class BankCheckError(Exception):
    """The check cannot run as asked (e.g. no evaluation data): a usage error, exit code 2."""


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    check: str
    file: str
    line: int | None
    entry_id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        entry = f" entry {self.entry_id!r}" if self.entry_id else ""
        return f"{self.level.upper()} [{self.check}] {where}{entry}: {self.message}"


@dataclass(frozen=True)
class LocatedEntry:
    entry: MemoryEntry
    line: int


@dataclass(frozen=True)
class CheckReport:
    bank_dir: Path
    manifest: BankManifest | None
    entries: tuple[LocatedEntry, ...]
    findings: tuple[Finding, ...]

    def failures(self, strict: bool = False) -> list[Finding]:
        return [f for f in self.findings if f.level == "error" or strict]


def normalize(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _bank_error(exc: BankError) -> str:
    return str(exc).replace(f"{_WHERE}: ", "").replace(_WHERE, "")


def read_bank(bank_dir: Path) -> tuple[BankManifest | None, list[LocatedEntry], list[Finding]]:
    """Staged validation that reports every broken line instead of the first one."""
    entries_path, manifest_path = bank_dir / ENTRIES_FILE, bank_dir / MANIFEST_FILE
    if not bank_dir.is_dir():
        return None, [], [Finding("error", "schema", str(bank_dir), None, None, "not a bank directory")]
    findings: list[Finding] = []
    manifest = None
    try:
        raw_manifest = manifest_path.read_bytes()
        manifest = manifest_from_dict(json.loads(raw_manifest.decode("utf-8")), where=_WHERE)
    except FileNotFoundError:
        findings.append(Finding("error", "schema", str(manifest_path), None, None, "file is missing"))
    except UnicodeDecodeError as exc:
        lineno, detail = utf8_where(raw_manifest, exc)
        findings.append(Finding("error", "encoding", str(manifest_path), lineno, None, detail))
    except json.JSONDecodeError as exc:
        findings.append(Finding("error", "schema", str(manifest_path), exc.lineno, None, f"invalid JSON ({exc.msg})"))
    except BankError as exc:
        findings.append(Finding("error", "schema", str(manifest_path), None, None, _bank_error(exc)))
    if not entries_path.is_file():
        return manifest, [], findings + [Finding("error", "schema", str(entries_path), None, None, "file is missing")]
    data = entries_path.read_bytes()
    entries: list[LocatedEntry] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:  # reported by line and column, as an editor shows them
            findings.append(Finding("error", "encoding", str(entries_path), lineno, None, utf8_where(raw, exc)[1]))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            entry = entry_from_dict(obj, where=_WHERE)
        except json.JSONDecodeError as exc:
            findings.append(Finding("error", "schema", str(entries_path), lineno, None,
                                    f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        except BankError as exc:
            eid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
            findings.append(Finding("error", "schema", str(entries_path), lineno, eid, _bank_error(exc)))
            continue
        if entry.id in first_line:
            findings.append(Finding("error", "schema", str(entries_path), lineno, entry.id,
                                    f"duplicate id (first seen on line {first_line[entry.id]})"))
            continue
        first_line[entry.id] = lineno
        entries.append(LocatedEntry(entry, lineno))
    if manifest is not None:
        actual = sha256_bytes(data)
        if actual != manifest.sha256:
            findings.append(Finding("error", "sha256", str(manifest_path), None, None,
                                    f"manifest sha256 {manifest.sha256} does not match {ENTRIES_FILE} ({actual}): "
                                    "the entries were edited or the copy is incomplete; rebuild or re-save the bank"))
        n_lines = sum(1 for line in data.decode("utf-8", errors="replace").split("\n") if line.strip())
        if manifest.n_entries != n_lines:
            findings.append(Finding("error", "schema", str(manifest_path), None, None,
                                    f"n_entries is {manifest.n_entries} but {ENTRIES_FILE} has {n_lines} entries"))
    if not findings:
        try:  # the loader is the authority: anything it rejects must fail the check too
            load_bank(bank_dir)
        except BankError as exc:
            findings.append(Finding("error", "schema", str(bank_dir), None, None, str(exc)))
    return manifest, entries, findings


def duplicate_findings(entries: Sequence[LocatedEntry], file: str,
                       threshold: float = NEAR_DUP_THRESHOLD) -> list[Finding]:
    texts = [normalize(e.entry.render()) for e in entries]
    findings, first = [], {}
    for e, text in zip(entries, texts, strict=False):
        if text in first:
            o = first[text]
            findings.append(Finding("error", "duplicate", file, e.line, e.entry.id,
                                    f"same normalised text as entry {o.entry.id!r} (line {o.line})"))
        else:
            first[text] = e
    if len(entries) < 2 or threshold > 1:
        return findings
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        matrix = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)
    except ValueError:  # empty vocabulary
        return findings
    for start in range(0, len(entries), 512):  # row blocks: memory stays O(block x n)
        sims = (matrix[start:start + 512] @ matrix.T).toarray()
        for i, j in zip(*np.nonzero(sims >= threshold), strict=False):
            a, b = start + int(i), int(j)
            if a < b and texts[a] != texts[b]:
                findings.append(Finding("error", "near-duplicate", file, entries[b].line, entries[b].entry.id,
                                        f"TF-IDF cosine {sims[i, j]:.2f} >= {threshold} with entry "
                                        f"{entries[a].entry.id!r} (line {entries[a].line})"))
    return findings


@lru_cache(maxsize=4)
def eval_problems(data_dir: str | None = None) -> tuple[tuple[str, str], ...]:
    """(problem id, problem text) of every evaluation problem, ids as the evaluation logs them;
    ``data_dir`` None reads the evaluation sets shipped in the package."""
    out = []
    for name, spec in BENCHMARKS.items():
        path = data_file(spec.local_file, data_dir)
        if not path.is_file():
            raise BankCheckError(f"evaluation data for {name} not found at {path}: pass a --data-dir laid out as "
                                 "memcollab_eval/data, or none to use the package's own copy, or --skip-leakage")
        with open(path, encoding="utf-8") as f:
            out += [(get_spec(name).problem_id(d), get_spec(name).text(d))
                    for d in map(json.loads, filter(str.strip, f))]
    return tuple(out)


def _ngrams(text: str, n: int) -> Iterable[str]:
    words = normalize(text).split()
    return (" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


@lru_cache(maxsize=4)
def _ngram_index(data_dir: str, n: int) -> dict[str, str]:
    owners: dict[str, set[str]] = {}
    for pid, text in eval_problems(data_dir):
        for gram in set(_ngrams(text, n)):
            owners.setdefault(gram, set()).add(pid)
    return {g: min(ids) for g, ids in owners.items() if len(ids) < BOILERPLATE_PROBLEMS}


def leak_findings(entries: Sequence[LocatedEntry], file: str, data_dir: str, n: int = LEAK_NGRAM) -> list[Finding]:
    index = _ngram_index(data_dir, n)
    findings = []
    for e in entries:
        for field in ("enforce", "avoid"):
            hit = next((g for g in _ngrams(getattr(e.entry, field), n) if g in index), None)
            if hit is not None:
                findings.append(Finding("error", "leak", file, e.line, e.entry.id,
                                        f"field {field!r} shares >= {n} consecutive words with evaluation problem "
                                        f"{index[hit]}: {hit!r}"))
    return findings


def eval_source_reason(source_id: str, eval_ids: frozenset[str] = frozenset()) -> str | None:
    """Why ``source_id`` is an evaluation problem, or None."""
    for pattern, reason in EVAL_ID_PATTERNS:
        if pattern.match(source_id):
            return reason
    m = _MBPP_ID.match(source_id)
    if m and 11 <= int(m.group(1)) <= 510:
        return "an MBPP test id (11-510)"
    return "the id of an evaluation problem in the data directory" if source_id in eval_ids else None


def source_findings(entries: Sequence[LocatedEntry], file: str, eval_ids: frozenset[str]) -> list[Finding]:
    return [Finding("error", "eval-source", file, e.line, e.entry.id,
                    f"source_problem_id {e.entry.source_problem_id!r} is {reason}: lessons must come from training "
                    "problems only")
            for e in entries if (reason := eval_source_reason(e.entry.source_problem_id.strip(), eval_ids))]


def _norm_cat(category: str) -> str:
    return " ".join(category.split()).casefold()


def category_findings(entries: Sequence[LocatedEntry], file: str) -> list[Finding]:
    known = {_norm_cat(c): (domain, c) for domain, cats in TAXONOMY.items() for c in cats}
    counts = Counter(_norm_cat(e.entry.category) for e in entries)
    findings = []
    for e in entries:
        hit = known.get(_norm_cat(e.entry.category))
        if hit is None:
            findings.append(Finding("warning", "category", file, e.line, e.entry.id,
                                    f"category {e.entry.category!r} is not in the taxonomy, so the entry is never "
                                    "retrieved"))
        elif e.entry.subcategory not in TAXONOMY[hit[0]][hit[1]]:
            findings.append(Finding("warning", "category", file, e.line, e.entry.id,
                                    f"subcategory {e.entry.subcategory!r} is not one of {hit[1]!r}'s; it never earns "
                                    "the subcategory bonus"))
    covered = {known[c][0] for c in counts if c in known}
    for domain in sorted(covered):
        for category in TAXONOMY[domain]:
            if counts[_norm_cat(category)] == 0:
                findings.append(Finding("warning", "empty-category", file, None, None,
                                        f"{domain} category {category!r} has no entries: retrieval always abstains "
                                        "on its problems"))
    return findings


def content_findings(entries: Sequence[LocatedEntry], file: str, max_chars: int = MAX_ENTRY_CHARS) -> list[Finding]:
    """Warnings about what an entry would put into a prompt: its size, an answer, an instruction."""
    findings = []
    for e in entries:
        size = len(e.entry.render())
        if size > max_chars:
            findings.append(Finding("warning", "oversized", file, e.line, e.entry.id,
                                    f"the lesson renders to {size:,} characters, over the limit of {max_chars:,} characters "
                                    f"(a lesson is a sentence or two; retrieval puts up to top_k of them in a prompt)"))
        for field in ("enforce", "avoid"):
            # an oversized entry is warned about already; its head is enough to see what it is (a regex
            # pass over a 50 MB field takes seconds per pattern)
            text, reported = getattr(e.entry, field)[:SCAN_CHARS], set()
            for check, pattern, meaning in CONTENT_PATTERNS:
                hit = None if check in reported else pattern.search(text)
                if hit:  # the first pattern of each kind: an injected entry is both an instruction and an answer
                    reported.add(check)
                    findings.append(Finding("warning", check, file, e.line, e.entry.id,
                                            f"field {field!r} {meaning}: {_snippet(text, hit)}"))
    return findings


def _snippet(text: str, hit: re.Match, context: int = 30) -> str:
    """The matched words with a little context, quoted: enough to judge, never a 50 MB line."""
    start, end = max(0, hit.start() - context), min(len(text), hit.end() + context)
    body = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
    return '"' + body.replace("\n", "\\n") + '"'


def coverage(entries: Iterable[MemoryEntry]) -> dict[tuple[str, str], int]:
    """Entry counts per (category, "preferred > unpreferred")."""
    return dict(Counter((e.category, f"{e.preferred_model} > {e.unpreferred_model}") for e in entries))


def coverage_table(cov: Mapping[tuple[str, str], int]) -> str:
    if not cov:
        return "(no entries)"
    order = {c: i for i, c in enumerate(c for cats in TAXONOMY.values() for c in cats)}
    cats = sorted({c for c, _ in cov}, key=lambda c: (order.get(c, len(order)), c))
    pairs = sorted({p for _, p in cov})
    lines = ["| category | " + " | ".join(pairs) + " | total |", "| --- |" + " ---: |" * (len(pairs) + 1)]
    for c in cats:
        row = [cov.get((c, p), 0) for p in pairs]
        lines.append(f"| {c} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(cov.get((c, p), 0) for c in cats) for p in pairs]
    lines.append("| total | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return "\n".join(lines)


def lifecycle_findings(entries: Sequence[LocatedEntry], file: str) -> list[Finding]:
    """Rules between entries: ``supersedes`` names an entry of the bank, no entry is superseded
    twice over or in a cycle, and a retired entry says why."""
    by_id = {e.entry.id: e for e in entries}
    findings = []
    replaced_by: dict[str, list[LocatedEntry]] = {}
    for e in entries:
        old = e.entry.supersedes
        if old:
            if old not in by_id:
                findings.append(Finding("error", "supersedes", file, e.line, e.entry.id,
                                        f"field 'supersedes' names {old!r}, which is not in the bank"))
            replaced_by.setdefault(old, []).append(e)
        if e.entry.status == "retired" and not e.entry.retired_why:
            findings.append(Finding("warning", "retired", file, e.line, e.entry.id,
                                    "retired without field 'retired_why' (bank retire --why records it)"))
    for old, newer in replaced_by.items():
        if len(newer) > 1:
            findings.append(Finding("warning", "supersedes", file, newer[1].line, newer[1].entry.id,
                                    f"entry {old!r} is superseded by several entries: "
                                    f"{', '.join(repr(n.entry.id) for n in newer)}"))
    reported: set[str] = set()
    for e in entries:  # follow supersedes links; a walk that comes back is a cycle
        seen, cur = [], e.entry.id
        while cur in by_id and by_id[cur].entry.supersedes and cur not in seen:
            seen.append(cur)
            cur = by_id[cur].entry.supersedes
        if cur in seen and cur not in reported:
            loop = seen[seen.index(cur):]
            reported.update(loop)
            findings.append(Finding("error", "supersedes", file, by_id[cur].line, cur,
                                    "field 'supersedes' forms a cycle: " + " -> ".join(loop + [cur])
                                    + " (every entry in it would be skipped)"))
    return findings


def conflict_findings(entries: Sequence[LocatedEntry], file: str) -> list[Finding]:
    line = {e.entry.id: e.line for e in entries}
    return [Finding("warning", "conflict", file, line[c.second.id], c.second.id,
                    f"its avoid ({_short(c.second.avoid)!r}) is what entry {c.first.id!r} (line {line[c.first.id]}) "
                    f"enforces ({_short(c.first.enforce)!r}): same category {c.first.category!r} and model pair, "
                    f"shared words {', '.join(c.shared)} ({c.overlap:.0%} of the shorter side); retire or "
                    "supersede one of them")
            for c in find_conflicts([e.entry for e in entries])]


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def history_findings(root: Path) -> list[Finding]:
    """Every version of the bank at ``root``: its number, and its parent's manifest sha256."""
    versions = bank_versions(root)
    findings = []
    previous: Path | None = None
    for number, path in versions.items():
        manifest_path = path / MANIFEST_FILE
        try:
            manifest = manifest_from_dict(json.loads(manifest_path.read_bytes().decode("utf-8")), where=_WHERE)
        except (OSError, ValueError, BankError) as exc:
            findings.append(Finding("error", "history", str(manifest_path), None, None,
                                    f"version {number} cannot be read: {_bank_error(exc) if isinstance(exc, BankError) else exc}"))
            previous = path
            continue
        if path != root and manifest.version != number:
            findings.append(Finding("error", "history", str(manifest_path), None, None,
                                    f"field 'version' is {manifest.version} in directory v{number}"))
        if previous is not None:
            expected = sha256_bytes((previous / MANIFEST_FILE).read_bytes())
            if manifest.parent_sha256 is None:
                findings.append(Finding("error", "history", str(manifest_path), None, None,
                                        "field 'parent_sha256' is missing: a later version must name its parent"))
            elif manifest.parent_sha256 != expected:
                findings.append(Finding("error", "history", str(manifest_path), None, None,
                                        f"field 'parent_sha256' is {manifest.parent_sha256} but "
                                        f"{previous / MANIFEST_FILE} has sha256 {expected}: an older version was "
                                        "edited in place (versions are append-only)"))
            if not manifest.changelog:
                findings.append(Finding("warning", "history", str(manifest_path), None, None,
                                        "field 'changelog' is missing: the version does not say what it changed"))
        previous = path
    return findings


def check_bank(bank_dir: str | Path, *, data_dir: str | Path | None, near_dup_threshold: float = NEAR_DUP_THRESHOLD,
               ngram: int = LEAK_NGRAM, version: int | None = None) -> CheckReport:
    """Every check of the bank's newest version (or the one ``version`` pins), and of its history;
    ``data_dir`` None skips the leakage check and the id match against the data (the id patterns
    still apply)."""
    bank_dir, root = Path(bank_dir), Path(bank_dir)
    try:
        bank_dir, root = resolve_version(bank_dir, version)
    except BankError as exc:
        return CheckReport(Path(bank_dir), None, (), (Finding("error", "history", str(bank_dir), None, None,
                                                              str(exc)),))
    manifest, entries, findings = read_bank(bank_dir)
    findings += [f for f in history_findings(root) if f not in findings]
    file = str(bank_dir / ENTRIES_FILE)
    findings += duplicate_findings(entries, file, near_dup_threshold)
    eval_ids: frozenset[str] = frozenset()
    if data_dir is not None:
        eval_ids = frozenset(pid for pid, _ in eval_problems(str(Path(data_dir).resolve())))
        findings += leak_findings(entries, file, str(Path(data_dir).resolve()), ngram)
    findings += source_findings(entries, file, eval_ids)
    findings += category_findings(entries, file)
    findings += content_findings(entries, file)
    findings += lifecycle_findings(entries, file)
    findings += conflict_findings(entries, file)
    if not entries and not any(f.level == "error" for f in findings):
        findings.append(Finding("warning", "empty-bank", file, None, None,
                                "the bank has no entries: no memory ever reaches a prompt, so an evaluation with it "
                                "repeats the no-memory run"))
    return CheckReport(bank_dir, manifest, tuple(entries), tuple(findings))
