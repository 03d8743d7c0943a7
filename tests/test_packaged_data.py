"""The evaluation sets shipped in the package: found through importlib.resources, checked by
sha256, used whenever data_dir is unset, and enough for the default run with no data folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURE_POOLS, REPO

from memcollab_eval import packaged_data
from memcollab_eval.adapters import BENCHMARKS, get_spec
from memcollab_eval.packaged_data import PACKAGED_FILES, PackagedDataError, packaged_file, packaged_root

SHARED = REPO.parent / "shared"  # this project's own machines keep a data folder here; nothing may read it

# Records every file a Python process opens under SHARED (and refuses it); put on PYTHONPATH,
# site imports it in every interpreter a test starts, subprocesses included.
FORBID_SHARED = """
import os, sys
_root, _log = os.environ["MEMCOLLAB_FORBIDDEN"], os.environ["MEMCOLLAB_FORBIDDEN_LOG"]
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.abspath(path).startswith(_root):
            with open(_log, "a") as f:
                f.write(path + "\\n")
            raise PermissionError(f"test forbids reading {path}")
sys.addaudithook(_hook)
"""


def forbidding_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment with MEMCOLLAB_DATA_DIR unset whose Python processes may not open ../shared."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(FORBID_SHARED)
    log = tmp_path / "forbidden.log"
    env = {k: v for k, v in os.environ.items() if k != "MEMCOLLAB_DATA_DIR"}
    env.update(PYTHONPATH=str(hook_dir), MEMCOLLAB_FORBIDDEN=str(SHARED), MEMCOLLAB_FORBIDDEN_LOG=str(log),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env, log


def test_every_shipped_file_matches_its_sha256_rows_and_size():
    for relative, (rows, size, _) in PACKAGED_FILES.items():
        path = packaged_file(relative)
        assert path.stat().st_size == size, relative
        with open(path, encoding="utf-8") as f:
            assert sum(1 for line in f if line.strip()) == rows, relative
    assert packaged_root() / "mbpp" / "mbpp.jsonl" == packaged_file("mbpp/mbpp.jsonl")
    # MBPP test is task ids 11-510 of the full file, lines unchanged
    full = packaged_file("mbpp/mbpp.jsonl").read_text().splitlines()
    assert packaged_file("mbpp/test.jsonl").read_text().splitlines() == full[10:510]


def test_the_data_readme_states_the_same_sha256_and_a_license_per_set():
    text = (REPO / "memcollab_eval" / "data" / "README.md").read_text()
    table = {m[0]: (int(m[1]), int(m[2]), m[3]) for m in
             re.findall(r"^\| (\S+\.jsonl) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|$", text, re.M)}
    assert table == PACKAGED_FILES
    assert text.count("- License:") == 4 and text.count("Citation") >= 4


def test_pyproject_ships_the_data_and_the_lm_eval_entry_points():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = meta["tool"]["setuptools"]["package-data"]["memcollab_eval"]
    assert "data/*/*.jsonl" in globs and "data/README.md" in globs
    declared = meta["project"]["entry-points"]["lm_eval.models"]
    assert {"llama_cpp", "memcollab_agent", "memcollab_scripted"} <= set(declared)
    assert meta["project"]["scripts"]["memcollab-lm-eval"] == "memcollab_eval.evaluation.lm_eval_cli:main"


def test_a_damaged_file_is_refused(monkeypatch):
    packaged_file.cache_clear()
    try:
        rows, size, _ = PACKAGED_FILES["gsm8k/test.jsonl"]
        monkeypatch.setitem(PACKAGED_FILES, "gsm8k/test.jsonl", (rows, size, "0" * 64))
        with pytest.raises(PackagedDataError, match=r"gsm8k/test\.jsonl has sha256 3730d3.*expected 0000.*reinstall"):
            packaged_file("gsm8k/test.jsonl")
    finally:
        monkeypatch.undo()
        packaged_file.cache_clear()
    assert packaged_file("gsm8k/test.jsonl").exists()


def test_the_sha256_is_computed_once_per_process(monkeypatch):
    packaged_file("math500/test.jsonl")
    calls = []
    monkeypatch.setattr(packaged_data, "sha256_file", lambda path: calls.append(path) or "")
    for _ in range(3):
        packaged_file("math500/test.jsonl")
    assert calls == []


def test_an_unset_data_dir_means_the_packaged_copy():
    from memcollab_eval.bank.checks import eval_problems
    from memcollab_eval.subsets import benchmark_size

    for name, spec in BENCHMARKS.items():
        fields = spec.dataset_fields(None)
        assert fields["dataset_path"] == "json"
        assert Path(fields["dataset_kwargs"]["data_files"]["test"]) == packaged_file(spec.local_file)
        assert benchmark_size(name, None) == PACKAGED_FILES[spec.local_file][0]
    problems = eval_problems(None)
    assert len(problems) == 1319 + 500 + 500 + 164
    assert problems[0][0] == "test/precalculus/807.json"  # MATH500 first, ids as the evaluation logs them


def test_a_data_dir_without_the_file_names_the_way_back_to_the_packaged_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gsm8k: local data file .* not found.*unset data_dir"):
        get_spec("gsm8k").dataset_fields(str(tmp_path))


def test_bank_check_uses_the_packaged_sets_when_no_data_dir_is_given(monkeypatch, capsys):
    from memcollab_eval.ci.bank_cli import main

    monkeypatch.delenv("MEMCOLLAB_DATA_DIR", raising=False)
    assert main(["check", str(REPO / "memcollab_eval" / "banks" / "demo_handmade")]) == 0
    out = capsys.readouterr()
    assert "coverage of" in out.out and "--skip-leakage" not in out.err


def test_pools_read_training_files_locally_and_say_where_they_come_from(tmp_path):
    from memcollab_eval.construct.pools import PoolError, build_pool, eval_texts

    # the leakage check needs no local evaluation sets: the package has them
    assert len(eval_texts(str(FIXTURE_POOLS))) > 2000
    pool = build_pool({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, str(FIXTURE_POOLS), 1234)
    assert len(pool) == 6
    start = time.monotonic()
    with pytest.raises(PoolError) as err:
        build_pool({"gsm8k_train": 2}, str(tmp_path), 1234)
    message = str(err.value)
    assert "\n" not in message and "MEMCOLLAB_DATA_DIR" in message and "Hugging Face hub" in message
    assert time.monotonic() - start < 5


def test_fixture_pool_excludes_the_training_rows_that_repeat_test_problems():
    from memcollab_eval.construct.pools import build_pool

    excluded: dict = {}
    build_pool({"mbpp_train": None}, str(FIXTURE_POOLS), 0, excluded)
    assert len(excluded["mbpp_train"]) == 3


def test_wheel_ships_the_data_and_finds_it_outside_the_checkout(tmp_path):
    """A built (non-editable) install resolves and verifies the data through importlib.resources."""
    # pip builds as for any install: setuptools and wheel in an isolated build environment
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                           str(REPO)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and re.search(r"No matching distribution|Could not find a version|Network|connection",
                                          proc.stderr, re.I):
        pytest.skip(f"pip cannot fetch the build backend here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the build says nothing: no "absent from the `packages` configuration" screen per data folder
    assert "BuildBackendWarning" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    wheel = next((tmp_path / "wheel").glob("memcollab_eval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"memcollab_eval/data/{rel}" for rel in PACKAGED_FILES} | {"memcollab_eval/data/README.md"} <= names
    shipped = {str(p.relative_to(REPO)) for folder in ("memcollab_eval/banks", "memcollab_eval/prompts")
               for p in (REPO / folder).rglob("*") if p.is_file()}
    configs = {"memcollab_eval/conf/" + str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped | configs <= names, sorted((shipped | configs) - names)[:10]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import memcollab_eval.packaged_data as p; r = p.packaged_root(); "
            "print(r); assert p.packaged_file('humaneval/HumanEval.jsonl').is_file()")
    # -S: no site-packages, so the editable install of the checkout cannot answer
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "memcollab_eval" / "data"


def test_default_run_needs_no_data_folder_and_never_reads_beside_the_checkout(tmp_path):
    """README command 1's job (scripted target, two benchmarks) with MEMCOLLAB_DATA_DIR unset,
    its Python forbidden to open anything under ../shared."""
    env, log = forbidding_env(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval", "+target=scripted", "+bank=demo_handmade",
                           "target.identity=qwen25_coder_05b", "limit=1", "benchmarks=[gsm8k,math500]",
                           f"output_dir={out}"], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not log.exists(), log.read_text()
    results = [json.loads(p.read_text()) for p in out.rglob("results_*.json")]
    files = {cfg["dataset_kwargs"]["data_files"]["test"] for r in results for cfg in r["configs"].values()}
    assert files == {str(packaged_file("gsm8k/test.jsonl")), str(packaged_file("math500/test.jsonl"))}


def test_the_forbidding_hook_works(tmp_path):
    if not SHARED.exists():
        pytest.skip(f"{SHARED} does not exist here: nothing to forbid")
    env, log = forbidding_env(tmp_path)
    target = next((p for p in SHARED.rglob("*") if p.is_file()), None)
    if target is None:
        pytest.skip(f"no file under {SHARED}")
    proc = subprocess.run([sys.executable, "-c", f"open({str(target)!r}).read()"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode != 0 and "test forbids reading" in proc.stderr
    assert log.read_text().strip() == str(target)
