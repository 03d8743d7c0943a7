"""Leaderboard: golden fixture runs (tests/data/runs, see make_runs.py there), a fresh scripted run,
the mixed-settings warning, and every output format."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser import probe, screenshot
from conftest import data_dir

from memcollab_eval.leaderboard import NO_MEMORY, LeaderboardError, build_leaderboard, load_run
from memcollab_eval.leaderboard.render import (
    NOT_REACHED,
    group_warnings,
    main,
    plot_deltas,
    render_html,
    render_markdown,
    write_csv,
)
from memcollab_eval.leaderboard.stats import bootstrap_mean, flips, mcnemar_exact, paired_delta

RUNS = Path(__file__).resolve().parent / "data" / "runs"
HYDRA_RUNS = RUNS / "qwen25_coder_05b"
DEMO, NOFILTER = "demo", "demo [model_filter=false]"

# Hand-computed from the per-problem outcomes make_runs.py scripts (4 problems per benchmark):
# (source, benchmark) -> (accuracy, paired delta vs no memory)
GOLDEN = {
    (NO_MEMORY, "math500"): (0.50, None), (NO_MEMORY, "gsm8k"): (0.50, None),
    (NO_MEMORY, "mbpp"): (0.25, None), (NO_MEMORY, "humaneval"): (0.25, None),
    (NO_MEMORY, "average"): (0.375, None),
    (DEMO, "math500"): (0.75, 0.25), (DEMO, "gsm8k"): (0.75, 0.25),
    (DEMO, "mbpp"): (0.75, 0.50), (DEMO, "humaneval"): (0.0, -0.25),
    (DEMO, "average"): (0.5625, 0.1875),
    (NOFILTER, "math500"): (0.25, -0.25), (NOFILTER, "gsm8k"): (0.50, 0.0),
    (NOFILTER, "mbpp"): (0.50, 0.25), (NOFILTER, "humaneval"): (0.50, 0.25),
    (NOFILTER, "average"): (0.4375, 0.0625),
}


@pytest.fixture(scope="module")
def golden():
    return build_leaderboard([HYDRA_RUNS], iters=500, seed=0)


def cells(board) -> dict:
    return {(r.source, r.benchmark): r for r in board.rows}


def test_golden_accuracies_and_paired_deltas(golden):
    got = cells(golden)
    assert set(got) == set(GOLDEN)
    for key, (acc, delta) in GOLDEN.items():
        row = got[key]
        assert row.accuracy == pytest.approx(acc), key
        assert row.target == "qwen25_coder_05b" and row.target_origin == "hydra"
        if delta is None:
            assert row.delta_vs_nomemory is None and row.abstain_rate is None
        else:
            assert row.delta_vs_nomemory == pytest.approx(delta), key
            assert row.n_paired == (16 if key[1] == "average" else 4)
            assert row.delta_ci_low <= row.delta_vs_nomemory <= row.delta_ci_high
        assert row.ci_low <= row.accuracy <= row.ci_high
        assert row.n == (16 if key[1] == "average" else 4)
    # degenerate outcomes give degenerate intervals
    assert (got[(DEMO, "humaneval")].ci_low, got[(DEMO, "humaneval")].ci_high) == (0.0, 0.0)
    assert (got[(NOFILTER, "gsm8k")].delta_ci_low, got[(NOFILTER, "gsm8k")].delta_ci_high) == (0.0, 0.0)


def test_golden_abstention_and_prompt_length(golden):
    got = cells(golden)
    assert [got[(DEMO, b)].abstain_rate for b in ("math500", "gsm8k", "mbpp", "humaneval", "average")] == \
        pytest.approx([0.25, 0.0, 0.25, 0.0, 0.125])
    (samples,) = [p for p in (HYDRA_RUNS / "demo").rglob("samples_gsm8k_memcollab_*.jsonl")
                  if "model_filter: true" in (p.parent.parent / ".hydra" / "config.yaml").read_text()]
    memories = [json.loads(line)["doc"]["memcollab_memory"] for line in samples.read_text().splitlines()]
    row = got[(DEMO, "gsm8k")]
    assert row.tokens_estimated and row.added_prompt_tokens_est == pytest.approx(sum(map(len, memories)) / 4 / 4)
    assert row.turns in (None, 1.0)  # "-" in fixtures made before memcollab_turns was logged
    assert got[(NO_MEMORY, "gsm8k")].added_prompt_tokens_est is None


def test_repeated_no_memory_runs_use_the_latest_and_say_so(golden):
    latest = max(golden.runs, key=lambda r: r.date)
    assert cells(golden)[(NO_MEMORY, "gsm8k")].runs == latest.label
    assert any("run more than once" in n and "none/" in n for n in golden.notes)
    assert not group_warnings(golden) and len(golden.groups) == 1


def test_lm_eval_cli_run_without_hydra_config():
    board = build_leaderboard([RUNS / "lm_eval_cli"], iters=200)
    got = cells(board)
    assert set(got) == {(NO_MEMORY, "gsm8k"), (NO_MEMORY, "average"), ("bank unknown", "gsm8k"),
                        ("bank unknown", "average")}
    row = got[("bank unknown", "gsm8k")]
    assert (row.target, row.target_origin) == ("scripted-double", "model_args")
    assert row.accuracy == 0.5 and row.delta_vs_nomemory == 0.25 and got[(NO_MEMORY, "gsm8k")].accuracy == 0.25
    md = render_markdown(board)
    assert "NOT recorded by lm-eval" in md and "## scripted-double · backend memcollab_scripted ‡" in md


def test_fixture_set_with_different_seeds_warns_and_splits():
    board = build_leaderboard([RUNS], iters=100)
    warnings = group_warnings(board)
    assert len(board.groups) == 2 and len(warnings) == 1
    assert "differ in seed" in warnings[0] and "1234 vs 0" in warnings[0]
    md = render_markdown(board)
    assert md.index("WARNING") < md.index("## qwen25_coder_05b · backend memcollab_scripted (settings group A)") \
        < md.index("## scripted-double")


def test_runs_with_different_limit_and_max_gen_toks_are_not_combined(tmp_path):
    none_run = next((HYDRA_RUNS / "none").iterdir())
    demo_run = min((HYDRA_RUNS / "demo").iterdir())
    shutil.copytree(none_run, tmp_path / "a")
    shutil.copytree(demo_run, tmp_path / "b")
    (results,) = (tmp_path / "b").rglob("results_*.json")
    data = json.loads(results.read_text())
    data["config"]["limit"] = 5
    data["configs"]["gsm8k_nomemory"]["generation_kwargs"]["max_gen_toks"] = 256
    results.write_text(json.dumps(data))
    board = build_leaderboard([tmp_path], iters=100)
    (warning,) = group_warnings(board)
    assert "differ in limit, max_gen_toks[gsm8k]" in warning and "/a" in warning and "/b" in warning
    assert {g for g, _, _ in board.tables} == {"A", "B"}
    html = render_html(board)
    assert html.index("class=warn") < html.index("<h2>")


def test_runs_started_at_different_project_commits_are_combined_with_a_note(tmp_path):
    """lm-eval's git_hash is the working directory's commit: a long comparison spans commits."""
    none_run = next((HYDRA_RUNS / "none").iterdir())
    demo_run = min((HYDRA_RUNS / "demo").iterdir())
    for name, run, commit in (("a", none_run, "1111111"), ("b", demo_run, "2222222")):
        shutil.copytree(run, tmp_path / name)
        (results,) = (tmp_path / name).rglob("results_*.json")
        data = json.loads(results.read_text())
        data["git_hash"] = commit
        results.write_text(json.dumps(data))
    board = build_leaderboard([tmp_path], iters=100)
    assert not group_warnings(board) and len(board.groups) == 1
    assert any("2 commits of the working directory (1111111, 2222222)" in n for n in board.notes)


def test_missing_samples_real_token_counts_and_turns(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), run)
    for path in run.rglob("samples_*_memcollab_*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for s in lines:
            s["doc"]["memcollab_memory_tokens"], s["doc"]["memcollab_turns"] = 10, 2
        path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    for path in run.rglob("samples_humaneval_*.jsonl"):
        path.unlink()
    got = cells(build_leaderboard([run], iters=100))
    assert got[(DEMO, "gsm8k")].added_prompt_tokens_est == 10 and not got[(DEMO, "gsm8k")].tokens_estimated
    assert got[(DEMO, "gsm8k")].turns == 2
    he = got[(DEMO, "humaneval")]  # aggregate from the results file only: no CI, no pairing
    assert he.accuracy == 0.0 and he.n == 4 and he.ci_low is None and he.delta_vs_nomemory is None
    assert he.abstain_rate == 0.0


def test_sample_without_a_score_is_an_error_naming_file_and_line(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), run)
    path = next(run.rglob("samples_gsm8k_memcollab_*.jsonl"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    del lines[1]["acc"]
    path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    with pytest.raises(LeaderboardError, match=rf"{path.name} line 2: field acc is missing"):
        build_leaderboard([run], iters=10)


def test_cli_writes_md_csv_html_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert main([str(HYDRA_RUNS), "--out", str(out), "--bootstrap", "200", "--seed", "3"]) == 0
    stdout = capsys.readouterr().out
    assert "| memory source | MATH500 | GSM8K | MBPP | HumanEval | average |" in stdout
    assert "ESTIMATE (memory characters / 4" in stdout
    assert stdout == (out / "leaderboard.md").read_text() + "\n"
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 15 and {r["source"] for r in rows} == {NO_MEMORY, DEMO, NOFILTER}
    demo_mbpp = next(r for r in rows if (r["source"], r["benchmark"]) == (DEMO, "mbpp"))
    assert float(demo_mbpp["delta_vs_nomemory"]) == pytest.approx(0.5)
    # the settings a script needs to tell tables apart, on every line
    assert {(r["protocol"], r["backend"], r["limit"], r["seed"]) for r in rows} == {
        ("single_turn", "memcollab_scripted", "4", "1234")}
    html = (out / "leaderboard.html").read_text()
    png = (out / "deltas.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # self-contained: the plot is embedded, the runs it read are listed, nothing is fetched or run
    assert f"src='data:image/png;base64,{base64.b64encode(png).decode()}'" in html
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "<style>" in text and "http" not in text and "<script" not in text and "Δ +50.0" in text
    assert "<h2>Runs read</h2>" in text and all(r.label in text for r in build_leaderboard([HYDRA_RUNS]).runs)
    assert "![Δ vs no memory" in stdout and "(deltas.png)" in stdout


def test_cli_errors_without_runs(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no lm-eval results with memcollab tasks" in capsys.readouterr().err


def test_fresh_multirun_of_the_scripted_double(tmp_path):
    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    proc = subprocess.run(
        [sys.executable, "-m", "memcollab_eval", "-m", "+target=scripted", "+bank=demo,none",
         "target.identity=qwen25_coder_05b", f"data_dir={data_dir()}", "limit=2", "benchmarks=[gsm8k]",
         f"output_dir={tmp_path}", r"target.model_args.default='The answer is \boxed{18}.'"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = build_leaderboard([tmp_path], iters=100)
    assert all("multirun" in str(r.path) for r in board.runs) and len(board.runs) == 2
    got = cells(board)
    assert set(got) == {(NO_MEMORY, "gsm8k"), (NO_MEMORY, "average"), (DEMO, "gsm8k"), (DEMO, "average")}
    assert got[(NO_MEMORY, "gsm8k")].accuracy == 0.5  # problem 0 of GSM8K has the answer 18
    assert got[(DEMO, "gsm8k")].delta_vs_nomemory == 0.0 and got[(DEMO, "gsm8k")].n_paired == 2
    run = load_run(next(tmp_path.rglob("results_*.json")))
    assert run is not None and run.target_origin == "hydra"


def test_statistics():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64) and mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)
    f = flips({"a": 1, "b": 0, "c": 1}, {"a": 0, "b": 1, "c": 1, "d": 1})
    assert (f.fixed, f.broken, f.n) == (("b",), ("a",), 3)
    est = bootstrap_mean([1, 1, 1, 1], iters=100, seed=0, key="k")
    assert (est.value, est.low, est.high, est.n) == (1.0, 1.0, 1.0, 4)
    values = [1, 0] * 50
    a, b = (bootstrap_mean(values, iters=300, seed=0, key="x") for _ in range(2))
    assert a == b and 0.35 < a.low < 0.5 < a.high < 0.65  # seeded, and about +-10 points at n=100
    d = paired_delta([({"p": 1, "q": 1}, {"p": 0, "q": 1, "r": 0})], iters=100, seed=0, key="d")
    assert (d.value, d.n) == (0.5, 2)
    assert paired_delta([({"p": 1}, {"q": 1})], iters=10, seed=0, key="e") is None
    assert bootstrap_mean([0, 1], iters=0, seed=0, key="z").low is None


def test_agent_runs_are_not_combined_with_single_turn_runs(tmp_path):
    shutil.copytree(next((HYDRA_RUNS / "none").iterdir()), tmp_path / "single")
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), tmp_path / "agent")
    for path in (tmp_path / "agent").rglob("samples_*.jsonl"):  # as the agent protocol logs its episodes
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for s in lines:
            s["doc"]["memcollab_episode"], s["doc"]["memcollab_turns"] = {"turns": 3, "stopped": "final"}, 3
        path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    board = build_leaderboard([tmp_path], iters=50)
    (warning,) = group_warnings(board)
    assert "differ in mode -- mode: single-turn vs agent" in warning
    assert cells(board)[(DEMO, "gsm8k")].turns == 3


def test_agent_runs_of_different_protocol_versions_are_not_combined(tmp_path):
    """Versions score episodes by different rules (v4 reads a final block without its opening fence);
    runs from before v4 carry the version only in the transcript of their response."""
    for name, version, in_doc in (("old", 3, False), ("new", 4, True)):
        shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), tmp_path / name)
        for path in (tmp_path / name).rglob("samples_*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            for s in lines:
                s["doc"]["memcollab_episode"] = {"turns": 2, "stopped": "final",
                                                 **({"protocol_version": version} if in_doc else {})}
                s["filtered_resps"] = ['<memcollab_episode>' + json.dumps(
                    {"format": "memcollab_episode/1", "protocol_version": version, "turns": 2, "stopped": "final",
                     "final_text": "x"}) + '</memcollab_episode>']
            path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    (warning,) = group_warnings(build_leaderboard([tmp_path], iters=50))
    assert "agent_protocol: v3 vs v4" in warning or "agent_protocol: v4 vs v3" in warning


def test_intervals_do_not_move_when_runs_of_another_setting_are_added(tmp_path):
    """The settings group's letter depends on which runs were read; the bootstrap seed must not."""
    alone = {(r.source, r.benchmark): (r.ci_low, r.ci_high, r.delta_ci_low, r.delta_ci_high)
             for r in build_leaderboard([HYDRA_RUNS], iters=200, seed=0).rows}
    earlier = tmp_path / "agent"  # an agent run dated before the others takes letter A
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), earlier)
    for path in earlier.rglob("*.json*"):
        if path.name.startswith("samples_"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            for s in lines:
                s["doc"]["memcollab_episode"], s["doc"]["memcollab_turns"] = {"turns": 2, "stopped": "final"}, 2
            path.write_text("".join(json.dumps(s) + "\n" for s in lines))
        elif path.name.startswith("results_"):
            data = json.loads(path.read_text())
            data["date"] = 1.0
            path.write_text(json.dumps(data))
    board = build_leaderboard([HYDRA_RUNS, earlier], iters=200, seed=0)
    assert {r.group for r in board.rows} == {"A", "B"}
    agent_group = next(r.group for r in board.rows if r.turns == 2)
    assert agent_group == "A"
    mixed = {(r.source, r.benchmark): (r.ci_low, r.ci_high, r.delta_ci_low, r.delta_ci_high)
             for r in board.rows if r.group != agent_group}
    assert mixed == alone


def abstain_everywhere(run: Path) -> None:
    """Make a copied run's memory variant one where retrieval abstained on every problem (as the
    default run's small bank does on most): no memory in any prompt, the no-memory twin's outcomes."""
    (results,) = run.rglob("results_*.json")
    data = json.loads(results.read_text())
    for path in run.rglob("samples_*_memcollab_*.jsonl"):
        twin = Path(str(path).replace("_memcollab_", "_nomemory_"))
        plain = {json.loads(line)["doc"]["memcollab_id"]: json.loads(line)["acc"]
                 for line in twin.read_text().splitlines()}
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for s in lines:
            s["doc"].update(memcollab_memory="", memcollab_retrieved=[], memcollab_abstained=True)
            s["acc"], s["memory_injected"] = plain[s["doc"]["memcollab_id"]], 0.0
        path.write_text("".join(json.dumps(s) + "\n" for s in lines))
        task = path.name[len("samples_"):].split("_2026")[0]
        data["results"][task].update({"memory_injected,none": 0.0, "acc,none": sum(s["acc"] for s in lines) / 4})
    results.write_text(json.dumps(data))


def test_a_row_whose_retrieval_abstained_everywhere_says_so(tmp_path):
    """Not "Δ +0.0 [+0.0, +0.0]", which reads as "memory does nothing": memory was never tried."""
    run = tmp_path / "abstained"
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), run)
    abstain_everywhere(run)
    shutil.copytree(max((HYDRA_RUNS / "demo").iterdir()), tmp_path / "nofilter")  # memory reached these
    board = build_leaderboard([tmp_path], iters=100)
    got = cells(board)
    assert all(got[(DEMO, b)].abstain_rate == 1.0 and got[(DEMO, b)].delta_vs_nomemory == 0.0
               for b in ("math500", "gsm8k", "mbpp", "humaneval", "average"))
    md = render_markdown(board)
    demo_row = next(line for line in md.splitlines() if line.startswith(f"| {DEMO} "))  # the main table's
    assert demo_row.startswith(f"| {DEMO} ({NOT_REACHED}) |") and "Δ +0.0" not in demo_row
    assert demo_row.count("Δ - (no memory reached: retrieval abstained on all 4)") == 4
    other = next(line for line in md.splitlines() if line.startswith(f"| {NOFILTER} |"))
    assert "Δ -25.0" in other and NOT_REACHED not in other
    html = render_html(board)
    assert html.count(NOT_REACHED) == 6  # the row's name and its five cells
    assert plot_deltas(board)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_of_all_zero_deltas_has_a_readable_axis(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    run = tmp_path / "abstained"
    shutil.copytree(min((HYDRA_RUNS / "demo").iterdir()), run)
    abstain_everywhere(run)
    limits = []
    original = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):  # the axes as saved
        limits.extend(ax.get_ylim() for ax in fig.axes)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    plot_deltas(build_leaderboard([run], iters=100))
    assert limits == [(-10.0, 10.0)]  # matplotlib alone would span +-0.06 points
    limits.clear()
    plot_deltas(build_leaderboard([HYDRA_RUNS], iters=100))
    assert len(limits) == 1 and limits[0][0] == -limits[0][1] and limits[0][1] > 75  # every CI in view


