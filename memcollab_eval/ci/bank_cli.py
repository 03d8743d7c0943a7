"""``python -m memcollab_eval.bank {check,diff,gate,attribute}``: CI gates for a change to a memory bank.

* ``check BANK``: every structural and content check of :mod:`memcollab_eval.bank.checks`;
  exit 1 naming file, line, entry and problem for each failure, else exit 0 and print the
  coverage table (category x (preferred, unpreferred) model pair).
* ``diff OLD NEW``: what a bank change does: entries added / removed / changed (by id, with
  the fields that changed) and coverage changes. Informational, exit 0.
* ``gate BANK --baseline FILE``: does the bank still help? Runs the real evaluate job on a
  pinned target and problem subset with the bank, compares per problem with a baseline (a
  previous run's outcomes), prints the flips and an exact McNemar test, and exits 1 when
  accuracy with the bank falls below the baseline by more than ``--tolerance``. A per-problem
  baseline (not a single number) is what makes the comparison paired and the flips visible.
* ``attribute RUN_DIR``: for a finished evaluation run, which entries were in the prompt of the
  problems memory fixed or broke (:mod:`memcollab_eval.leaderboard.attribution`). Informational, exit 0.
* ``retire BANK ID --why ...`` / ``retire BANK --proposal FILE`` and ``supersede BANK OLD_ID NEW_ENTRY.json``:
  write the bank's next version ``<bank>/v<N>/`` (:mod:`memcollab_eval.bank.versions`); ``versions BANK``
  lists the versions with their changelog. ``diff`` takes ``BANK@vN`` to compare versions.
* ``audit BANK RUNS...``: per entry and version, the runs and problems it served and how often memory
  fixed or broke them, over many finished runs; retirement candidates by a stated rule, and a retire
  proposal with ``--propose FILE`` (:mod:`memcollab_eval.leaderboard.audit`).

Exit codes: 0 pass, 1 a check/gate failed, 2 the command could not run as asked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from memcollab_eval.bank.checks import (
    LEAK_NGRAM,
    NEAR_DUP_THRESHOLD,
    BankCheckError,
    check_bank,
    coverage,
    coverage_table,
)
from memcollab_eval.bank.store import BankError, MemoryEntry, bank_versions, load_bank
from memcollab_eval.bank.versions import Retirement, read_new_entry, read_proposal, retire, supersede
from memcollab_eval.config import BankConf
from memcollab_eval.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError
from memcollab_eval.evaluation.cli import prepare_argv
from memcollab_eval.evaluation.job import evaluate, preflight
from memcollab_eval.hydra_app import register_hydra
from memcollab_eval.leaderboard.attribution import AttributionError, attribute, render
from memcollab_eval.leaderboard.audit import MIN_HARM, AuditError, audit, proposal
from memcollab_eval.leaderboard.audit import render as render_audit
from memcollab_eval.leaderboard.runs import find_results, load_run
from memcollab_eval.leaderboard.stats import flips, mcnemar_exact
from memcollab_eval.packaged_data import packaged_root

BASELINE_FORMAT = "memcollab-gate-baseline/1"
NOMEMORY_BASELINE = "nomemory"
__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main"]


def default_data_dir() -> Path:
    """Where the evaluation sets are when --data-dir is not given: $MEMCOLLAB_DATA_DIR, else the
    copy shipped in the package (sha256-checked)."""
    value = os.environ.get("MEMCOLLAB_DATA_DIR")
    return Path(value) if value else packaged_root()


def emit_report(text: str, out: str | None) -> None:
    """A report to ``--out`` (its folder made, the path printed), else to standard output."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(text, end="")


# ---- check -------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    data_dir = None if args.skip_leakage else (args.data_dir or default_data_dir())
    bank, version = split_version(args.bank)
    try:
        report = check_bank(bank, data_dir=data_dir, near_dup_threshold=args.near_dup_threshold,
                            ngram=args.ngram, version=version)
    except BankCheckError as exc:
        raise UsageError(str(exc)) from None
    for finding in report.findings:
        print(finding)
    if report.entries:
        print(f"coverage of {args.bank} ({len(report.entries)} entries), category x (preferred > unpreferred):\n")
        print(coverage_table(coverage(e.entry for e in report.entries)))
    if args.skip_leakage:
        print("\nnote: --skip-leakage: entries were NOT checked against the evaluation problems", file=sys.stderr)
    failures = report.failures(strict=args.strict)
    if failures:
        print(f"\nFAILED: {len(failures)} problem(s) in {args.bank}" + (" (--strict: warnings count)" * args.strict),
              file=sys.stderr)
        return EXIT_FAIL
    print(f"\nOK: {args.bank} passed all checks" + (f" ({len(report.findings)} warning(s))" if report.findings else ""))
    return EXIT_OK


