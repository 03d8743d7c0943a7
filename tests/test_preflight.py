"""Every bad input fails before any model loads: one line naming the key or the file (file, line
and field for a bank), exit code 2, no traceback, no run folder left behind. Each case is one a
user tried (issue 16). The command runs in this process (``evaluation.cli.main``) with the model
builder replaced by one that fails the test, so "before any model loads" is checked, not assumed;
one case runs ``python -m memcollab_eval`` for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_config import compose_eval

from memcollab_eval.bank.store import save_bank
from memcollab_eval.config import max_sandbox_workers
from memcollab_eval.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "memcollab_eval" / "banks" / "demo_cpu"


@pytest.fixture
def no_model(monkeypatch):
    """Building a model (or running the job past preflight) fails the test."""
    from memcollab_eval.evaluation import cli, job

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was built: the bad input was not caught by preflight")

    monkeypatch.setattr(job, "build_model", refuse)
    monkeypatch.setattr(cli, "evaluate", refuse)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``python -m memcollab_eval ARGV`` in this process: (exit code, stderr)."""
    from memcollab_eval.evaluation.cli import main

    saved = sys.argv
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    finally:
        sys.argv = saved
    return code, capsys.readouterr().err


def assert_usage_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one line of output and it is the error, naming every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def copy_bank(tmp_path: Path, name: str) -> Path:
    bank = tmp_path / name
    shutil.copytree(DEMO, bank)
    return bank


BASE = ["+target=scripted", "benchmarks=[gsm8k]", "limit=1"]


def bad_run(tmp_path: Path, capsys, *overrides: str) -> tuple[int, str]:
    out = tmp_path / "out"
    code, err = run_cli([*BASE, f"output_dir={out}", *overrides], capsys)
    assert not out.exists() or not any(out.rglob(".hydra")), f"a run folder was left: {list(out.rglob('*'))}"
    return code, err


# ---- the bank ------------------------------------------------------------------------------

def test_truncated_bank_names_file_and_line(tmp_path, capsys, no_model):
    bank = copy_bank(tmp_path, "truncated")
    data = (bank / "entries.jsonl").read_bytes()
    (bank / "entries.jsonl").write_bytes(data[:-40])
    line = assert_usage_error(*bad_run(tmp_path, capsys, f"bank.path={bank}"),
                              f"{bank / 'entries.jsonl'} line 2", "invalid JSON", "truncated")
    assert "bank 'demo'" in line


def test_sha256_mismatch_names_both_files(tmp_path, capsys, no_model):
    bank = copy_bank(tmp_path, "edited")
    data = (bank / "entries.jsonl").read_bytes()
    (bank / "entries.jsonl").write_bytes(data.replace(b"correct order", b"right order", 1))
    assert_usage_error(*bad_run(tmp_path, capsys, f"bank.path={bank}"),
                       "sha256 mismatch", str(bank / "entries.jsonl"), str(bank / "manifest.json"))


