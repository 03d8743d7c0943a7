"""Render a :class:`~memcollab_eval.leaderboard.records.Leaderboard` as Markdown, CSV, HTML and PNG.

Rendering is kept apart from reading and statistics so that every format shows the same
numbers (all come from the same ``LeaderboardRow`` objects) and the warnings come first in
every human-readable format: a reader skimming a table must not miss that some runs were not
comparable. Each table's heading names the target and its backend; a cell where retrieval
abstained on every problem says "no memory reached the prompts" instead of a Δ of +0.0 that
would read as "memory does nothing". The HTML is self-contained (inline CSS, no scripts, the
delta plot embedded as a PNG data URI, the runs it read listed) so it can be attached to a CI run
or mailed; the plot uses matplotlib's Agg backend (no display needed). The CSV carries each row's
settings (protocol, backend, limit, seed) so a script can tell the tables apart.
``main`` (the ``python -m memcollab_eval.leaderboard`` entry point) lives here: reading and
combining runs is board.py's job, writing the files is this module's.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import sys
from collections.abc import Callable
from datetime import datetime, timezone
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
    Run,
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
NOT_REACHED = "no memory reached the prompts"
CSV_SETTINGS = ("protocol", "backend", "decoding", "limit", "seed")  # settings columns after the row's own fields


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


def differing_between_groups(board: Leaderboard) -> list[str]:
    """The settings keys on which some two groups differ (what the warning's table shows)."""
    keys: set[str] = set()
    for i, (_, a) in enumerate(board.groups):
        for _, b in board.groups[i + 1:]:
            keys.update(k for x in a for y in b for k in differing_keys(x, y))
    return sorted(keys)


def table_runs(board: Leaderboard, group: str, target: str) -> list[Run]:
    return [r for name, runs in board.groups if name == group for r in runs if r.target == target]


def backend(board: Leaderboard, group: str, target: str) -> str:
    """The model backend of one table's runs (the same for all of them: a different one splits the table)."""
    found = sorted({r.settings.get("backend", "?") for r in table_runs(board, group, target)})
    return "/".join(found) or "?"


def protocol(settings: dict[str, str] | None) -> str:
    """The prompt protocol as the evaluate command names it (``protocol=single_turn|agent``)."""
    mode = (settings or {}).get("mode", "")
    return "agent" if mode == "agent" else "single_turn" if mode else ""


def not_reached(r: LeaderboardRow | None) -> bool:
    """Retrieval abstained on every problem of the cell: its Δ says nothing about the bank."""
    return r is not None and r.source != NO_MEMORY and r.abstain_rate is not None and r.abstain_rate >= 1.0


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
    return (f"{target} · backend {backend(board, group, target)}" + (f" (settings group {group})" if group else "")
            + (" ‡" if origin != "hydra" else ""))


def _cell_text(r: LeaderboardRow | None) -> str:
    if r is None:
        return "-"
    text = f"{pct(r.accuracy)} {ci(r.ci_low, r.ci_high)} n={r.n}" + (f" ({r.note})" if r.note else "")
    if not_reached(r):
        text += f"; Δ - (no memory reached: retrieval abstained on all {r.n})"
    elif r.source != NO_MEMORY:
        text += f"; Δ {pct(r.delta_vs_nomemory, True)} {ci(r.delta_ci_low, r.delta_ci_high, True)}"
    return text


def _source_label(source: str, columns: list[str], cells: dict) -> str:
    """A row name, marked when retrieval abstained on every problem of every benchmark of the row."""
    mine = [cells[(source, c)] for c in columns if (source, c) in cells]
    return f"{source} ({NOT_REACHED})" if mine and all(not_reached(r) for r in mine) else source


DETAIL_HEAD = ("memory source", "benchmark", "n", "acc %", "95% CI", "Δ vs no memory", "Δ 95% CI", "paired n",
               "abstained %", "added prompt tokens (~ = est. chars/4)", "turns", "run(s)")


def _detail_cells(r: LeaderboardRow) -> list[str]:
    return [r.source, TITLES[r.benchmark] + (f" ({r.note})" if r.note else ""), str(r.n), pct(r.accuracy),
            ci(r.ci_low, r.ci_high), pct(r.delta_vs_nomemory, True), ci(r.delta_ci_low, r.delta_ci_high, True),
            str(r.n_paired) if r.delta_vs_nomemory is not None else "-", pct(r.abstain_rate), tokens(r),
            "-" if r.turns is None else f"{r.turns:.2f}", r.runs]


def render_markdown(board: Leaderboard, plot: str | None = None) -> str:
    """``plot``: the file name of the delta plot beside the Markdown, linked under the tables."""
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
        out += [md_row([_source_label(s, columns, cells), *(_cell_text(cells.get((s, c))) for c in columns)])
                for s in sources]
        out += ["", "Details:", "", md_row(list(DETAIL_HEAD)), md_row(["---"] * len(DETAIL_HEAD))]
        out += [md_row(_detail_cells(cells[(s, c)])) for s in sources for c in columns if (s, c) in cells]
        out.append("")
    if plot:
        out += [f"![Δ vs no memory with 95% CIs, one panel per table]({plot})", ""]
    if board.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    out += ["## Runs read", ""] + [f"- {r.label} ({r.results_file.name}): target {r.target}, bank {r.bank}, "
                                   f"backend {r.settings.get('backend', '?')}, {_run_settings(r)}"
                                   for r in sorted(board.runs, key=lambda r: r.date)]
    return "\n".join(out) + "\n"


def _run_settings(r: Run) -> str:
    return ", ".join(f"{k} {v}" for k, v in (("protocol", protocol(dict(r.settings))),
                                              ("decoding", r.settings.get("decoding", "-")),
                                              ("limit", r.settings.get("limit", "?")),
                                              ("seed", r.settings.get("seed", "?"))))


def write_csv(board: Leaderboard, path: Path) -> None:
    """One line per table cell: the row's fields, then its settings (:data:`CSV_SETTINGS`)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*ROW_FIELDS, *CSV_SETTINGS])
        for r in board.rows:
            values = [getattr(r, k) for k in ROW_FIELDS]
            settings = dict(board.group_settings.get(r.group, {}))
            extra = [protocol(settings), backend(board, r.group, r.target), settings.get("decoding", ""),
                     settings.get("limit", ""), settings.get("seed", "")]
            writer.writerow(["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in values] + extra)


CSS = """body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
.page{max-width:90em;margin:0 auto;padding:1.2em 2em 4em}h1{margin:.2em 0 .6em}
h2{margin:1.8em 0 .3em;font-size:1.25em}
table{border-collapse:collapse;margin:.6em 0;background:#fff}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:90%;text-align:left}th{background:#f1f1f1}
.wide{overflow-x:auto;max-width:100%}
.warn{border:3px solid #c00;background:#fff0f0;padding:.8em 1.2em;margin:1em 0;border-radius:6px}
.warn .head{font-weight:bold;font-size:1.12em;color:#a00}.warn p{margin:.4em 0}
.warn table td,.warn table th{font-size:95%}.warn td.differs{font-weight:bold;color:#a00}
.group{display:inline-block;background:#a00;color:#fff;border-radius:.3em;padding:0 .45em;font-size:.8em;
 vertical-align:middle;margin-left:.3em}
.backend{color:#555;font-weight:normal}
.settings{color:#555;font-size:88%}.settings b{color:#a00}
.pos{color:#070}.neg{color:#b00}.small{color:#666;font-size:85%}.legend{max-width:60em}
.none{color:#8a5a00;font-weight:600}th.none{color:#8a5a00}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd;background:#fff}
figcaption{color:#555;font-size:90%}td.nowrap{white-space:nowrap}
table.runs{width:100%}table.runs td:nth-child(-n+2){overflow-wrap:anywhere;min-width:12em}"""


def _warning_html(board: Leaderboard) -> str:
    """The mixed-settings warning: which settings differ, one column per group, and each group's runs."""
    e = html.escape
    keys = differing_between_groups(board)
    names = [name for name, _ in board.groups]
    head = "".join(f"<th>group {e(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{e(k)}</td>" + "".join(f"<td class=differs>{e(board.group_settings[n].get(k, '-'))}</td>"
                                                  for n in names) + "</tr>" for k in keys)
    runs = "".join(f"<li><b>group {e(n)}</b>: {e(', '.join(r.label for r in g))}</li>" for n, g in board.groups)
    return (f"<div class=warn role=alert><div class=head>⚠ {e(WARNING_HEAD.split('. ')[0])}.</div>"
            f"<p>{e(WARNING_HEAD.split('. ', 1)[1])}</p>"
            f"<div class=wide><table><tr><th>setting that differs</th>{head}</tr>{rows}</table></div>"
            f"<ul>{runs}</ul></div>")


def render_html(board: Leaderboard, plot_png: bytes | None = None) -> str:
    """``plot_png``: the delta plot, embedded as a data URI (the page stays one file)."""
    e: Callable[[str], str] = html.escape
    differs = set(differing_between_groups(board))

    def cell(r: LeaderboardRow | None) -> str:
        if r is None:
            return "<td>-</td>"
        lines = [f"<b>{pct(r.accuracy)}</b> {ci(r.ci_low, r.ci_high)}", f"<span class=small>n={r.n}</span>"]
        if not_reached(r):
            lines.append(f"<span class=none>{NOT_REACHED}</span>")
            lines.append(f"<span class=small>retrieval abstained on all {r.n}, so no Δ</span>")
        elif r.source != NO_MEMORY:
            cls = "" if r.delta_vs_nomemory is None else ("pos" if r.delta_vs_nomemory > 0 else
                                                          "neg" if r.delta_vs_nomemory < 0 else "")
            lines.append(f"<span class={cls or 'small'}>Δ {pct(r.delta_vs_nomemory, True)} "
                         f"{ci(r.delta_ci_low, r.delta_ci_high, True)}</span>")
            lines.append(f"<span class=small>abstained {pct(r.abstain_rate)}%, +{e(tokens(r))} tokens, "
                         f"turns {'-' if r.turns is None else f'{r.turns:.2f}'}</span>")
        return "<td>" + "<br>".join(lines) + "</td>"

    def settings_line(group: str) -> str:
        parts = _settings_line(board, group).split("; ")
        return "; ".join(f"<b>{e(p)}</b>" if p.split("=", 1)[0].split(":", 1)[0] in differs or any(
            p.startswith(f"{k.split('[')[0]}:") and k in differs for k in differs) else e(p) for p in parts)

    out = ["<!DOCTYPE html><html lang=en><head><meta charset='utf-8'>",
           "<meta name=viewport content='width=device-width,initial-scale=1'><title>MemCollab leaderboard</title>",
           f"<style>{CSS}</style></head><body><div class=page><h1>MemCollab leaderboard</h1>"]
    if group_warnings(board):
        out.append(_warning_html(board))
    out.append(f"<p class=legend>{e(legend(board))}</p>")
    for group, target, origin in board.tables:
        sources, columns, cells = _table_parts(board, group, target)
        chip = f" <span class=group>settings group {e(group)}</span>" if group else ""
        out.append(f"<h2>{e(target)} <span class=backend>· backend {e(backend(board, group, target))}</span>{chip}"
                   + (" ‡" if origin != "hydra" else "") + "</h2>")
        if origin != "hydra":
            out.append(f"<p>‡ {e(ORIGIN_NOTE[origin])}.</p>")
        out.append(f"<p class=settings>Settings: {settings_line(group)}</p><div class=wide><table><tr>"
                   "<th>memory source</th>" + "".join(f"<th>{TITLES[c]}</th>" for c in columns) + "</tr>")
        for s in sources:
            label = _source_label(s, columns, cells)
            name = (f"<th class=none>{e(s)}<br><span class=small>{NOT_REACHED}</span></th>" if label != s
                    else f"<th>{e(s)}</th>")
            out.append(f"<tr>{name}" + "".join(cell(cells.get((s, c))) for c in columns) + "</tr>")
        out.append("</table></div><details><summary>details</summary><div class=wide><table><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in DETAIL_HEAD) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in _detail_cells(cells[(s, c)])) + "</tr>"
                for s in sources for c in columns if (s, c) in cells]
        out.append("</table></div></details>")
    if plot_png:
        data = base64.b64encode(plot_png).decode("ascii")
        out.append("<h2>Δ vs no memory</h2><figure><img alt='Δ vs no memory with 95% CIs, one panel per table' "
                   f"src='data:image/png;base64,{data}'><figcaption>Points: paired Δ in accuracy points; bars: 95% "
                   f"CI; hollow points: {NOT_REACHED} (retrieval abstained on every problem).</figcaption></figure>")
    if board.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in board.notes) + "</ul>")
    out.append("<h2>Runs read</h2><div class=wide><table class=runs><tr>" + "".join(
        f"<th>{h}</th>" for h in ("run", "results file", "date", "target", "bank", "memory source", "backend",
                                  "protocol", "limit", "seed", "settings group")) + "</tr>")
    group_of = {id(r): name for name, runs in board.groups for r in runs}
    for r in sorted(board.runs, key=lambda r: r.date):
        when = datetime.fromtimestamp(r.date, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        out.append(f"<tr><td>{e(r.label)}</td><td>{e(r.results_file.name)}</td><td class=nowrap>{e(when)}</td>"
                   + "".join(f"<td>{e(str(x))}</td>" for x in (
                       r.target, r.bank, r.source, r.settings.get("backend", "?"), protocol(dict(r.settings)),
                       r.settings.get("limit", "?"), r.settings.get("seed", "?"), group_of.get(id(r), "") or "-"))
                   + "</tr>")
    out.append("</table></div></div></body></html>")
    return "\n".join(out) + "\n"


def plot_deltas(board: Leaderboard) -> bytes | None:
    """The delta plot as PNG bytes: Δ vs no memory with 95% CI error bars, one panel per table.
    The y axis is symmetric around 0 and spans at least ±10 points, so a panel whose deltas are all
    zero shows a flat line at 0 on a readable scale (not matplotlib's ±0.06 default). A cell where
    retrieval abstained on every problem is drawn hollow. None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(g, t) for g, t, _ in board.tables]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, (group, target) in zip(axes[:, 0], panels, strict=False):
        sources, columns, cells = _table_parts(board, group, target)
        memory = [s for s in sources if s != NO_MEMORY]
        width = 0.8 / max(1, len(memory))
        extent = 0.0
        for i, source in enumerate(memory):
            points = []
            for j, c in enumerate(columns):
                r = cells.get((source, c))
                if r is None or r.delta_vs_nomemory is None:
                    continue
                d = 100 * r.delta_vs_nomemory
                lo = 0.0 if r.delta_ci_low is None else d - 100 * r.delta_ci_low
                hi = 0.0 if r.delta_ci_high is None else 100 * r.delta_ci_high - d
                points.append((j - 0.4 + width * (i + 0.5), d, lo, hi, not_reached(r)))
                extent = max(extent, abs(d - lo), abs(d + hi))
            label, color = _source_label(source, columns, cells), f"C{i % 10}"
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[[p[2] for p in points], [p[3] for p in points]], fmt="none", ecolor=color, capsize=4)
            filled = [p for p in points if not p[4]]
            hollow = [p for p in points if p[4]]
            ax.plot([p[0] for p in filled], [p[1] for p in filled], "o", color=color, label=label if filled else None)
            ax.plot([p[0] for p in hollow], [p[1] for p in hollow], "o", mfc="white", color=color,
                    label=None if filled else label)
        limit = max(10.0, 1.15 * extent)
        ax.set_ylim(-limit, limit)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xticks(range(len(columns)), [TITLES[c] for c in columns])
        ax.set_xlim(-0.6, len(columns) - 0.4)
        ax.set_ylabel("Δ vs no memory (points, 95% CI)")
        ax.set_title(_heading(board, group, target, "hydra"))
        if memory:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no memory rows to compare", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_all(board: Leaderboard, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv", "html": out_dir / "leaderboard.html"}
    png = plot_deltas(board)
    if png is not None:
        paths["png"] = out_dir / "deltas.png"
        paths["png"].write_bytes(png)
    else:
        print("note: matplotlib is not installed; deltas.png was not written", file=sys.stderr)
    paths["md"].write_text(render_markdown(board, plot="deltas.png" if png else None), encoding="utf-8")
    write_csv(board, paths["csv"])
    paths["html"].write_text(render_html(board, png), encoding="utf-8")
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