# ---- diff --------------------------------------------------------------------------------

def split_version(spec: str) -> tuple[str, int | None]:
    """``BANK`` (its newest version) or ``BANK@vN`` / ``BANK@N`` (version N)."""
    path, sep, tail = spec.rpartition("@")
    if not sep or "/" in tail:
        return spec, None
    number = tail[1:] if tail[:1] in ("v", "V") else tail
    if not number.isdigit() or int(number) < 1:
        raise UsageError(f"{spec!r}: a version is written BANK@vN with N >= 1")
    return path, int(number)


def _load(spec: str, verb: str = "diff"):
    path, version = split_version(spec)
    try:
        return load_bank(path, version=version)
    except BankError as exc:
        raise UsageError(f"cannot {verb}: {exc}") from None


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe(e: MemoryEntry) -> str:
    return f"{e.id} [{e.category} / {e.subcategory}] {e.preferred_model} > {e.unpreferred_model}: {_short(e.render())}"


def _show(value) -> str:
    text = "(unset)" if value in (None, "", ()) else value if isinstance(value, str) else json.dumps(value)
    return _short(text, 40)


def cmd_diff(args: argparse.Namespace) -> int:
    if args.new is None:  # one bank: its newest version against the one before
        new = _load(args.old)
        if new.manifest.parent_sha256 is None:
            raise UsageError(f"cannot diff: {args.old} has one version only (give two banks, or BANK@vN BANK@vM)")
        older = [n for n in bank_versions(new.root) if n < new.manifest.version]
        args.new, args.old = args.old, f"{new.root}@v{max(older)}"
    old, new = _load(args.old), _load(args.new)
    before, after = {e.id: e for e in old.entries}, {e.id: e for e in new.entries}
    print(f"bank diff: {args.old} ({old.manifest.name} v{old.manifest.version}, {len(old)} entries) -> "
          f"{args.new} ({new.manifest.name} v{new.manifest.version}, {len(new)} entries)")
    added = [after[i] for i in after if i not in before]
    removed = [before[i] for i in before if i not in after]
    changed = [(before[i], after[i]) for i in after if i in before and before[i] != after[i]]
    print(f"\nadded ({len(added)}):")
    print("\n".join(f"  + {_describe(e)}" for e in added) or "  (none)")
    print(f"\nremoved ({len(removed)}):")
    print("\n".join(f"  - {_describe(e)}" for e in removed) or "  (none)")
    print(f"\nchanged ({len(changed)}):")
    for a, b in changed:
        da, db = a.to_dict(), b.to_dict()
        diffs = [k for k in dict.fromkeys([*da, *db]) if da.get(k) != db.get(k)]
        print(f"  ~ {a.id}: " + "; ".join(f"{k}: {_show(da.get(k))!r} -> {_show(db.get(k))!r}" for k in diffs))
    if not changed:
        print("  (none)")
    cov_old, cov_new = coverage(old.entries), coverage(new.entries)
    moves = sorted(k for k in set(cov_old) | set(cov_new) if cov_old.get(k, 0) != cov_new.get(k, 0))
    print(f"\ncoverage changes, category | preferred > unpreferred ({len(moves)}):")
    for cat, pair in moves:
        a, b = cov_old.get((cat, pair), 0), cov_new.get((cat, pair), 0)
        print(f"  {cat} | {pair}: {a} -> {b} ({b - a:+d})")
    if not moves:
        print("  (none)")
    if new.manifest.changelog and new.root == old.root:
        print(f"\nchangelog of v{new.manifest.version}: {json.dumps(new.manifest.changelog, ensure_ascii=False)}")
    return EXIT_OK


# ---- versions: retire, supersede, list ---------------------------------------------------------

def _wrote(bank) -> int:
    c = bank.manifest.changelog or {}
    print(f"wrote {bank.path} (version {bank.manifest.version} of {bank.root}, {len(bank.entries)} entries, "
          f"{c.get('action')} {', '.join(c.get('ids') or [])}; parent sha256 {bank.manifest.parent_sha256[:12]})")
    print(f"loading {bank.root} now reads this version; pin the old one with bank.version={c.get('parent_version')} "
          f"or {bank.root}@v{c.get('parent_version')}")
    return EXIT_OK