def test_bad_field_names_file_line_and_field(tmp_path, capsys, no_model):
    bank = copy_bank(tmp_path, "bad_field")
    lines = (bank / "entries.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "category": 7})
    (bank / "entries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_usage_error(*bad_run(tmp_path, capsys, f"bank.path={bank}"),
                       "entries.jsonl line 2: field 'category' must be a string, got int")


def test_non_utf8_byte_is_reported_by_line(tmp_path, capsys, no_model):
    bank = copy_bank(tmp_path, "latin1")
    data = (bank / "entries.jsonl").read_bytes()
    at = data.index(b"comparing")
    (bank / "entries.jsonl").write_bytes(data[:at] + b"\xff" + data[at + 1:])
    line = assert_usage_error(*bad_run(tmp_path, capsys, f"bank.path={bank}"),
                              "entries.jsonl line 2: not valid UTF-8 (byte 0xff at column")
    assert "position" not in line


def test_missing_bank_says_how_to_build_it(tmp_path, capsys, no_model):
    assert_usage_error(*bad_run(tmp_path, capsys, f"bank.path={tmp_path / 'nowhere'}"),
                       "memory bank not found", "build it with: python -m memcollab_eval.build")


# ---- data, output, value ranges ------------------------------------------------------------

def test_missing_data_dir(tmp_path, capsys, no_model):
    assert_usage_error(*bad_run(tmp_path, capsys, f"data_dir={tmp_path / 'no_data'}"),
                       f"data_dir={str(tmp_path / 'no_data')!r} is not a directory", "gsm8k/test.jsonl")


def test_data_dir_without_the_benchmark_file_names_the_file(tmp_path, capsys, no_model):
    (tmp_path / "data").mkdir()
    assert_usage_error(*bad_run(tmp_path, capsys, f"data_dir={tmp_path / 'data'}"),
                       str(tmp_path / "data" / "gsm8k" / "test.jsonl"))


def test_negative_top_k(tmp_path, capsys, no_model):
    assert_usage_error(*bad_run(tmp_path, capsys, "retrieval.top_k=-1"), "retrieval.top_k must be an integer >= 0")


def test_output_dir_that_cannot_be_created(tmp_path, capsys, no_model):
    (tmp_path / "a_file").write_text("not a folder")
    code, err = run_cli([*BASE, f"output_dir={tmp_path / 'a_file' / 'out'}"], capsys)
    assert_usage_error(code, err, "output_dir=", f"{tmp_path / 'a_file'} is a file, not a directory")


def test_run_dir_outside_output_dir_that_cannot_be_created(tmp_path, capsys, no_model):
    (tmp_path / "a_file").write_text("not a folder")
    code, err = run_cli([*BASE, f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"],
                        capsys)
    assert_usage_error(code, err, "the run folder", "is a file, not a directory")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("override", "key"), [
    ("sandbox.timeout=0", "sandbox.timeout must be a finite number of seconds >= 0.5"),
    ("sandbox.timeout=nan", "sandbox.timeout must be"),
    ("sandbox.timeout=inf", "sandbox.timeout must be"),
    ("sandbox.memory_mb=8", "sandbox.memory_mb must be >= 64"),
    ("sandbox.workers=0", "sandbox.workers must be between 1 and"),
    (f"sandbox.workers={max_sandbox_workers() + 1}", "sandbox.workers must be between 1 and"),
    ("agent.block_timeout=nan", "agent.block_timeout must be a finite number"),
    ("retrieval.min_score=nan", "retrieval.min_score must be a finite number"),
    ("retrieval.min_score=inf", "retrieval.min_score must be a finite number"),
    ("retrieval.min_score=5", "above the highest possible score"),
    ("max_gen_toks=0", "max_gen_toks must be >= 1"),
])
def test_value_ranges(tmp_path, capsys, no_model, override, key):
    assert_usage_error(*bad_run(tmp_path, capsys, override), key)


def test_unquoted_non_ascii_value_gets_the_quoting_hint(tmp_path, capsys, no_model):
    line = assert_usage_error(*bad_run(tmp_path, capsys, "bank.name=bänk"), "bank.name=bänk", "quotes")
    assert "\"bank.name='bänk'\"" in line
    code, err = bad_run(tmp_path, capsys, "bank.name='bänk'", "retrieval.top_k=-1")  # quoted: parses
    assert_usage_error(code, err, "retrieval.top_k")


def test_other_grammar_errors_are_one_line(tmp_path, capsys, no_model):
    assert_usage_error(*bad_run(tmp_path, capsys, "benchmarks=[gsm8k,"), "override benchmarks=[gsm8k,", "hydra.cc")


def test_every_problem_is_named_each_on_its_line(tmp_path, capsys, no_model):
    code, err = bad_run(tmp_path, capsys, "retrieval.top_k=-1", "sandbox.timeout=0")
    assert code == 2 and "Traceback" not in err
    assert "cannot run (2 problems)" in err and "retrieval.top_k" in err and "sandbox.timeout" in err


def test_a_good_config_passes_preflight(tmp_path):
    from memcollab_eval.evaluation.job import preflight

    cfg = compose_eval([*BASE, f"output_dir={tmp_path / 'new' / 'deeper'}", "target.identity=qwen25_coder_05b"])
    assert preflight(cfg) == []
    assert not (tmp_path / "new").exists()  # the check creates nothing


def test_the_real_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval", *BASE, f"output_dir={tmp_path / 'out'}",
                           "retrieval.min_score=nan"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert_usage_error(proc.returncode, proc.stderr, "retrieval.min_score must be a finite number")
    assert not (tmp_path / "out").exists()


# ---- warnings: runs that would silently retrieve nothing -----------------------------------

def test_identity_in_no_entry_warns(tmp_path, capsys):
    from memcollab_eval.evaluation.job import preflight

    cfg = compose_eval([*BASE, f"output_dir={tmp_path}", "target.identity=my_model"])
    (warning,) = preflight(cfg)
    assert "target.identity='my_model' is in no entry of bank 'demo'" in warning
    assert "qwen25_coder_05b" in warning and "retrieval.model_filter=false" in warning
    assert preflight(compose_eval([*BASE, f"output_dir={tmp_path}", "target.identity=my_model",
                                   "retrieval.model_filter=false"])) == []
    assert preflight(compose_eval([*BASE, f"output_dir={tmp_path}", "+bank=none"])) == []


def test_empty_bank_warns(tmp_path):
    from memcollab_eval.evaluation.job import preflight

    save_bank(tmp_path / "empty", [], name="empty")
    (warning,) = preflight(compose_eval([*BASE, f"output_dir={tmp_path}", f"bank.path={tmp_path / 'empty'}"]))
    assert "has no entries" in warning


def test_the_warning_is_shown_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from memcollab_eval.evaluation import cli

    def stop(*_args, **_kwargs):
        raise UsageError("stopped after preflight")

    monkeypatch.setattr(cli, "evaluate", stop)
    code, err = run_cli([*BASE, f"output_dir={tmp_path / 'out'}", "target.identity=my_model"], capsys)
    assert code == 2 and err.index("warning: target.identity='my_model'") < err.index("error: stopped")


# ---- failed runs leave no empty run folders -----------------------------------------------

def test_a_job_that_fails_removes_its_run_folder(tmp_path, capsys, monkeypatch):
    from memcollab_eval.evaluation import cli

    def crash(*_args, **_kwargs):
        raise RuntimeError("the backend died")

    monkeypatch.setattr(cli, "evaluate", crash)
    out = tmp_path / "out"
    code, err = run_cli([*BASE, f"output_dir={out}"], capsys)
    assert code == 1 and "the backend died" in err  # a failure of the job itself: exit 1, its traceback
    assert "removed the run folder" in err and not out.exists()  # the run created out/: all of it goes


def test_a_job_that_wrote_something_keeps_its_folder(tmp_path, capsys, monkeypatch):
    from memcollab_eval.evaluation import cli

    def half(cfg, run_dir):
        (run_dir / "partial.json").write_text("{}")
        raise RuntimeError("died after writing")

    monkeypatch.setattr(cli, "evaluate", half)
    out = tmp_path / "out"
    out.mkdir()
    code, _ = run_cli([*BASE, f"output_dir={out}"], capsys)
    assert code == 1 and len(list(out.rglob("partial.json"))) == 1


def test_multirun_checks_every_job_before_the_first_starts(tmp_path, capsys, no_model):
    out = tmp_path / "out"
    code, err = run_cli(["-m", *BASE, f"output_dir={out}", "retrieval.top_k=3,-1"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert "job #1 (" in lines[0] and "retrieval.top_k=-1" in lines[0] and "retrieval.top_k must be" in lines[0]
    assert not out.exists()
    code, err = run_cli(["-m", *BASE, f"output_dir={out}", "sandbox.timeout=0", "+bank=demo,none"], capsys)
    assert code == 2 and "error: every job: cannot run: sandbox.timeout" in err and not out.exists()


def test_multirun_whose_jobs_all_fail_leaves_no_sweep_folder(tmp_path, capsys, monkeypatch):
    from memcollab_eval.evaluation import cli

    def crash(*_args, **_kwargs):
        raise RuntimeError("the backend died")

    monkeypatch.setattr(cli, "evaluate", crash)
    out = tmp_path / "out"
    out.mkdir()
    code, err = run_cli(["-m", *BASE, f"output_dir={out}", "+bank=demo,none"], capsys)
    assert code == 1 and err.count("removed the run folder") == 2
    assert list(out.iterdir()) == []  # job folders, then the sweep folder (only multirun.yaml left) are gone


def test_remove_unused_run_dir_only_removes_hydras_own_files(tmp_path):
    from memcollab_eval.hydra_app import remove_unused_run_dir

    run = tmp_path / "out" / "target" / "bank" / "time"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("x")
    (run / "cli.log").write_text("log")
    (tmp_path / "out" / "target" / "other").mkdir()
    assert not remove_unused_run_dir(run, keep=run)  # never the folder it must keep
    assert not remove_unused_run_dir(run, keep=tmp_path / "elsewhere")  # nor outside it
    (run / "results.json").write_text("{}")
    assert not remove_unused_run_dir(run, keep=tmp_path / "out", own_files=("cli.log",))
    (run / "results.json").unlink()
    assert remove_unused_run_dir(run, keep=tmp_path / "out", own_files=("cli.log",))
    # the emptied bank/ folder goes too; target/ still holds another folder, out/ is kept
    assert not (tmp_path / "out" / "target" / "bank").exists() and (tmp_path / "out" / "target" / "other").is_dir()


def test_prepare_argv_keeps_hydra_flags_before_the_overrides():
    from memcollab_eval.evaluation.cli import prepare_argv

    assert prepare_argv(["-m", "+target=scripted", "limit=1"]) == ["-m", "+bank=demo", "+target=scripted", "limit=1"]
    assert prepare_argv(["--cfg", "job", "limit=1"])[:2] == ["--cfg", "job"]
    assert prepare_argv(["+target=scripted", "limit=1", "-m", "seed=1,2"]) == \
        ["-m", "+bank=demo", "+target=scripted", "limit=1", "seed=1,2"]
    assert prepare_argv(["--info", "limit=1"]) == ["--info", "+target=qwen25_coder_05b", "+bank=demo", "limit=1"]
    assert prepare_argv(["--info", "plugins"])[:2] == ["--info", "plugins"]


def test_override_problems_skips_option_values():
    from memcollab_eval.hydra_app import override_problems

    assert override_problems(["--config-dir", "/tmp/a=ä", "limit=1", "-m"]) == []
    (problem,) = override_problems(["data_dir=/tmp/ä"])
    assert "data_dir='/tmp/ä'" in problem