def _as_llama_cpp_run(src: Path, dest: Path, n_parallel: int | None) -> None:
    """A copy of a fixture run as if llama_cpp had decoded it (``n_parallel`` None: a run from before
    batched decoding, whose summary names none)."""
    shutil.copytree(src, dest)
    cfg = dest / ".hydra" / "config.yaml"
    conf = yaml.safe_load(cfg.read_text())
    conf["target"]["model"] = "llama_cpp"
    cfg.write_text(yaml.safe_dump(conf))
    summary = json.loads((dest / "summary.json").read_text())
    info = {"n_ctx": 4096} if n_parallel is None else {"n_ctx": 4096, "n_parallel": n_parallel}
    summary["model"] = {"name": "qwen25_coder_05b", "backend_info": info}
    (dest / "summary.json").write_text(json.dumps(summary))


def test_batched_and_sequential_llama_cpp_runs_are_not_combined(tmp_path):
    """Batched greedy output depends on the batch: a row decoded 8 at a time is not paired with a
    no-memory row decoded alone, and the CSV says how each table was decoded."""
    none_run = next((HYDRA_RUNS / "none").iterdir())
    demo_run = min((HYDRA_RUNS / "demo").iterdir())
    _as_llama_cpp_run(none_run, tmp_path / "mixed" / "a", None)
    _as_llama_cpp_run(demo_run, tmp_path / "mixed" / "b", 8)
    board = build_leaderboard([tmp_path / "mixed"], iters=50)
    (warning,) = group_warnings(board)
    assert "differ in decoding" in warning and "n_parallel=1 vs n_parallel=8" in warning

    _as_llama_cpp_run(none_run, tmp_path / "same" / "a", 8)
    _as_llama_cpp_run(demo_run, tmp_path / "same" / "b", 8)
    board = build_leaderboard([tmp_path / "same"], iters=50)
    assert not group_warnings(board) and len(board.groups) == 1
    write_csv(board, tmp_path / "b.csv")
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert {(r["backend"], r["decoding"]) for r in rows} == {("llama_cpp", "n_parallel=8")}
    assert "decoding n_parallel=8" in render_markdown(board)


