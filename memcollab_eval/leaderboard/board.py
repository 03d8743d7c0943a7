"""Build the leaderboard: read every run under the given paths, group compatible runs, and
compute each table's rows (``python -m memcollab_eval.leaderboard PATH... [--out DIR]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from memcollab_eval.leaderboard.records import Leaderboard, LeaderboardError, LeaderboardRow
from memcollab_eval.leaderboard.runs import find_results, load_run
from memcollab_eval.leaderboard.stats import group_runs, table_rows


def build_leaderboard(paths: Sequence[str | Path], *, iters: int = 1000, seed: int = 0) -> Leaderboard:
    runs, notes, foreign = [], [], 0
    for results_file in find_results(paths):
        try:
            run = load_run(results_file)
        except LeaderboardError as exc:  # one broken file must not hide every other run
            notes.append(f"SKIPPED {exc}")
            continue
        foreign += run is None
        runs += [run] if run is not None else []
    if foreign:
        notes.append(f"{foreign} lm-eval results file(s) without memcollab tasks were ignored")
    if not runs:
        raise LeaderboardError(f"no lm-eval results with memcollab tasks found under {', '.join(map(str, paths))}"
                               + "".join(f"; {n}" for n in notes))
    commits = sorted({r.commit for r in runs if r.commit})
    if len(commits) > 1:
        notes.append(f"runs were started at {len(commits)} commits of the working directory ({', '.join(commits)}): "
                     "prompt, generation and dataset differences split tables; other code changes do not")
    root = Path(os.path.commonpath([r.path for r in runs])).parent
    runs = [replace(r, label=os.path.relpath(r.path, root)) for r in runs]
    twice = {r.label for r in runs if sum(o.label == r.label for o in runs) > 1}  # two results files in one folder
    runs = [replace(r, label=f"{r.label} ({r.results_file.name})") if r.label in twice else r for r in runs]
    groups = group_runs(runs)
    names = [chr(ord("A") + i) if len(groups) > 1 else "" for i in range(len(groups))]
    rows: list[LeaderboardRow] = []
    tables = []
    for name, group in zip(names, groups, strict=False):
        for target in sorted({r.target for r in group}):
            members = [r for r in group if r.target == target]
            tables.append((name, target, members[-1].target_origin))
            rows += table_rows(name, target, members, iters, seed, notes)
    settings = {name: {k: "/".join(sorted({r.settings[k] for r in g if k in r.settings}))
                       for k in sorted({k for r in g for k in r.settings})} for name, g in zip(names, groups, strict=False)}
    return Leaderboard(tuple(rows), tuple(tables), tuple((n, tuple(g)) for n, g in zip(names, groups, strict=False)), settings,
                       tuple(notes), tuple(runs), iters, seed)
