"""Render a :class:`~memcollab_eval.leaderboard.records.Leaderboard` as Markdown, CSV, HTML and PNG.

Rendering is kept apart from reading and statistics so that every format shows the same
numbers (all come from the same ``LeaderboardRow`` objects) and the warnings come first in
every human-readable format: a reader skimming a table must not miss that some runs were not
comparable. The HTML is self-contained (inline CSS, no scripts, no external assets) so it can
be attached to a CI run or mailed; the plot uses matplotlib's Agg backend (no display needed).
``main`` (the ``python -m memcollab_eval.leaderboard`` entry point) lives here: reading and
combining runs is board.py's job, writing the files is this module's.
"""

from __future__ import annotations

import argparse
import csv
import html
import sys
from collections.abc import Callable
from pathlib import Path

from memcollab_eval.config import BENCHMARK_NAMES
from memcollab_eval.leaderboard.board import build_leaderboard
from memcollab_eval.leaderboard.records import (
    AVERAGE,
    NO_MEMORY,
    ROW_FIELDS,
    Leaderboard,
    LeaderboardError,
    LeaderboardRow,
    differing_keys,
)

TITLES = {"math500": "MATH500", "gsm8k": "GSM8K", "mbpp": "MBPP", "humaneval": "HumanEval", AVERAGE: "average"}
COLUMNS = (*BENCHMARK_NAMES, AVERAGE)
ORIGIN_NOTE = {
    "metadata": "target and bank read from lm-eval task metadata (no .hydra/config.yaml found)",
    "model_args": "target read from lm-eval's model_args; bank and retrieval settings are NOT recorded by lm-eval "
                  "(runs of lm_eval --include_path tasks) and are shown as 'unknown'",
    "unknown": "target unknown: neither a .hydra/config.yaml, task metadata nor model_args name it",
}
WARNING_HEAD = ("WARNING: runs with different settings were found and NOT combined. Each settings group has "
                "its own tables; do not compare numbers across groups.")


def group_warnings(board: Leaderboard) -> list[str]:
    """One line per pair of settings groups: which keys differ, with each group's values and runs."""
    out = []
    for i, (name_a, a) in enumerate(board.groups):
        for name_b, b in board.groups[i + 1:]:
            keys = sorted({k for x in a for y in b for k in differing_keys(x, y)})
            if not keys:
                continue
            values = "; ".join(f"{k}: {board.group_settings[name_a].get(k, '?')} vs "
                               f"{board.group_settings[name_b].get(k, '?')}" for k in keys)
            out.append(f"settings group {name_a} ({', '.join(r.label for r in a)}) and group {name_b} "
                       f"({', '.join(r.label for r in b)}) differ in {', '.join(keys)} -- {values}")
    return out