def test_csv_settings_columns_per_settings_group(tmp_path):
    board = build_leaderboard([RUNS], iters=50)
    write_csv(board, tmp_path / "b.csv")
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert {(r["group"], r["target"], r["protocol"], r["backend"], r["seed"]) for r in rows} == {
        ("A", "qwen25_coder_05b", "single_turn", "memcollab_scripted", "1234"),
        ("B", "scripted-double", "single_turn", "memcollab_scripted", "0")}


def test_leaderboard_in_headless_chromium(tmp_path):
    """Readable in a browser: the settings warning is the first thing on the page, boxed in red,
    the plot is embedded and loads, and nothing scrolls sideways."""
    out = tmp_path / "out"
    assert main([str(RUNS), "--out", str(out), "--bootstrap", "100"]) == 0
    page = out / "leaderboard.html"
    seen = probe(page)
    (warn,) = seen["warn"]
    assert "NOT combined" in warn["text"] and "seed" in warn["text"] and warn["border"] == "3px"
    assert warn["top"] < 150 and warn["background"] == "rgb(255, 240, 240)"
    assert seen["images"] and all(i["w"] > 500 and i["shown"] for i in seen["images"])
    assert not seen["overflow"] and not probe(page, width=800)["overflow"]
    shots = Path(__file__).resolve().parent.parent / "outputs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    screenshot(page, shots / "leaderboard.png", height=2600)