def cmd_retire(args: argparse.Namespace) -> int:
    if args.proposal:
        if args.ids or args.why:
            raise UsageError("retire: give either entry ids with --why, or --proposal FILE")
        try:
            header, items = read_proposal(args.proposal)
            newest = load_bank(args.bank)
        except BankError as exc:
            raise UsageError(f"cannot retire: {exc}") from None
        if header.get("bank_sha256") != newest.manifest.sha256:
            raise UsageError(f"cannot retire: the proposal {args.proposal} was made for version "
                             f"{header.get('version')} (sha256 {str(header.get('bank_sha256'))[:12]}), but the newest "
                             f"version of {args.bank} is {newest.manifest.version} (sha256 "
                             f"{newest.manifest.sha256[:12]}): audit again")
        if not items:
            print(f"the proposal {args.proposal} retires nothing; no version written")
            return EXIT_OK
        source = f"proposal {args.proposal} ({header.get('rule', '')})"
    else:
        if not args.ids or not args.why:
            raise UsageError("retire: name the entry id(s) and say why with --why (or give --proposal FILE)")
        items, source = [Retirement(i, args.why) for i in args.ids], ""
    try:
        return _wrote(retire(args.bank, items, source=source))
    except BankError as exc:
        raise UsageError(f"cannot retire: {exc}") from None


def cmd_supersede(args: argparse.Namespace) -> int:
    try:
        entry = read_new_entry(args.new_entry)
        return _wrote(supersede(args.bank, args.old_id, entry, where=str(args.new_entry), why=args.why or ""))
    except BankError as exc:
        raise UsageError(f"cannot supersede: {exc}") from None


def cmd_versions(args: argparse.Namespace) -> int:
    newest = _load(args.bank, "list versions")
    for n in bank_versions(newest.root):
        b = load_bank(newest.root, version=n)
        c = b.manifest.changelog
        what = "as built" if c is None else f"{c.get('action')} {', '.join(c.get('ids') or [])} ({c.get('at')}, " \
            f"by {c.get('by') or '?'})"
        mark = "  <- newest" if b.path == newest.path else ""
        print(f"v{n}  {b.path}  {len(b.entries)} entries  sha256 {b.manifest.sha256[:12]}  {what}{mark}")
    return EXIT_OK


# ---- audit -------------------------------------------------------------------------------

def cmd_audit(args: argparse.Namespace) -> int:
    if args.min_harm < 1:
        raise UsageError(f"--min-harm must be >= 1, got {args.min_harm}")
    try:
        result = audit(args.bank, args.runs, min_harm=args.min_harm)
    except AuditError as exc:
        raise UsageError(f"cannot audit: {exc}") from None
    emit_report(render_audit(result), args.out)
    if args.propose:
        record = proposal(result)
        Path(args.propose).parent.mkdir(parents=True, exist_ok=True)
        Path(args.propose).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.propose}: {len(record['retire'])} entr{'y' if len(record['retire']) == 1 else 'ies'} to "
              f"retire; apply with: python -m memcollab_eval.bank retire {args.bank} --proposal {args.propose}")
    return EXIT_OK


# ---- attribute ---------------------------------------------------------------------------

def cmd_attribute(args: argparse.Namespace) -> int:
    try:
        report = render(attribute(args.run, args.bank), examples=args.examples)
    except AttributionError as exc:
        raise UsageError(str(exc)) from None
    emit_report(report, args.out)
    return EXIT_OK


# ---- gate --------------------------------------------------------------------------------

def compose_gate_config(args: argparse.Namespace, bank_name: str, output_dir: Path):
    """The evaluate job's config, composed like the CLI does (same defaults and validation),
    with the bank pointed at the directory under test."""
    data_dir = args.data_dir or os.environ.get("MEMCOLLAB_DATA_DIR")  # none: the job's default, the package's copy
    overrides = [f"+target={args.target}", "+bank=none", f"benchmarks=[{','.join(args.benchmarks)}]",
                 f"limit={args.limit}", f"output_dir={output_dir}", *([f"data_dir={data_dir}"] if data_dir else []),
                 *([f"target.identity={args.identity}"] if args.identity else []), *args.override]
    register_hydra()
    try:
        with initialize_config_module(config_module="memcollab_eval.conf", version_base="1.3"):
            cfg = OmegaConf.to_object(compose(config_name="config", overrides=prepare_argv(overrides)))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:  # a bad override: name it, no traceback
        raise UsageError(f"cannot compose the evaluation config: {exc}") from None
    cfg.bank = BankConf(name=bank_name, path=str(Path(args.bank).resolve()), description="bank under gate")
    return cfg


