"""``report.html``: one evaluate run as a researcher reads it, problem by problem.

The summary table says how accuracy moved; it does not say why. The report shows, for every
problem, the prompt as it was sent with the memory block highlighted, the entries retrieval put
there with their scores and sources (or why it put none: no entry of the problem's category for
this target, every candidate below ``min_score``, ...), both responses with their verdicts, and
whether memory fixed or broke the problem against its no-memory twin. A filter at the top shows
only the flips (CSS ``:target``, no script, so a link such as ``report.html#flips`` opens filtered).

It reads only what the run left on disk: lm-eval's samples files, the summary's run record, and
the bank (for entry texts of runs that logged ids only, and to tell why retrieval abstained).
The page is self-contained (inline CSS, no script, no external asset), so it can be mailed or
attached to a CI run. ``python -m memcollab_eval.evaluation.report RUN_DIR`` makes it again for a
finished run, older runs included.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from memcollab_eval.adapters import get_spec
from memcollab_eval.agent.transcript import TranscriptError, readable
from memcollab_eval.bank.governance import Access, access_for
from memcollab_eval.bank.store import BankError, MemoryBank, load_bank
from memcollab_eval.categorize import Category
from memcollab_eval.config import BENCHMARK_NAMES
from memcollab_eval.evaluation.summary import (
    BenchmarkRow,
    MemoryReach,
    format_record,
    headline,
    summarize,
)
from memcollab_eval.hydra_app import PACKAGE_BANKS
from memcollab_eval.retrieve import RetrievalConfig, Retriever
from memcollab_eval.sample_fields import RetrievedRef, SampleFieldError, retrieved_refs
from memcollab_eval.sample_fields import SampleFields as F

REPORT_FILE = "report.html"
TWINS = (("_memcollab_", True), ("_nomemory_", False))

__all__ = ["REPORT_FILE", "Problem", "Twin", "collect", "main", "reach", "render_report", "write_report"]


@dataclass(frozen=True)
class Twin:
    """One side of a problem: the no-memory twin or the memory variant, as lm-eval logged it."""

    acc: float
    status: str
    extracted: str | None
    detail: str
    response: str
    prompt: str | None  # the rendered prompt as sent; None when the samples file does not keep it


@dataclass(frozen=True)
class Problem:
    benchmark: str
    id: str
    category: str
    subcategory: str
    memory: str                          # the memory block put before the prompt ("" = none)
    template_prompt: str                 # the user turn without memory (doc field; "" when trimmed)
    retrieved: tuple[RetrievedRef, ...]  # best first; texts from the bank when the run logged ids only
    abstained: bool | None               # None: the run had no memory variant
    reason: str                          # why retrieval abstained, as a phrase after a count ("" = it did not)
    reason_detail: str                   # the same for this problem, with its numbers
    plain: Twin | None
    mem: Twin | None

    @property
    def flip(self) -> str:
        """"fixed" (wrong without memory, right with it), "broken" (the reverse) or ""."""
        if self.plain is None or self.mem is None:
            return ""
        if self.plain.acc < 0.5 <= self.mem.acc:
            return "fixed"
        if self.mem.acc < 0.5 <= self.plain.acc:
            return "broken"
        return ""

    @property
    def reached(self) -> bool:
        return bool(self.memory)


# ---- why retrieval abstained ------------------------------------------------------------------

class _Explainer:
    """Tells, for a memory-twin prompt that got nothing, which step of retrieval left it empty."""

    def __init__(self, bank: MemoryBank, config: RetrievalConfig, target: str, access: Access | None = None) -> None:
        self.bank, self.config, self.target = bank, config, target
        self.retriever = Retriever(bank, config, target, access=access)
        # the probe asks the scores alone (selector=score): under selector=llm there is no model here to ask
        self.probe = Retriever(bank, replace(config, min_score=0.0, top_k=1, selector="score"), target,
                               access=self.retriever.access) if config.top_k else None
        self.mine = [e for e in bank.entries if not config.model_filter or target in (e.preferred_model,
                                                                                       e.unpreferred_model)]

    def explain(self, category: Category | None, text: str | None) -> tuple[str, str]:
        c = self.config
        if c.top_k == 0:
            return "were skipped by retrieval.top_k=0", "retrieval.top_k=0: retrieval never adds an entry"
        if not self.bank.entries:
            return "found an empty bank", f"the bank {self.bank.manifest.name!r} has no entries"
        if c.model_filter and not self.mine:
            models = sorted({m for e in self.bank.entries for m in (e.preferred_model, e.unpreferred_model)})
            return (f"found no entry involving {self.target} in the bank",
                    f"no entry of the bank ({len(self.bank.entries)} entries) was distilled from a pair with "
                    f"{self.target}; its entries involve {', '.join(models)} (the target's identity is the "
                    "retrieval key: retrieval=no_model_filter ignores it)")
        screened = self.retriever.filtered(category)
        if self.retriever.candidate_count(category) == 0 and screened.access + screened.lifecycle:
            removed = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in screened.counts.items() if n)
            return ("had only entries the access or lifecycle screen removed",
                    f"every candidate entry of this problem was removed before ranking ({removed}; principal "
                    f"{self.retriever.access.principal or '(none)'})")
        if self.retriever.candidate_count(category) == 0:
            name = "?" if category is None else category.category
            same = [e for e in self.bank.entries if _norm(e.category) == _norm(name)]
            cats = Counter(e.category for e in self.mine)
            others = ", ".join(f"{k} ({n})" for k, n in sorted(cats.items())) or "none"
            whose = f" for {self.target}" if c.model_filter else ""
            detail = (f"no entry of category {name!r}{whose}: the bank has {len(same)} entries of that category"
                      + (f" (from pairs of {', '.join(sorted({m for e in same for m in (e.preferred_model, e.unpreferred_model)}))})"
                         if same else "")
                      + f"; the categories it has{whose}: {others}")
            return f"had no entry of their category{whose}", detail
        n = self.retriever.candidate_count(category)
        best_llm = self.probe.retrieve(text, category=category) if text is not None and self.probe else []
        if c.selector == "llm" and best_llm and best_llm[0].score >= c.min_score:
            return ("were given no entry by the target model (selector=llm)",
                    f"the target model was shown up to {c.llm_candidates} of the {n} candidate entries scoring at "
                    f"least min_score {c.min_score:g} and picked none")
        phrase = f"had candidates that all scored below min_score {c.min_score:g}"
        detail = f"the {n} candidate entries of this category all scored below min_score {c.min_score:g}"
        if text is not None and self.probe is not None:
            best = self.probe.retrieve(text, category=category)
            if best and best[0].score >= c.min_score:  # the run's bank or settings were not these
                return ("for a reason this bank cannot reproduce",
                        f"retrieval abstained in the run, but with this bank and settings entry {best[0].entry.id} "
                        f"scores {best[0].score:.4f} >= min_score {c.min_score:g}: the bank or the settings differ "
                        "from the run's")
            if best and best[0].score > 0:
                detail += f" (best: {best[0].entry.id} at {best[0].score:.4f})"
            else:
                detail += " (the problem shares no indexed word with any of them)"
        return phrase, detail


def _norm(label: str) -> str:
    return " ".join(label.split()).casefold()


# ---- reading the run --------------------------------------------------------------------------

def samples_files(run_dir: Path) -> dict[tuple[str, bool], Path]:
    """(benchmark, with_memory) -> the newest samples file of that twin under ``run_dir``."""
    found: dict[tuple[str, bool], Path] = {}
    for path in sorted(run_dir.rglob("samples_*_*.jsonl")):
        stem = path.name[len("samples_"):]
        for twin, with_memory in TWINS:
            bench = stem.split(twin, 1)[0]
            if twin in stem and bench in BENCHMARK_NAMES:
                key = (bench, with_memory)
                if key not in found or path.name > found[key].name:  # names end in the run's timestamp
                    found[key] = path
    return found


def _read_samples(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from None
        doc = sample.get("doc") or {}
        out[str(doc.get(F.ID, f"doc_id:{sample.get('doc_id')}"))] = sample
    return out


def _response(sample: dict) -> str:
    resp = sample.get("filtered_resps") or sample.get("resps") or []
    while isinstance(resp, list) and resp:
        resp = resp[0]
    text = resp if isinstance(resp, str) else ""
    try:
        return readable(text)
    except TranscriptError:
        return text


def _prompt(sample: dict) -> str | None:
    args = sample.get("arguments") or {}
    first = args.get("gen_args_0") if isinstance(args, dict) else None
    if isinstance(first, dict) and isinstance(first.get("arg_0"), str):
        return first["arg_0"]
    return None


def _twin(sample: dict | None) -> Twin | None:
    if sample is None:
        return None
    verdict = (sample.get("doc") or {}).get(F.VERDICT) or {}
    try:
        acc = float(sample.get("acc"))
    except (TypeError, ValueError):
        acc = float("nan")
    return Twin(acc, str(verdict.get("status", "?")), verdict.get("extracted"), str(verdict.get("detail", "")),
                _response(sample), _prompt(sample))


def collect(run_dir: Path, *, bank: MemoryBank | None, retrieval: RetrievalConfig | None,
            target: str, access: Access | None = None) -> list[Problem]:
    """Every problem of the run, benchmark by benchmark in the order lm-eval logged them."""
    files = samples_files(run_dir)
    explainer = None if bank is None or retrieval is None else _Explainer(bank, retrieval, target, access)
    texts = {} if bank is None else {e.id: e for e in bank.entries}
    problems = []
    for bench in BENCHMARK_NAMES:
        plain = _read_samples(files[(bench, False)]) if (bench, False) in files else {}
        mem = _read_samples(files[(bench, True)]) if (bench, True) in files else {}
        for pid in dict.fromkeys([*plain, *mem]):
            m, p = mem.get(pid), plain.get(pid)
            doc = (m or p or {}).get("doc") or {}
            try:
                refs = tuple(retrieved_refs(doc.get(F.RETRIEVED))) if m is not None else ()
            except SampleFieldError:
                refs = ()
            refs = tuple(_fill(r, texts) for r in refs)
            memory = str(doc.get(F.MEMORY) or "") if m is not None else ""
            abstained = None if m is None else not memory
            reason = detail = ""
            if abstained:
                if explainer is None:
                    reason, detail = "for a reason not known here (bank not readable)", "the bank was not readable"
                else:
                    use_cat = retrieval is not None and retrieval.use_categories
                    cat = Category(str(doc.get(F.CATEGORY, "")), str(doc.get(F.SUBCATEGORY, ""))) if use_cat else None
                    reason, detail = explainer.explain(cat, _problem_text(bench, doc))
            problems.append(Problem(bench, pid, str(doc.get(F.CATEGORY, "")), str(doc.get(F.SUBCATEGORY, "")),
                                    memory, str(doc.get(F.PROMPT) or ""), refs, abstained, reason, detail,
                                    _twin(p), _twin(m)))
    return problems


def _fill(ref: RetrievedRef, entries: Mapping[str, Any]) -> RetrievedRef:
    """An entry logged by id only (runs before the list form) gets its text and sources from the bank."""
    e = entries.get(ref.id)
    if ref.text or e is None:
        return ref
    return replace(ref, text=e.render(), preferred_model=e.preferred_model, unpreferred_model=e.unpreferred_model,
                   source_benchmark=e.source_benchmark, source_problem_id=e.source_problem_id)


def _problem_text(bench: str, doc: dict) -> str | None:
    """What retrieval matched on (the benchmark's problem text); None when the logged doc was trimmed."""
    try:
        return get_spec(bench).text(doc)
    except (KeyError, TypeError, ValueError):
        return None


def reach(problems: Sequence[Problem]) -> dict[str, MemoryReach]:
    """Per benchmark with a memory variant: prompts reached, why the others were not, the flips."""
    out: dict[str, MemoryReach] = {}
    for bench in dict.fromkeys(p.benchmark for p in problems):
        mine = [p for p in problems if p.benchmark == bench and p.mem is not None]
        if not mine:
            continue
        reasons = Counter(p.reason for p in mine if p.abstained)
        out[bench] = MemoryReach(
            prompts=len(mine), reached=sum(p.reached for p in mine), abstained=dict(reasons.most_common()),
            fixed=sum(p.reached and p.flip == "fixed" for p in mine),
            broken=sum(p.reached and p.flip == "broken" for p in mine),
            flipped_without_memory=sum(not p.reached and bool(p.flip) for p in mine))
    return out


# ---- the page ---------------------------------------------------------------------------------

TITLES = {"math500": "MATH500", "gsm8k": "GSM8K", "mbpp": "MBPP", "humaneval": "HumanEval"}
FILTERS = (("all", "all problems"), ("flips", "flips"), ("fixed", "fixed by memory"), ("broken", "broken by memory"),
           ("reached", "memory reached the prompt"), ("abstained", "retrieval abstained"))

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
.page{max-width:78em;margin:0 auto;padding:1.2em 2em 4em}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:2px solid #ddd}
.sub{color:#555;margin:0 0 1em}
.headline{border-left:6px solid #2a6fdb;background:#eaf1fd;padding:.8em 1em;font-size:1.08em;margin:1em 0}
.headline.none{border-color:#c77700;background:#fff4e0}
table{border-collapse:collapse;margin:.6em 0;background:#fff}
td,th{border:1px solid #d6d6d6;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f0f0f0;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.record td:first-child{font-weight:600;white-space:nowrap}table.record td{font-size:.92em;word-break:break-all}
nav.filter{position:sticky;top:0;z-index:2;background:#fafafa;border-bottom:1px solid #ddd;padding:.5em 0;margin:1em 0}
nav.filter a{display:inline-block;margin:.15em .3em .15em 0;padding:.25em .75em;border:1px solid #999;border-radius:1em;
 color:#1d1d1f;text-decoration:none;background:#fff}
nav.filter a:hover{background:#eef}
.anchor{position:fixed;top:0;left:0}
details.problem{background:#fff;border:1px solid #d6d6d6;border-radius:6px;margin:.4em 0;padding:0 .8em}
details.problem[open]{padding-bottom:.8em}
details.problem>summary{cursor:pointer;padding:.5em 0;list-style-position:outside}
details.problem.fixed{border-left:6px solid #1a7f37}details.problem.broken{border-left:6px solid #cf222e}
.pid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
.badge{display:inline-block;border-radius:.3em;padding:0 .45em;font-size:.85em;margin-left:.3em;font-weight:600}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}.other{background:#eee;color:#444}
.flip-fixed{background:#1a7f37;color:#fff}.flip-broken{background:#cf222e;color:#fff}
.mem{background:#fff8c5;color:#5a4a00}.abst{background:#eee;color:#555;font-weight:normal}
pre{white-space:pre-wrap;word-wrap:break-word;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;
 padding:.6em;max-height:28em;overflow:auto;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace;margin:.3em 0}
mark{background:#ffe58f;color:inherit;box-decoration-break:clone;-webkit-box-decoration-break:clone}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.cols>div{min-width:0}.wide{overflow-x:auto;max-width:100%}
@media (max-width:60em){.cols{grid-template-columns:1fr}.page{padding:1em}}
h3{font-size:1em;margin:.9em 0 .2em}
.why{background:#f3f3f3;border-radius:4px;padding:.5em .7em}
.warn{color:#a40e26;font-weight:600}
.small{color:#666;font-size:.88em}
#flips:target~main .problem:not(.flip),#fixed:target~main .problem:not(.fixed),
#broken:target~main .problem:not(.broken),#reached:target~main .problem:not(.reached),
#abstained:target~main .problem:not(.abstained){display:none}
#flips:target~main section:not(:has(.flip)),#fixed:target~main section:not(:has(.fixed)),
#broken:target~main section:not(:has(.broken)),#reached:target~main section:not(:has(.reached)),
#abstained:target~main section:not(:has(.abstained)){display:none}
#flips:target~nav a[href="#flips"],#fixed:target~nav a[href="#fixed"],#broken:target~nav a[href="#broken"],
#reached:target~nav a[href="#reached"],#abstained:target~nav a[href="#abstained"],
#all:target~nav a[href="#all"]{background:#1d1d1f;color:#fff;border-color:#1d1d1f}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _table(rows: Sequence[BenchmarkRow]) -> str:
    head = ("benchmark", "n", "acc no memory", "acc with memory", "Δ", "retrieval abstained %", "memory reached",
            "fixed / broken", "no answer % (no mem / mem)", "turns (no mem / mem)")
    out = ["<div class=wide><table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        delta = "-" if r.delta is None or math.isnan(r.delta) else f"{100 * r.delta:+.1f}"
        reached = "-" if r.reach is None else f"{r.reach.reached} of {r.reach.prompts}"
        flips = "-" if r.reach is None else f"{r.reach.fixed} / {r.reach.broken}"

        def turns(x: float | None) -> str:
            return "-" if x is None or x != x else f"{x:.2f}"
        cells = [TITLES.get(r.benchmark, r.benchmark), r.n, _pct(r.acc_nomemory), _pct(r.acc_memory), delta,
                 _pct(r.abstain_rate), reached, flips, f"{_pct(r.no_answer_nomemory)} / {_pct(r.no_answer_memory)}",
                 f"{turns(r.turns_nomemory)} / {turns(r.turns_memory)}"]
        out.append("<tr>" + "".join(f"<td{'' if i == 0 else ' class=num'}>{_e(c)}</td>" for i, c in enumerate(cells))
                   + "</tr>")
    return "\n".join(out) + "</table></div>"


def _verdict(t: Twin | None) -> str:
    if t is None:
        return "<span class='badge other'>not run</span>"
    cls = "pass" if t.status == "pass" else ("fail" if t.status == "fail" else "other")
    return f"<span class='badge {cls}'>{_e(t.status)}</span>"


def _highlight(prompt: str, memory: str) -> str:
    """The prompt, escaped, with the memory block marked (where it occurs)."""
    if memory and memory in prompt:
        before, after = prompt.split(memory, 1)
        return f"{_e(before)}<mark>{_e(memory)}</mark>{_e(after)}"
    return _e(prompt)


def _retrieval(p: Problem) -> str:
    if p.abstained is None:
        return "<p class=small>no memory variant in this run (bank=none)</p>"
    if not p.reached:
        return f"<div class=why><b>Retrieval abstained</b>: {_e(p.reason_detail)}.</div>"
    rows = ["<div class=wide><table><tr><th>#</th><th>score</th><th>entry</th><th>text</th><th>distilled from (preferred ≻ "
            "unpreferred)</th><th>source problem</th></tr>"]
    for i, r in enumerate(p.retrieved, start=1):
        score = "-" if math.isnan(r.score) else f"{r.score:.4f}"
        models = f"{r.preferred_model} ≻ {r.unpreferred_model}" if r.preferred_model else "-"
        source = " ".join(x for x in (r.source_benchmark, r.source_problem_id) if x) or "-"
        rows.append(f"<tr><td class=num>{i}</td><td class=num>{score}</td><td class=pid>{_e(r.id)}</td>"
                    f"<td>{_e(r.text or '(text not logged, entry not in the bank)')}</td><td>{_e(models)}</td>"
                    f"<td class=pid>{_e(source)}</td></tr>")
    return "\n".join(rows) + "</table></div>"


def _twin_block(title: str, t: Twin | None) -> str:
    if t is None:
        return f"<div><h3>{_e(title)}</h3><p class=small>not run</p></div>"
    extracted = "" if t.extracted in (None, "") else f" extracted <code>{_e(t.extracted)}</code>"
    detail = f"<div class=small>{_e(t.detail)}</div>" if t.detail else ""
    return (f"<div><h3>{_e(title)} {_verdict(t)}{extracted}</h3>{detail}"
            f"<pre>{_e(t.response) if t.response else '<i>(response not logged)</i>'}</pre></div>")


def _problem(p: Problem) -> str:
    classes = ["problem"]
    if p.flip:
        classes += ["flip", p.flip]
    if p.abstained is not None:
        classes.append("reached" if p.reached else "abstained")
    summary = [f"<span class=pid>{_e(p.id)}</span>", f"<span class=small>{_e(p.category)}"
               + (f" / {_e(p.subcategory)}" if p.subcategory else "") + "</span>",
               f"no memory {_verdict(p.plain)}"]
    if p.abstained is not None:
        summary.append(f"→ with memory {_verdict(p.mem)}")
    if p.flip:
        summary.append(f"<span class='badge flip-{p.flip}'>{p.flip.upper()}</span>")
    if p.abstained is not None:
        summary.append(f"<span class='badge mem'>memory: {len(p.retrieved)} "
                       f"entr{'y' if len(p.retrieved) == 1 else 'ies'}</span>" if p.reached else
                       f"<span class='badge abst'>abstained: {_e(p.reason)}</span>")
    body = [f"<h3>Retrieved entries</h3>{_retrieval(p)}"]
    shown = p.mem if p.mem is not None else p.plain
    if shown is not None and shown.prompt is not None:
        what = "Prompt with memory, as sent (memory highlighted)" if p.reached else "Prompt, as sent"
        body.append(f"<h3>{what}</h3><pre>{_highlight(shown.prompt, p.memory)}</pre>")
        if p.reached and p.plain is not None and p.plain.prompt is not None \
                and shown.prompt.replace(p.memory, "", 1) != p.plain.prompt:
            body.append("<p class=warn>The no-memory twin's prompt differs from this one by more than the memory "
                        "block.</p>")
    elif p.memory or p.template_prompt:
        body.append("<h3>Prompt as the task template builds it (the rendered prompt was not logged)</h3>"
                    f"<pre>{_highlight(p.memory + p.template_prompt, p.memory)}"
                    f"{'' if p.template_prompt else _e('(the problem text was trimmed from this log)')}</pre>")
    body.append("<div class=cols>" + _twin_block("Without memory", p.plain)
                + (_twin_block("With memory", p.mem) if p.abstained is not None else "") + "</div>")
    opened = " open" if p.flip else ""
    return (f"<details class='{' '.join(classes)}'{opened}><summary>{' '.join(summary)}</summary>"
            + "\n".join(body) + "</details>")


def render_report(rows: Sequence[BenchmarkRow], record: Mapping[str, Any], problems: Sequence[Problem],
                  *, title: str = "") -> str:
    sentence = headline(rows)
    target, backend, bank = record.get("target", "?"), record.get("backend", "?"), record.get("bank", "?")
    heading = title or f"{target} ({backend}) with bank {bank}"
    counts = {"all": len(problems), "flips": sum(bool(p.flip) for p in problems),
              "fixed": sum(p.flip == "fixed" for p in problems), "broken": sum(p.flip == "broken" for p in problems),
              "reached": sum(p.abstained is False for p in problems),
              "abstained": sum(bool(p.abstained) for p in problems)}
    none_reached = any(r.acc_memory is not None for r in rows) and counts["reached"] == 0 and bool(problems)
    out = ["<!DOCTYPE html><html lang=en><head><meta charset='utf-8'>",
           "<meta name=viewport content='width=device-width,initial-scale=1'>",
           f"<title>Run report: {_e(heading)}</title><style>{CSS}</style></head><body><div class=page>",
           f"<h1>Run report: {_e(heading)}</h1>",
           f"<p class=sub>problems per benchmark: {_e(record.get('problems', '?'))}; seed {_e(record.get('seed', '?'))}, "
           f"protocol {_e(record.get('protocol', '?'))}"
           + (f", wall time {_e(record['wall_seconds'])} s" if record.get("wall_seconds") is not None else "") + "</p>",
           f"<p class='headline{' none' if none_reached else ''}'>{_e(sentence)}</p>",
           _table(rows)]
    lines = format_record(record) if "bank_record" in record else []  # summaries before run records have none
    if lines:
        out.append("<details><summary>Run record (what to cite)</summary><div class=wide><table class=record>"
                   + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in lines)
                   + "</table></div></details>")
    if not problems:
        out.append("<p class=warn>No samples were logged (log_samples=false), so there is no per-problem view.</p>")
        out.append("</div></body></html>")
        return "\n".join(out) + "\n"
    has_memory = any(p.abstained is not None for p in problems)
    out += [f"<span id={key} class=anchor></span>" for key, _ in FILTERS]
    links = [(k, label) for k, label in FILTERS if has_memory or k == "all"]
    out.append("<nav class=filter>Show: " + " ".join(f"<a href='#{k}'>{_e(label)} ({counts[k]})</a>" for k, label in links)
               + "</nav><main>")
    for bench in dict.fromkeys(p.benchmark for p in problems):
        mine = [p for p in problems if p.benchmark == bench]
        out.append(f"<section><h2>{_e(TITLES.get(bench, bench))} <span class=small>({len(mine)} problems)</span></h2>")
        out += [_problem(p) for p in mine]
        out.append("</section>")
    out.append("</main></div></body></html>")
    return "\n".join(out) + "\n"


def write_report(run_dir: Path, rows: Sequence[BenchmarkRow], record: Mapping[str, Any],
                 problems: Sequence[Problem]) -> Path:
    path = run_dir / REPORT_FILE
    path.write_text(render_report(rows, record, problems), encoding="utf-8")
    return path


# ---- python -m memcollab_eval.evaluation.report RUN_DIR ---------------------------------------

def _run_settings(run_dir: Path) -> tuple[dict[str, Any], str, RetrievalConfig | None, Path | None]:
    """(record, target, retrieval settings, bank directory) of a finished run: its summary's record,
    else its saved Hydra config."""
    record: dict[str, Any] = {}
    summary = run_dir / "summary.json"
    if summary.is_file():
        record = json.loads(summary.read_text(encoding="utf-8"))
    hydra: dict[str, Any] = {}
    if (run_dir / ".hydra" / "config.yaml").is_file():
        hydra = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8")) or {}
    target = str(record.get("target") or (hydra.get("target") or {}).get("identity") or "?")
    raw = record.get("retrieval") if record.get("retrieval") is not None else hydra.get("retrieval")
    retrieval = None
    if isinstance(raw, dict):
        known = set(RetrievalConfig.__dataclass_fields__)
        retrieval = RetrievalConfig(**{k: v for k, v in raw.items() if k in known})
    bank_rec = record.get("bank_record") or {}
    bank_path = bank_rec.get("version_path") or bank_rec.get("path") or (hydra.get("bank") or {}).get("path")
    if isinstance(bank_path, str):
        bank_path = bank_path.replace("${pkg_banks:}", str(PACKAGE_BANKS))
    record.setdefault("target", target)
    record.setdefault("backend", (hydra.get("target") or {}).get("model"))
    record.setdefault("bank", (hydra.get("bank") or {}).get("name", "?"))
    record.setdefault("seed", hydra.get("seed"))
    record.setdefault("problems", record.get("limit", hydra.get("limit", "?")))
    record.setdefault("protocol", hydra.get("protocol", "single_turn"))
    return record, target, retrieval, Path(bank_path) if bank_path else None


def _run_access(record: Mapping[str, Any]) -> Access | None:
    """The run's access as its record states it (principal, groups, external target, as-of), so the
    abstention reasons are judged for the same principal at the same instant; None for older runs."""
    got = record.get("access")
    if not isinstance(got, dict):
        return None
    try:
        return access_for(got.get("principal"), {got.get("principal"): list(got.get("groups") or [])},
                          external_target=bool(got.get("external_target")), as_of=got.get("as_of"))
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memcollab_eval.evaluation.report",
                                     description="Write report.html for a finished evaluate run.")
    parser.add_argument("run_dir", type=Path, help="the run directory (with summary.json or .hydra/)")
    parser.add_argument("--bank", type=Path, default=None, help="bank directory (default: the run's own)")
    parser.add_argument("--out", type=Path, default=None, help=f"output file (default: RUN_DIR/{REPORT_FILE})")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    results = sorted(run_dir.rglob("results_*.json"), key=lambda p: p.name)
    if not results:
        print(f"error: no lm-eval results_*.json under {run_dir}", file=sys.stderr)
        return 2
    record, target, retrieval, bank_path = _run_settings(run_dir)
    access = _run_access(record)
    bank_path = args.bank or bank_path
    bank = None
    if bank_path is not None:
        try:
            bank = load_bank(bank_path)
        except BankError as exc:
            if args.bank:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"note: the run's bank is not readable ({exc}); abstentions are not explained", file=sys.stderr)
    try:
        problems = collect(run_dir, bank=bank, retrieval=retrieval, target=target, access=access)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = json.loads(results[-1].read_text(encoding="utf-8"))
    benches = [b for b in BENCHMARK_NAMES if f"{b}_nomemory" in (data.get("results") or {})]
    rows = summarize(data, benches, reach(problems))
    out = args.out or run_dir / REPORT_FILE
    out.write_text(render_report(rows, record, problems), encoding="utf-8")
    print(f"{headline(rows)}\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