def pct(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else (f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}")


def ci(lo: float | None, hi: float | None, signed: bool = False) -> str:
    return "-" if lo is None or hi is None else f"[{pct(lo, signed)}, {pct(hi, signed)}]"


def tokens(r: LeaderboardRow) -> str:
    if r.added_prompt_tokens_est is None:
        return "-"
    return f"~{r.added_prompt_tokens_est:.0f}" if r.tokens_estimated else f"{r.added_prompt_tokens_est:.0f}"


def legend(board: Leaderboard) -> str:
    boot = (f"95% percentile bootstrap CI over problems ({board.iters} resamples, seed {board.seed})"
            if board.iters > 0 else "no confidence intervals (--bootstrap 0)")
    return (f"Accuracy in %, {boot}. Δ = accuracy with memory minus the no-memory row of the same target, paired "
            "by problem (`memcollab_id`) over the problems both rows share, with a paired bootstrap CI; the average "
            "column is the macro mean over benchmarks (bootstrap stratified by benchmark). abstained = share of "
            "problems for which retrieval returned nothing (no memory added). Added prompt tokens are an ESTIMATE "
            "(memory characters / 4, marked ~) unless the samples record real token counts. turns: '-' = not "
            "recorded.")


def _table_parts(board: Leaderboard, group: str, target: str) -> tuple[list[str], list[str], dict]:
    rows = [r for r in board.rows if r.group == group and r.target == target]
    sources = list(dict.fromkeys(r.source for r in rows))
    columns = [c for c in COLUMNS if any(r.benchmark == c for r in rows)]
    return sources, columns, {(r.source, r.benchmark): r for r in rows}


def _settings_line(board: Leaderboard, group: str) -> str:
    s = board.group_settings[group]
    parts = [f"{k}={s[k]}" for k in ("mode", "limit", "seed", "lm_eval_version", "backend") if k in s]
    for key in ("max_gen_toks", "dataset"):
        per = [f"{b}={s[f'{key}[{b}]']}" for b in BENCHMARK_NAMES if f"{key}[{b}]" in s]
        if per:
            parts.append(f"{key}: " + " ".join(per))
    return "; ".join(parts)


def _heading(board: Leaderboard, group: str, target: str, origin: str) -> str:
    return target + (f" (settings group {group})" if group else "") + (" ‡" if origin != "hydra" else "")


def _cell_text(r: LeaderboardRow | None) -> str:
    if r is None:
        return "-"
    text = f"{pct(r.accuracy)} {ci(r.ci_low, r.ci_high)} n={r.n}" + (f" ({r.note})" if r.note else "")
    if r.source != NO_MEMORY:
        text += f"; Δ {pct(r.delta_vs_nomemory, True)} {ci(r.delta_ci_low, r.delta_ci_high, True)}"
    return text


DETAIL_HEAD = ("memory source", "benchmark", "n", "acc %", "95% CI", "Δ vs no memory", "Δ 95% CI", "paired n",
               "abstained %", "added prompt tokens (~ = est. chars/4)", "turns", "run(s)")


def _detail_cells(r: LeaderboardRow) -> list[str]:
    return [r.source, TITLES[r.benchmark] + (f" ({r.note})" if r.note else ""), str(r.n), pct(r.accuracy),
            ci(r.ci_low, r.ci_high), pct(r.delta_vs_nomemory, True), ci(r.delta_ci_low, r.delta_ci_high, True),
            str(r.n_paired) if r.delta_vs_nomemory is not None else "-", pct(r.abstain_rate), tokens(r),
            "-" if r.turns is None else f"{r.turns:.2f}", r.runs]


def render_markdown(board: Leaderboard) -> str:
    def md_row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = ["# MemCollab leaderboard", ""]
    if warnings := group_warnings(board):
        out += [f"> **{WARNING_HEAD}**", ">"] + [f"> - {w}" for w in warnings] + [""]
    out += [legend(board), ""]
    for group, target, origin in board.tables:
        sources, columns, cells = _table_parts(board, group, target)
        out += [f"## {_heading(board, group, target, origin)}", ""]
        if origin != "hydra":
            out += [f"‡ {ORIGIN_NOTE[origin]}.", ""]
        out += [f"Settings: {_settings_line(board, group)}", ""]
        out += [md_row(["memory source", *(TITLES[c] for c in columns)]), md_row(["---"] * (len(columns) + 1))]
        out += [md_row([s, *(_cell_text(cells.get((s, c))) for c in columns)]) for s in sources]
        out += ["", "Details:", "", md_row(list(DETAIL_HEAD)), md_row(["---"] * len(DETAIL_HEAD))]
        out += [md_row(_detail_cells(cells[(s, c)])) for s in sources for c in columns if (s, c) in cells]
        out.append("")
    if board.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    out += ["## Runs read", ""] + [f"- {r.label} ({r.results_file.name}): target {r.target}, bank {r.bank}"
                                   for r in sorted(board.runs, key=lambda r: r.date)]
    return "\n".join(out) + "\n"


def write_csv(board: Leaderboard, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ROW_FIELDS)
        for r in board.rows:
            values = [getattr(r, k) for k in ROW_FIELDS]
            writer.writerow(["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in values])


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:90%}th{background:#f3f3f3}
.warn{border:3px solid #c00;background:#fee;padding:1em;font-weight:bold}.warn li{font-weight:normal}
.pos{color:#070}.neg{color:#b00}.small{color:#666;font-size:85%}.legend{max-width:60em}"""


def render_html(board: Leaderboard) -> str:
    e: Callable[[str], str] = html.escape

    def cell(r: LeaderboardRow | None) -> str:
        if r is None:
            return "<td>-</td>"
        lines = [f"<b>{pct(r.accuracy)}</b> {ci(r.ci_low, r.ci_high)}", f"<span class=small>n={r.n}</span>"]
        if r.source != NO_MEMORY:
            cls = "" if r.delta_vs_nomemory is None else ("pos" if r.delta_vs_nomemory > 0 else
                                                          "neg" if r.delta_vs_nomemory < 0 else "")
            lines.append(f"<span class={cls or 'small'}>Δ {pct(r.delta_vs_nomemory, True)} "
                         f"{ci(r.delta_ci_low, r.delta_ci_high, True)}</span>")
            lines.append(f"<span class=small>abstained {pct(r.abstain_rate)}%, +{e(tokens(r))} tokens, "
                         f"turns {'-' if r.turns is None else f'{r.turns:.2f}'}</span>")
        return "<td>" + "<br>".join(lines) + "</td>"

    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>MemCollab leaderboard</title>",
           f"<style>{CSS}</style></head><body><h1>MemCollab leaderboard</h1>"]
    if warnings := group_warnings(board):
        out.append(f"<div class=warn>{e(WARNING_HEAD)}<ul>" + "".join(f"<li>{e(w)}</li>" for w in warnings)
                   + "</ul></div>")
    out.append(f"<p class=legend>{e(legend(board))}</p>")
    for group, target, origin in board.tables:
        sources, columns, cells = _table_parts(board, group, target)
        out.append(f"<h2>{e(_heading(board, group, target, origin))}</h2>")
        if origin != "hydra":
            out.append(f"<p>‡ {e(ORIGIN_NOTE[origin])}.</p>")
        out.append(f"<p class=small>Settings: {e(_settings_line(board, group))}</p><table><tr><th>memory source</th>"
                   + "".join(f"<th>{TITLES[c]}</th>" for c in columns) + "</tr>")
        out += [f"<tr><th>{e(s)}</th>" + "".join(cell(cells.get((s, c))) for c in columns) + "</tr>" for s in sources]
        out.append("</table><details><summary>details</summary><table><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in DETAIL_HEAD) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in _detail_cells(cells[(s, c)])) + "</tr>"
                for s in sources for c in columns if (s, c) in cells]
        out.append("</table></details>")
    if board.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in board.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def plot_deltas(board: Leaderboard, path: Path) -> bool:
    """``deltas.png``: Δ vs no memory with 95% CI error bars, one panel per table.
    Returns False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(g, t) for g, t, _ in board.tables]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, (group, target) in zip(axes[:, 0], panels, strict=False):
        sources, columns, cells = _table_parts(board, group, target)
        memory = [s for s in sources if s != NO_MEMORY]
        width = 0.8 / max(1, len(memory))
        for i, source in enumerate(memory):
            xs, ys, lo, hi = [], [], [], []
            for j, c in enumerate(columns):
                r = cells.get((source, c))
                if r is None or r.delta_vs_nomemory is None:
                    continue
                d = 100 * r.delta_vs_nomemory
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(d)
                lo.append(0.0 if r.delta_ci_low is None else d - 100 * r.delta_ci_low)
                hi.append(0.0 if r.delta_ci_high is None else 100 * r.delta_ci_high - d)
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=4, label=source)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xticks(range(len(columns)), [TITLES[c] for c in columns])
        ax.set_xlim(-0.6, len(columns) - 0.4)
        ax.set_ylabel("Δ vs no memory (points, 95% CI)")
        ax.set_title(target + (f" (settings group {group})" if group else ""))
        if memory:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no memory rows to compare", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(board: Leaderboard, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv", "html": out_dir / "leaderboard.html"}
    paths["md"].write_text(render_markdown(board), encoding="utf-8")
    write_csv(board, paths["csv"])
    paths["html"].write_text(render_html(board), encoding="utf-8")
    if plot_deltas(board, out_dir / "deltas.png"):
        paths["png"] = out_dir / "deltas.png"
    else:
        print("note: matplotlib is not installed; deltas.png was not written", file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memcollab_eval.leaderboard",
                                     description="Leaderboard over finished MemCollab evaluation runs.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run directories or lm-eval results files (directories are searched recursively)")
    parser.add_argument("--out", default="leaderboard", help="output directory (default: ./leaderboard)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0 = no CIs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    try:
        board = build_leaderboard(args.paths, iters=args.bootstrap, seed=args.seed)
    except LeaderboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = write_all(board, Path(args.out))
    print(written["md"].read_text(encoding="utf-8"))
    print("wrote: " + ", ".join(str(p) for p in written.values()), file=sys.stderr)
    return 0


def console_main() -> None:
    """The ``memcollab-leaderboard`` console script."""
    raise SystemExit(main())