def run_gate_eval(cfg, output_dir: Path) -> tuple[Path, dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Evaluate; return the run dir and per-benchmark outcomes with and without the bank."""
    preflight(cfg)  # missing backend or bank: say so before creating anything
    run_dir = output_dir / cfg.target.identity / cfg.bank.name / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)  # the resolved config, as Hydra would save it
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)), encoding="utf-8")
    try:
        evaluate(cfg, run_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    run = load_run(max(run_dir.rglob("results_*.json")))
    with_bank = {t.benchmark: t.outcomes() for t in run.tasks if t.with_memory}
    return run_dir, with_bank, {t.benchmark: t.outcomes() for t in run.tasks if not t.with_memory}


def read_baseline(path: Path) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """A baseline file (``BASELINE_FORMAT``) or a previous run directory (its memory variant)."""
    if path.is_dir():
        runs = [r for r in map(load_run, find_results([path])) if r is not None]
        if not runs:
            raise UsageError(f"baseline {path}: no lm-eval results with memcollab tasks found")
        run = max(runs, key=lambda r: r.date)
        who = {"target": run.target, "backend": run.settings.get("backend", "")}
        return who, {t.benchmark: t.outcomes() for t in run.tasks if t.with_memory}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"baseline {path}: cannot read ({exc})") from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if data.get("format") != BASELINE_FORMAT or not isinstance(benchmarks, dict):
        raise UsageError(f"baseline {path}: expected a JSON object with \"format\": \"{BASELINE_FORMAT}\" and "
                         "\"benchmarks\": {benchmark: {memcollab_id: 0 or 1}} (write one with --write-baseline)")
    out = {}
    for bench, outcomes in benchmarks.items():
        if not isinstance(outcomes, dict) or not all(v in (0, 1, True, False) for v in outcomes.values()):
            raise UsageError(f"baseline {path}: benchmarks.{bench} must map problem ids to 0 or 1")
        out[bench] = {str(k): float(v) for k, v in outcomes.items()}
    return {k: str(data[k]) for k in ("target", "backend") if data.get(k)}, out


def compare(current: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]], benchmarks: list[str],
            tolerance: float) -> tuple[bool, list[str], dict]:
    """Paired per-problem comparison; returns (passed, report lines, machine-readable summary)."""
    notes: list[str] = []
    lines = ["| benchmark | problems | baseline acc % | with bank % | Δ points | fixed | broken | McNemar p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pooled_base, pooled_new, all_fixed, all_broken, summary = [], [], [], [], {}
    for bench in benchmarks:
        if not baseline.get(bench):
            raise UsageError(f"the baseline has no outcomes for {bench}; re-create it with --write-baseline")
        cur, base = current.get(bench, {}), baseline[bench]
        common = sorted(set(cur) & set(base))
        if not common:
            raise UsageError(f"{bench}: no problem of this run is in the baseline (different --limit or data?)")
        f = flips({i: base[i] for i in common}, {i: cur[i] for i in common})
        b_acc, n_acc = sum(base[i] for i in common) / len(common), sum(cur[i] for i in common) / len(common)
        pooled_base += [base[i] for i in common]
        pooled_new += [cur[i] for i in common]
        all_fixed += [f"{bench}: {i}" for i in f.fixed]
        all_broken += [f"{bench}: {i}" for i in f.broken]
        lines.append(f"| {bench} | {len(common)} | {100 * b_acc:.1f} | {100 * n_acc:.1f} | {100 * (n_acc - b_acc):+.1f} "
                     f"| {len(f.fixed)} | {len(f.broken)} | {f.p_value:.3g} |")
        missing = len(set(cur) - set(base))
        summary[bench] = {"n": len(common), "baseline": b_acc, "with_bank": n_acc, "fixed": list(f.fixed),
                          "broken": list(f.broken), "p_value": f.p_value, "not_in_baseline": missing}
        if missing:
            notes.append(f"note: {bench}: {missing} problem(s) of this run are not in the baseline (not compared)")
    base_acc, new_acc = sum(pooled_base) / len(pooled_base), sum(pooled_new) / len(pooled_new)
    p = mcnemar_exact(len(all_fixed), len(all_broken))
    lines.append(f"| all | {len(pooled_base)} | {100 * base_acc:.1f} | {100 * new_acc:.1f} | "
                 f"{100 * (new_acc - base_acc):+.1f} | {len(all_fixed)} | {len(all_broken)} | {p:.3g} |")
    lines += ["", *notes, f"fixed (wrong in the baseline, right with the bank): {len(all_fixed)}"]
    lines += [f"  + {x}" for x in all_fixed]
    lines += [f"broken (right in the baseline, wrong with the bank): {len(all_broken)}"]
    lines += [f"  - {x}" for x in all_broken]
    passed = new_acc >= base_acc - tolerance - 1e-12
    verdict = (f"PASS: accuracy with the bank {100 * new_acc:.1f}% vs baseline {100 * base_acc:.1f}% "
               f"(tolerance {100 * tolerance:.1f} points)") if passed else (
        f"FAIL: accuracy with the bank {100 * new_acc:.1f}% is below the baseline {100 * base_acc:.1f}% by "
        f"{100 * (base_acc - new_acc):.1f} points (tolerance {100 * tolerance:.1f}); exact McNemar p = {p:.3g}")
    lines += ["", verdict]
    summary["all"] = {"n": len(pooled_base), "baseline": base_acc, "with_bank": new_acc, "p_value": p}
    return passed, lines, summary


def cmd_gate(args: argparse.Namespace) -> int:
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    try:
        bank = load_bank(args.bank)
    except BankError as exc:
        print(f"FAIL: the bank does not load (run `check` for every problem): {exc}", file=sys.stderr)
        return EXIT_FAIL
    cfg = compose_gate_config(args, bank.manifest.name, Path(args.output_dir))
    info = {"target": cfg.target.identity, "backend": cfg.target.model}
    baseline = None
    if args.baseline and args.baseline != NOMEMORY_BASELINE:
        base_who, baseline = read_baseline(Path(args.baseline))
        for key, value in base_who.items():  # a baseline only means something for the same model
            if value and value != "?" and value != info[key]:
                raise UsageError(f"the baseline's {key} is {value!r} but this gate runs {info[key]!r}")
    elif not (args.baseline or args.write_baseline):
        raise UsageError("gate needs --baseline FILE|RUN_DIR|nomemory (or --write-baseline FILE to record one)")
    run_dir, current, without = run_gate_eval(cfg, Path(args.output_dir))
    if args.baseline == NOMEMORY_BASELINE:  # the same run's no-memory twin: does the bank help at all?
        baseline = without
    print(f"bank gate: {args.bank} ({bank.manifest.name}, sha256 {bank.manifest.sha256[:12]}) on target "
          f"{info['target']} ({info['backend']}), benchmarks {','.join(args.benchmarks)}, limit {args.limit}; "
          f"run: {run_dir}")
    for bench, outcomes in without.items():
        if outcomes:
            print(f"  (context) {bench} without memory: {100 * sum(outcomes.values()) / len(outcomes):.1f}%")
    if args.write_baseline:
        record = {"format": BASELINE_FORMAT, "target": info["target"], "backend": info["backend"],
                  "bank": bank.manifest.name,
                  "bank_sha256": bank.manifest.sha256, "limit": args.limit, "run": str(run_dir),
                  "benchmarks": {b: {i: int(v) for i, v in sorted(o.items())} for b, o in current.items()}}
        Path(args.write_baseline).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote baseline {args.write_baseline}")
    if baseline is None:
        return EXIT_OK
    passed, lines, summary = compare(current, baseline, args.benchmarks, args.tolerance)
    print("\n" + "\n".join(lines))
    (run_dir / "gate.json").write_text(json.dumps({"passed": passed, "tolerance": args.tolerance, **summary},
                                                  indent=1) + "\n", encoding="utf-8")
    return EXIT_OK if passed else EXIT_FAIL


# ---- entry point -------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m memcollab_eval.bank", description="CI gates for memory banks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="validate a bank: schema, sha256, duplicates, leakage, categories")
    p.add_argument("bank", help="bank directory (entries.jsonl + manifest.json)")
    p.add_argument("--data-dir", help="evaluation data laid out as gsm8k/test.jsonl, math500/test.jsonl, ... (default: $MEMCOLLAB_DATA_DIR, else the copy shipped in the package)")
    p.add_argument("--strict", action="store_true", help="warnings (e.g. empty categories) fail the check too")
    p.add_argument("--near-dup-threshold", type=float, default=NEAR_DUP_THRESHOLD,
                   help=f"TF-IDF cosine at or above which two entries are near duplicates (default {NEAR_DUP_THRESHOLD})")
    p.add_argument("--ngram", type=int, default=LEAK_NGRAM,
                   help=f"consecutive shared words that count as leakage (default {LEAK_NGRAM})")
    p.add_argument("--skip-leakage", action="store_true", help="do not read the evaluation data (not for CI)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("diff", help="entries and coverage added / removed / changed between two banks or versions")
    p.add_argument("old", help="a bank (its newest version) or BANK@vN; alone: its newest version against the one before")
    p.add_argument("new", nargs="?")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser("retire", help="write a new version in which entries are retired (never edits in place)")
    p.add_argument("bank")
    p.add_argument("ids", nargs="*", metavar="ID", help="entry id(s) to retire")
    p.add_argument("--why", help="why (recorded in each entry and in the version's changelog)")
    p.add_argument("--proposal", help="a retire proposal written by `bank audit --propose`")
    p.set_defaults(func=cmd_retire)
    p = sub.add_parser("supersede", help="write a new version with NEW_ENTRY.json replacing OLD_ID")
    p.add_argument("bank")
    p.add_argument("old_id")
    p.add_argument("new_entry", help="a JSON file holding one entry (the fields of entries.jsonl)")
    p.add_argument("--why", help="recorded in the version's changelog")
    p.set_defaults(func=cmd_supersede)
    p = sub.add_parser("versions", help="the versions of a bank with their changelog")
    p.add_argument("bank")
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("audit", help="per entry and version over many finished runs: problems served, fixed, "
                                     "broken; retirement candidates")
    p.add_argument("bank")
    p.add_argument("runs", nargs="+", help="run directories, or folders holding runs")
    p.add_argument("--min-harm", type=int, default=MIN_HARM,
                   help=f"candidate rule: broken - fixed >= this (default {MIN_HARM})")
    p.add_argument("--out", help="write the Markdown report here instead of printing it")
    p.add_argument("--propose", metavar="FILE", help="write a retire proposal for `bank retire --proposal`")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("gate", help="evaluate with the bank and compare per problem with a baseline")
    p.add_argument("bank")
    p.add_argument("--baseline", help="baseline JSON (see --write-baseline), a previous run directory, or "
                   f"'{NOMEMORY_BASELINE}' (this run's no-memory twin)")
    p.add_argument("--write-baseline", metavar="FILE", help="write this run's per-problem outcomes as a baseline")
    p.add_argument("--target", default="qwen25_coder_05b", help="target config name (default: the embedded CPU model)")
    p.add_argument("--identity", help="override target.identity (which model's lessons retrieval selects)")
    p.add_argument("--benchmarks", default="gsm8k,mbpp", help="comma-separated (default gsm8k,mbpp)")
    p.add_argument("--limit", type=int, default=10, help="problems per benchmark (default 10)")
    p.add_argument("--tolerance", type=float, default=0.02, help="allowed accuracy drop, as a fraction (default 0.02)")
    p.add_argument("--data-dir", help="evaluation data laid out as gsm8k/test.jsonl, math500/test.jsonl, ... (default: $MEMCOLLAB_DATA_DIR, else the copy shipped in the package)")
    p.add_argument("--output-dir", default="outputs/bank_gate", help="where the gate's run is written")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for the evaluate job (repeatable)")
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("attribute", help="per entry: problems it was retrieved for, and how many of them memory "
                                         "fixed or broke (one run vs its no-memory twin)")
    p.add_argument("run", help="an evaluation run directory (python -m memcollab_eval ... output)")
    p.add_argument("--bank", help="bank directory for the entry texts (default: the one in the run's Hydra config)")
    p.add_argument("--examples", type=int, default=3, help="broken problem ids shown per entry (default 3)")
    p.add_argument("--out", help="write the Markdown report here instead of printing it")
    p.set_defaults(func=cmd_attribute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def console_main() -> None:
    """The ``memcollab-bank`` console script."""
    sys.exit(main())
