"""Sweeps through Hydra's launcher plugins, tried for real on this machine: submitit's local mode and a
one-node Ray cluster (scripts/local_ray.sh) each run a 2-job multirun of the scripted double, and the
leaderboard reads both runs. The presets in conf/hydra/launcher/ must not shadow the plugins' own."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import data_dir

REPO = Path(__file__).resolve().parent.parent
LAUNCHERS = REPO / "conf" / "hydra" / "launcher"
# the presets Hydra and its launcher plugins register in the ConfigStore under hydra/launcher
PLUGIN_PRESETS = {"basic", "submitit_local", "submitit_slurm", "ray", "ray_aws", "joblib", "rq"}
SWEEP = ["+target=scripted", "+bank=none,demo_handmade", "limit=1", "benchmarks=[gsm8k]",
         r"target.model_args.default='The answer is \boxed{18}.'"]  # GSM8K's first problem: 18


def require_plugin(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        message = f"needs Hydra's launcher plugin {module}: pip install -e '.[{extra}]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_no_preset_shadows_or_includes_a_plugin_preset_of_its_name():
    presets = sorted(LAUNCHERS.glob("*.yaml"))
    assert {p.stem for p in presets} >= {"local_submitit", "local_ray", "slurm", "ray_cluster"}
    for path in presets:
        assert path.stem not in PLUGIN_PRESETS, f"{path.name} replaces the plugin's own preset of that name"
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        assert path.stem not in defaults, f"{path.name} includes itself"


def test_registered_plugin_presets_are_in_the_list_above():
    """PLUGIN_PRESETS is checked against the ConfigStore of whatever plugins are installed here."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # imports the installed plugins, which fill the ConfigStore
    registered = {name.removesuffix(".yaml") for name in ConfigStore.instance().list("hydra/launcher")}
    assert registered <= PLUGIN_PRESETS, registered - PLUGIN_PRESETS


def test_local_ray_preset_joins_a_running_cluster():
    require_plugin("hydra_plugins.hydra_ray_launcher", "ray")
    proc = subprocess.run(
        [sys.executable, "-m", "memcollab_eval", "+target=scripted", "hydra/launcher=local_ray", "--cfg", "hydra",
         "--resolve", "-p", "hydra.launcher"], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:6390"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    launcher = yaml.safe_load(proc.stdout.split("\n", 1)[1])  # after the "# @package" line
    assert launcher["_target_"].endswith("RayLauncher")
    # null, not absent: the launcher would otherwise set 75 MB, which ray.init refuses when joining a cluster
    assert "object_store_memory" in launcher["ray"]["init"] and launcher["ray"]["init"]["object_store_memory"] is None
    assert launcher["ray"]["init"]["address"] == "127.0.0.1:6390"


def sweep_dir(out: Path) -> Path:
    (found,) = (out / "multirun").iterdir()
    return found


def check_leaderboard_reads_both_runs(sweep: Path, tmp_path: Path) -> None:
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [run.split(",")[0] for run in runs] == ["+bank=demo_handmade", "+bank=none"], runs
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.leaderboard", str(sweep), "--out",
                           str(tmp_path / "board")], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(run in proc.stdout for run in runs)  # "Runs read"
    with open(tmp_path / "board" / "leaderboard.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["benchmark"] == "gsm8k"]
    # one row per memory source (a source's label may carry its retrieval settings), both runs scored
    assert sorted(r["source"].split(" [")[0] for r in rows) == ["demo_handmade", "no memory"], rows
    assert [float(r["accuracy"]) for r in rows] == [1.0, 1.0]


def test_submitit_local_runs_a_two_job_sweep_the_leaderboard_reads(tmp_path):
    require_plugin("hydra_plugins.hydra_submitit_launcher", "slurm")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "memcollab_eval", "-m", "hydra/launcher=local_submitit", *SWEEP,
         f"data_dir={data_dir()}", f"output_dir={out}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = sweep_dir(out)
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # two jobs, each its own process
    check_leaderboard_reads_both_runs(sweep, tmp_path)


def test_ray_runs_a_two_job_sweep_on_a_local_cluster_the_leaderboard_reads(tmp_path):
    require_plugin("hydra_plugins.hydra_ray_launcher", "ray")
    out = tmp_path / "out"
    # Ray's socket paths must fit in 107 characters: a short folder of its own under /tmp
    ray_dir = Path(tempfile.mkdtemp(prefix="mcray-", dir="/tmp"))
    env = {**os.environ, "PYTHON": sys.executable, "RAY_LOCAL_DIR": str(ray_dir), "RAY_NUM_CPUS": "2"}
    try:
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "local_ray.sh"), "run", sys.executable, "-m", "memcollab_eval", "-m",
             "hydra/launcher=local_ray", *SWEEP, f"data_dir={data_dir()}", f"output_dir={out}"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env, check=False)
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
        assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
        assert "stopped the Ray cluster" in proc.stderr and not (ray_dir / "head.pid").exists()
        check_leaderboard_reads_both_runs(sweep_dir(out), tmp_path)
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "local_ray.sh"), "stop"], env=env, capture_output=True,
                       timeout=120, check=False)
        subprocess.run(["rm", "-rf", str(ray_dir)], check=False)
