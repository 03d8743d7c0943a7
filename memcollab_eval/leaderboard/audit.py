"""An audit of one bank across many finished runs: per entry and version, where it served and what it did.

One run's attribution (:mod:`memcollab_eval.leaderboard.attribution`) says which entries were in
the prompts memory fixed or broke; a maintainer deciding what to retire needs that pooled over every
run the bank has served, and kept apart by bank version, since a retired or superseded entry changes
what its neighbours are retrieved with. This module finds the runs under the given paths, decides for
each which version of the bank it read, and adds up, per (entry, version): the runs and the distinct
problems it was retrieved for, and how many of those memory fixed or broke against the no-memory twin.

Which version a run read: the bank's sha256 in its ``summary.json`` record matched against every
version's manifest; for runs older than that record, the bank path in its saved Hydra config (it
must be this bank, and the bank must have had a single version then: a path alone cannot tell
versions apart). A run that used another bank, no bank, or does not say, is listed as skipped, with
why, and counts nowhere.

Retirement candidates, the stated rule: an entry that is live in the newest version and that, pooled
over every audited run and version, was in the prompts of at least ``min_harm`` (2) more problem
evaluations memory broke than ones it fixed (``broken - fixed >= min_harm``; a problem evaluated in
several runs counts once per run). As in attribution, an entry
shares the flips of the entries retrieved with it: the rule finds where harm concentrates, and a
proposal is for a person to read before ``bank retire --proposal`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

from memcollab_eval.bank.governance import superseded_ids
from memcollab_eval.bank.store import BankError, MemoryBank, bank_versions, load_bank
from memcollab_eval.bank.versions import PROPOSAL_FORMAT
from memcollab_eval.hydra_app import register_hydra
from memcollab_eval.leaderboard.attribution import AttributionError, attribute
from memcollab_eval.leaderboard.records import LeaderboardError
from memcollab_eval.leaderboard.runs import find_results, hydra_config, run_record
from memcollab_eval.leaderboard.stats import mcnemar_exact

MIN_HARM = 2


class AuditError(Exception):
    """The audit cannot run as asked (no bank, no path): a usage error."""


@dataclass
class Served:
    """One entry in one bank version, over the audited runs."""

    entry_id: str
    version: int
    runs: set[str] = field(default_factory=set)
    problems: set[str] = field(default_factory=set)  # "benchmark/problem id", distinct
    prompts: int = 0  # prompts it was in (a problem evaluated in several runs counts in each)
    fixed: int = 0
    broken: int = 0

    @property
    def net(self) -> int:
        return self.fixed - self.broken


@dataclass(frozen=True)
class AuditedRun:
    run_dir: Path
    version: int
    how: str  # how the version was decided (sha256 or config path)


@dataclass(frozen=True)
class Audit:
    bank: MemoryBank  # the newest version
    versions: dict[int, MemoryBank]
    runs: tuple[AuditedRun, ...]
    skipped: tuple[tuple[Path, str], ...]
    served: tuple[Served, ...]  # per (entry, version), bank order then version
    min_harm: int

    def pooled(self) -> dict[str, Served]:
        """Per entry over every version (version field: the newest it served in)."""
        out: dict[str, Served] = {}
        for s in self.served:
            p = out.setdefault(s.entry_id, Served(s.entry_id, s.version))
            p.version = max(p.version, s.version)
            p.runs |= s.runs
            p.problems |= s.problems
            p.prompts += s.prompts
            p.fixed += s.fixed
            p.broken += s.broken
        return out

    def candidates(self) -> list[Served]:
        """Entries live in the newest version with ``broken - fixed >= min_harm`` (module docstring)."""
        gone = superseded_ids(self.bank.entries)
        live = {e.id for e in self.bank.entries if e.status != "retired" and e.id not in gone}
        pooled = self.pooled()
        hits = [pooled[i] for i in pooled if i in live and pooled[i].broken - pooled[i].fixed >= self.min_harm]
        return sorted(hits, key=lambda s: (s.net, s.entry_id))


def _run_dirs(paths: list[Path]) -> list[Path]:
    try:
        results = find_results(paths)
    except LeaderboardError as exc:
        raise AuditError(str(exc)) from None
    out: dict[Path, None] = {}
    for r in results:  # lm-eval writes into a subfolder of the run: the run is where its record or config is
        marked = [d for d in (r.parent, r.parent.parent)
                  if (d / "summary.json").is_file() or (d / ".hydra" / "config.yaml").is_file()]
        out[(marked[0] if marked else r.parent).resolve()] = None
    return list(out)


def _config_bank_path(run_dir: Path) -> tuple[bool, Path | None]:
    """(has a Hydra config, the bank path it names or None for no memory)."""
    found = hydra_config(run_dir)
    if found is None:
        return False, None
    register_hydra()  # resolves ${pkg_banks:}
    path = OmegaConf.select(OmegaConf.create(found[1]), "bank.path", default=None)
    return True, Path(str(path)).resolve() if path else None


def run_version(run_dir: Path, root: Path, versions: dict[int, MemoryBank]) -> tuple[int | None, str]:
    """(version, how) for a run, or (None, why it is skipped)."""
    sha = (run_record(run_dir).get("bank_record") or {}).get("sha256")  # the run record's keys sit at the top
    if sha:
        hit = [n for n, b in versions.items() if b.manifest.sha256 == sha]
        if hit:
            return max(hit), f"sha256 {sha[:12]}"
        return None, f"read another bank (sha256 {sha[:12]} is no version of {root})"
    has_config, path = _config_bank_path(run_dir)
    if not has_config:
        return None, "records neither the bank's sha256 (summary.json) nor its path (.hydra/config.yaml)"
    if path is None:
        return None, "ran without memory (bank path null)"
    dirs = {b.path.resolve(): n for n, b in versions.items() if b.path is not None}
    if path in dirs and path != root.resolve():
        return dirs[path], f"config path {path.name}"
    if path == root.resolve():
        if len(versions) == 1:
            return next(iter(versions)), "config path (the bank's only version)"
        return None, "records the bank's path but not its sha256, and the bank now has several versions"
    return None, f"read another bank ({path})"


def audit(bank_path: str | Path, run_paths: list[str | Path], *, min_harm: int = MIN_HARM) -> Audit:
    try:
        newest = load_bank(bank_path)
    except BankError as exc:
        raise AuditError(str(exc)) from None
    root = newest.root or Path(bank_path)
    versions = {n: load_bank(root, version=n) for n in bank_versions(root)}
    served: dict[tuple[str, int], Served] = {}
    runs, skipped = [], []
    for run_dir in _run_dirs([Path(p) for p in run_paths]):
        version, how = run_version(run_dir, root, versions)
        if version is None:
            skipped.append((run_dir, how))
            continue
        try:
            result = attribute(run_dir, versions[version].path)
        except AttributionError as exc:
            skipped.append((run_dir, str(exc).removeprefix(f"{run_dir}: ")))
            continue
        runs.append(AuditedRun(run_dir, version, how))
        for effect in result.effects:
            s = served.setdefault((effect.entry_id, version), Served(effect.entry_id, version))
            s.runs.add(str(run_dir))
            s.prompts += effect.retrieved
            s.fixed += effect.fixed
            s.broken += effect.broken
            s.problems.update(effect.served_ids)
    order = {e.id: i for i, e in enumerate(newest.entries)}
    rows = sorted(served.values(), key=lambda s: (order.get(s.entry_id, len(order)), s.entry_id, s.version))
    return Audit(newest, versions, tuple(runs), tuple(skipped), tuple(rows), min_harm)


def rule_text(min_harm: int) -> str:
    return (f"live in the newest version, and pooled over the audited runs memory broke at least {min_harm} more of "
            "the problem evaluations it was retrieved for than it fixed (broken - fixed >= "
            f"{min_harm}; a problem evaluated in several runs counts once per run)")


def proposal(a: Audit) -> dict:
    """The retire proposal ``bank retire --proposal`` applies (PROPOSAL_FORMAT)."""
    runs = len(a.runs)
    return {
        "format": PROPOSAL_FORMAT, "bank": str(a.bank.root), "version": a.bank.manifest.version,
        "bank_sha256": a.bank.manifest.sha256, "rule": rule_text(a.min_harm),
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [str(r.run_dir) for r in a.runs],
        "retire": [{"id": s.entry_id, "why": f"audit over {runs} run(s): in the prompts of {len(s.problems)} "
                                            f"problem(s), {s.prompts} evaluation(s); memory fixed {s.fixed} and "
                                            f"broke {s.broken} (rule: broken - fixed >= {a.min_harm})"}
                   for s in a.candidates()],
    }


def _relative(path: Path | None) -> str:
    """Below the working directory when it is (audit reports get committed; absolute paths do not travel)."""
    if path is None:
        return "?"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def render(a: Audit) -> str:
    texts = {e.id: e.render() for b in a.versions.values() for e in b.entries}
    status = {}
    gone = superseded_ids(a.bank.entries)
    for e in a.bank.entries:
        status[e.id] = "retired" if e.status == "retired" else "superseded" if e.id in gone else "active"
    lines = [f"# Bank audit: {_relative(a.bank.root)} (newest version v{a.bank.manifest.version}, "
             f"{len(a.bank.entries)} entries)", "",
             f"{len(a.runs)} run(s) audited, {len(a.skipped)} skipped. fixed = wrong without memory, right with it; "
             "broken = the reverse (against each run's no-memory twin). An entry shares the flips of the entries "
             "retrieved with it.", "",
             "| entry | version | status now | runs | problems | prompts | fixed | broken | net | p (sign test) | text |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for s in a.served:
        text = texts.get(s.entry_id, "(not in the bank)").replace("|", "\\|")
        text = text if len(text) <= 90 else text[:87] + "..."
        lines.append(f"| {s.entry_id} | v{s.version} | {status.get(s.entry_id, 'not in newest')} | {len(s.runs)} | "
                     f"{len(s.problems)} | {s.prompts} | {s.fixed} | {s.broken} | {s.net:+d} | "
                     f"{mcnemar_exact(s.fixed, s.broken):.3g} | {text} |")
    if not a.served:
        lines.append("| (no entry was retrieved in the audited runs) | | | 0 | 0 | 0 | 0 | 0 | +0 | 1 | |")
    never = [e.id for e in a.bank.entries if e.id not in {s.entry_id for s in a.served}]
    lines += ["", f"Never retrieved in these runs ({len(never)} of {len(a.bank.entries)} entries of the newest "
                  "version): " + (", ".join(never[:30]) + (" ..." if len(never) > 30 else "") if never else "none")]
    cands = a.candidates()
    lines += ["", f"## Retirement candidates ({len(cands)})", "", f"Rule: {rule_text(a.min_harm)}.", ""]
    lines += [f"- {s.entry_id}: {len(s.problems)} problem(s) over {len(s.runs)} run(s), fixed {s.fixed}, broken "
              f"{s.broken}" for s in cands] or ["(none)"]
    lines += ["", "## Runs", ""]
    lines += [f"- v{r.version} ({r.how}): {_relative(r.run_dir)}" for r in a.runs] or ["(none)"]
    if a.skipped:
        lines += ["", "## Skipped", ""] + [f"- {_relative(p)}: {why}" for p, why in a.skipped]
    return "\n".join(lines) + "\n"


__all__ = ["MIN_HARM", "Audit", "AuditError", "AuditedRun", "Served", "audit", "proposal", "render", "rule_text",
           "run_version"]