def as_list_form(run: Path) -> None:
    """Rewrite a copied run's retrieved entries in the list form runs log now (text and sources beside
    id and score), as from the demo_handmade bank."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.sample_fields import RetrievedRef, retrieved_refs

    bank = {e.id: e for e in load_bank(Path(__file__).resolve().parent.parent / "memcollab_eval" / "banks"
                                       / "demo_handmade").entries}
    for path in run.rglob("samples_*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for s in lines:
            refs = retrieved_refs(s["doc"].get("memcollab_retrieved"))
            s["doc"]["memcollab_retrieved"] = [RetrievedRef(
                r.id, r.score, bank[r.id].render(), bank[r.id].preferred_model, bank[r.id].unpreferred_model,
                bank[r.id].source_benchmark, bank[r.id].source_problem_id).to_doc() for r in refs]
        path.write_text("".join(json.dumps(s) + "\n" for s in lines))


def test_leaderboard_and_attribution_read_the_list_form_as_the_string_form(tmp_path):
    from memcollab_eval.leaderboard.attribution import attribute

    old = min((HYDRA_RUNS / "demo").iterdir())
    new = tmp_path / "run"
    shutil.copytree(old, new)
    as_list_form(new)
    assert any(isinstance(json.loads(line)["doc"]["memcollab_retrieved"], list) and json.loads(line)["doc"][
        "memcollab_retrieved"] for p in new.rglob("samples_*_memcollab_*.jsonl") for line in p.read_text().splitlines())
    strip = {"runs"}
    rows = [{k: v for k, v in r.__dict__.items() if k not in strip} for r in build_leaderboard([new], iters=100).rows]
    assert rows == [{k: v for k, v in r.__dict__.items() if k not in strip}
                    for r in build_leaderboard([old], iters=100).rows]
    a, b = attribute(old), attribute(new)
    assert [(e.entry_id, e.retrieved, e.fixed, e.broken) for e in a.effects] == \
        [(e.entry_id, e.retrieved, e.fixed, e.broken) for e in b.effects]
    for cfg in new.rglob(".hydra"):  # without the bank, the texts come from the samples
        shutil.rmtree(cfg)
    alone = attribute(new)
    assert alone.bank_dir is None and alone.texts and all(t.startswith("enforce ") for t in alone.texts.values())


def test_row_names_leave_out_retrieval_settings_at_their_defaults():
    """min_score null is the ranker's own threshold (0.05 for tfidf): neither it nor an explicit 0.05
    (runs before null existed) is a setting that names a row; a changed value is."""
    from memcollab_eval.leaderboard.runs import _source

    assert _source("demo", {"retrieval": {"min_score": None, "top_k": 3, "ranker": "tfidf"}}) == "demo"
    assert _source("demo", {"retrieval": {"min_score": 0.05, "model_filter": True}}) == "demo"
    assert _source("demo", {"retrieval": {"min_score": 0.2, "model_filter": False}}) == \
        "demo [min_score=0.2, model_filter=false]"
    assert _source("demo", {"retrieval": {"ranker": "bm25", "min_score": None}}) == "demo [ranker=bm25]"
