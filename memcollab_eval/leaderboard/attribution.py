"""Which entries were in the prompt when memory fixed or broke a problem.

A bank's accuracy delta hides what a maintainer needs to act on: the reproduction's 0.5B
self-memory row lost 9 points on HumanEval, and the cause was two lessons retrieved for tasks
they do not fit. This module reads one evaluation run (the memory twin and its no-memory twin,
paired by ``memcollab_id``) and, for every entry that retrieval added to some prompt, counts the
problems it was added to and how many of those flipped (fixed: wrong without memory, right with;
broken: the reverse).

An entry retrieved together with others shares their flips: the counts say where an entry was
present, not that it caused the flip. Problems where retrieval added nothing are counted apart;
with greedy decoding they should not flip at all, so flips there point to nondeterminism.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from memcollab_eval.bank.store import BankError, load_bank
from memcollab_eval.hydra_app import register_hydra
from memcollab_eval.leaderboard.runs import hydra_config
from memcollab_eval.leaderboard.stats import flips
from memcollab_eval.sample_fields import SampleFieldError, retrieved_refs, sample_acc
from memcollab_eval.sample_fields import SampleFields as F


class AttributionError(Exception):
    """The run cannot be attributed (no results, no no-memory twin, unreadable samples)."""


@dataclass
class EntryEffect:
    entry_id: str
    retrieved: int = 0
    fixed: int = 0
    broken: int = 0
    benchmarks: dict[str, int] = field(default_factory=dict)  # benchmark -> times retrieved
    broken_ids: list[str] = field(default_factory=list)
    fixed_ids: list[str] = field(default_factory=list)
    served_ids: list[str] = field(default_factory=list)  # "benchmark/problem id" of every prompt it was in

    @property
    def net(self) -> int:
        return self.fixed - self.broken


@dataclass(frozen=True)
class Attribution:
    run_dir: Path
    bank_dir: Path | None
    effects: tuple[EntryEffect, ...]         # most harmful first
    texts: dict[str, str]                    # entry id -> "enforce ...; avoid ..." (empty without the bank)
    paired: int                              # problems in both twins
    with_memory: int                         # of those, problems where retrieval added something
    fixed_without_memory: int                # flips on problems where nothing was added
    broken_without_memory: int


def _read(path: Path, texts: dict[str, str] | None = None) -> dict[str, tuple[float, list[str]]]:
    """memcollab_id -> (acc, retrieved entry ids) for one samples file (either form of the
    retrieved field: see :func:`~memcollab_eval.sample_fields.retrieved_refs`). Entry texts the
    samples carry go into ``texts``."""
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AttributionError(f"{where}: invalid JSON ({exc.msg})") from None
        doc = sample.get("doc") or {}
        if F.ID not in doc:
            raise AttributionError(f"{where}: no doc.{F.ID} (not a memcollab-eval samples file)")
        try:
            refs = retrieved_refs(doc.get(F.RETRIEVED))
            out[str(doc[F.ID])] = (sample_acc(sample), [r.id for r in refs])
        except SampleFieldError as exc:
            raise AttributionError(f"{where}: {exc}") from None
        if texts is not None:
            texts.update((r.id, r.text) for r in refs if r.text)
    return out


def samples_by_task(run_dir: Path) -> dict[tuple[str, bool], Path]:
    """(benchmark, with_memory) -> the newest samples file of that twin under ``run_dir``."""
    found: dict[tuple[str, bool], Path] = {}
    for path in sorted(run_dir.rglob("samples_*_*.jsonl")):
        stem = path.name[len("samples_"):]
        for twin, with_memory in (("_memcollab_", True), ("_nomemory_", False)):
            if twin in stem:
                bench = stem.split(twin, 1)[0]
                key = (bench, with_memory)
                if key not in found or path.name > found[key].name:  # names end in the run's timestamp
                    found[key] = path
    return found


def bank_of_run(run_dir: Path) -> Path | None:
    """The bank directory a Hydra run used, from its saved config (``${pkg_banks:}`` resolved)."""
    found = hydra_config(run_dir)
    if found is None:
        return None
    register_hydra()
    path = OmegaConf.select(OmegaConf.create(found[1]), "bank.path", default=None)
    return Path(str(path)) if path else None


def attribute(run_dir: str | Path, bank_dir: str | Path | None = None) -> Attribution:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AttributionError(f"{run_dir}: not a directory")
    files = samples_by_task(run_dir)
    benches = sorted({b for b, mem in files if mem})
    if not benches:
        raise AttributionError(f"{run_dir}: no samples of a memory task (samples_<benchmark>_memcollab_*.jsonl); "
                               "was the run made with log_samples on and a bank other than none?")
    effects: dict[str, EntryEffect] = {}
    logged: dict[str, str] = {}  # entry texts the samples carry (runs since the list form)
    paired = with_memory = fixed_plain = broken_plain = 0
    for bench in benches:
        if (bench, False) not in files:
            raise AttributionError(f"{run_dir}: {bench} has no no-memory twin (samples_{bench}_nomemory_*.jsonl)")
        before, after = _read(files[(bench, False)]), _read(files[(bench, True)], logged)
        # the leaderboard's and the gate's rule for what counts as fixed or broken
        change = flips({pid: acc for pid, (acc, _) in before.items()}, {pid: acc for pid, (acc, _) in after.items()})
        fixed, broken = set(change.fixed), set(change.broken)
        paired += change.n
        for pid in sorted(before.keys() & after.keys()):
            ids = after[pid][1]
            if not ids:
                fixed_plain += pid in fixed
                broken_plain += pid in broken
                continue
            with_memory += 1
            for entry_id in dict.fromkeys(ids):
                e = effects.setdefault(entry_id, EntryEffect(entry_id))
                e.retrieved += 1
                e.served_ids.append(f"{bench}/{pid}")
                e.benchmarks[bench] = e.benchmarks.get(bench, 0) + 1
                if pid in fixed:
                    e.fixed += 1
                    e.fixed_ids.append(pid)
                elif pid in broken:
                    e.broken += 1
                    e.broken_ids.append(pid)
    bank_path = Path(bank_dir) if bank_dir else bank_of_run(run_dir)
    texts: dict[str, str] = {}
    if bank_path is not None:
        try:
            texts = {e.id: f"enforce {e.enforce}; avoid {e.avoid}" for e in load_bank(bank_path).entries}
        except BankError as exc:
            if bank_dir:  # asked for explicitly: say why it cannot be read
                raise AttributionError(str(exc)) from None
            bank_path = None  # the run's bank moved or changed: report the texts the samples logged
    if bank_path is None:
        texts = dict(logged)
    ordered = sorted(effects.values(), key=lambda e: (e.net, -e.retrieved, e.entry_id))
    return Attribution(run_dir, bank_path, tuple(ordered), texts, paired, with_memory, fixed_plain, broken_plain)


def _relative(path: Path) -> str:
    """Below the working directory when it is (reports get committed; absolute paths do not travel)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def render(a: Attribution, *, examples: int = 3) -> str:
    """A Markdown report: one row per retrieved entry, most harmful first."""
    lines = [f"# Entry attribution: {a.run_dir}", "",
             f"{a.paired} problems paired with the no-memory twin; memory was added to {a.with_memory}. "
             "fixed = wrong without memory, right with it; broken = the reverse. An entry retrieved together "
             "with others shares their flips: the counts say where it was present, not that it alone caused "
             "the flip.", ""]
    if a.fixed_without_memory or a.broken_without_memory:
        lines += [f"Problems where nothing was added still flipped ({a.fixed_without_memory} fixed, "
                  f"{a.broken_without_memory} broken): the two twins were not decoded alike (sampling, or "
                  "a nondeterministic backend), so part of every delta is noise.", ""]
    lines += ["| entry | retrieved | fixed | broken | net | benchmarks | text | broken, e.g. |",
              "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for e in a.effects:
        benches = ", ".join(f"{b} {n}" for b, n in sorted(e.benchmarks.items()))
        text = a.texts.get(e.entry_id, "(not in the bank)" if a.texts else "-").replace("|", "\\|")
        shown = ", ".join(e.broken_ids[:examples]) + (" ..." if len(e.broken_ids) > examples else "")
        lines.append(f"| {e.entry_id} | {e.retrieved} | {e.fixed} | {e.broken} | {e.net:+d} | {benches} | "
                     f"{text} | {shown or '-'} |")
    if not a.effects:
        lines.append("| (retrieval added nothing to any problem) | 0 | 0 | 0 | +0 | - | - | - |")
    where = (f"bank: {_relative(a.bank_dir)}" if a.bank_dir else
             "bank: not found (entry texts as the samples logged them)" if a.texts else
             "bank: not found (entry texts not shown; pass --bank)")
    lines += ["", where]
    return "\n".join(lines) + "\n"
