"""memcollab-eval: measure what a shared memory bank (MemCollab) does for LLMs on math and code.

The public API, by stage (each name is importable from here; its home module is in ``_API``):

* bank store: ``MemoryEntry``, ``BankManifest``, ``MemoryBank``, ``load_bank``, ``save_bank``, ``BankError``
* retrieval: ``Retriever``, ``RetrievalConfig``, ``render_memory``, ``categorize``
* verifiers: ``check_answer``, ``run_code``, ``run_codes``, ``Verdict``, ``SandboxConfig``
* evaluation: ``evaluate`` (the job behind ``python -m memcollab_eval``), ``EvalConf``
* construction: ``build_bank`` (``run_build``), ``BuildConf``
* leaderboard: ``build_leaderboard``, ``attribute``
* errors: ``UsageError``

Why names resolve on first use (PEP 562) rather than at import: the stages pull in lm-eval,
Hydra, scikit-learn and the sandbox; ``import memcollab_eval`` (which every submodule command,
e.g. ``python -m memcollab_eval.models.embedded``, runs first) should cost none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, tuple[str, str]] = {
    "MemoryEntry": ("memcollab_eval.bank.store", "MemoryEntry"),
    "BankManifest": ("memcollab_eval.bank.store", "BankManifest"),
    "MemoryBank": ("memcollab_eval.bank.store", "MemoryBank"),
    "BankError": ("memcollab_eval.bank.store", "BankError"),
    "load_bank": ("memcollab_eval.bank.store", "load_bank"),
    "save_bank": ("memcollab_eval.bank.store", "save_bank"),
    "Retriever": ("memcollab_eval.retrieve", "Retriever"),
    "RetrievalConfig": ("memcollab_eval.retrieve", "RetrievalConfig"),
    "render_memory": ("memcollab_eval.retrieve", "render_memory"),
    "categorize": ("memcollab_eval.categorize", "categorize"),
    "check_answer": ("memcollab_eval.verify", "check_answer"),
    "run_code": ("memcollab_eval.verify", "run_code"),
    "run_codes": ("memcollab_eval.verify", "run_codes"),
    "Verdict": ("memcollab_eval.verify", "Verdict"),
    "SandboxConfig": ("memcollab_eval.verify", "SandboxConfig"),
    "EvalConf": ("memcollab_eval.config", "EvalConf"),
    "evaluate": ("memcollab_eval.evaluation.job", "evaluate"),
    "BuildConf": ("memcollab_eval.construct.config", "BuildConf"),
    "build_bank": ("memcollab_eval.construct.pipeline", "run_build"),
    "build_leaderboard": ("memcollab_eval.leaderboard.board", "build_leaderboard"),
    "attribute": ("memcollab_eval.leaderboard.attribution", "attribute"),
    "UsageError": ("memcollab_eval.errors", "UsageError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
