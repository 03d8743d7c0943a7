"""Public code-execution API: run a candidate program against its tests in the sandbox.

``run_code`` and ``run_codes`` are what bank building and evaluation scoring call. They
share one pool of pre-started workers per configuration for the life of the process,
so a batch pays the start-up cost (~0.1 s per worker) once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace

from tqdm.auto import tqdm

from memcollab_eval.verify.sandbox_pool import Execution, SandboxConfig, SandboxPool, shared_pool
from memcollab_eval.verify.verdict import Verdict

CodeItem = Mapping[str, object] | tuple


def run_code(
    program: str,
    test: str,
    *,
    timeout: float = 10.0,
    entry_point: str | None = None,
    config: SandboxConfig | None = None,
) -> Verdict:
    """Run ``program`` and then ``test`` in the sandbox; ``pass`` only if the tests completed.

    MBPP: ``test`` is the setup code plus the ``assert`` lines. HumanEval: ``test`` defines
    ``check(candidate)`` and ``entry_point`` names the function to pass to it. A program
    that exits early (``sys.exit(0)``, ``os._exit(0)``) before the tests ran fails.
    """
    pool = shared_pool(config or SandboxConfig())
    return pool.run(program, test, entry_point=entry_point, timeout=timeout)


def execute_code(program: str, *, timeout: float = 10.0, config: SandboxConfig | None = None) -> Execution:
    """Run a script in the sandbox and return its (capped) output: for agents' code blocks."""
    return shared_pool(config or SandboxConfig()).execute(program, timeout=timeout)


def _as_request(item: CodeItem, index: int) -> tuple[str, str, str | None]:
    if isinstance(item, tuple):
        if len(item) not in (2, 3):
            raise ValueError(f"run_codes item {index}: expected (program, test[, entry_point]), got {len(item)} values")
        return (item[0], item[1], item[2] if len(item) == 3 else None)  # type: ignore[return-value]
    missing = [k for k in ("program", "test") if k not in item]
    if missing:
        raise ValueError(f"run_codes item {index}: missing field(s) {missing}; expected program, test[, entry_point]")
    return (str(item["program"]), str(item["test"]), item.get("entry_point"))  # type: ignore[return-value]


def run_codes(
    items: Iterable[CodeItem],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    progress: bool | None = None,
    config: SandboxConfig | None = None,
    pool: SandboxPool | None = None,
) -> list[Verdict]:
    """Run many (program, test[, entry_point]) items; verdicts come back in input order.

    ``items`` are tuples or mappings with ``program``, ``test`` and optional
    ``entry_point``. A progress bar is shown for batches over 20 items on a terminal
    (force with ``progress=True``).
    """
    requests = [_as_request(item, i) for i, item in enumerate(items)]
    if pool is None:
        pool = shared_pool(replace(config or SandboxConfig(), workers=max(1, workers)))
    show = progress if progress is not None else (len(requests) > 20 and sys.stderr.isatty())
    results: list[Verdict | None] = [None] * len(requests)
    with ThreadPoolExecutor(max_workers=max(1, pool.config.workers)) as executor, tqdm(
        total=len(requests), disable=not show, desc="sandbox", unit="prog"
    ) as bar:
        futures = {
            executor.submit(pool.run, program, test, entry_point=entry, timeout=timeout): i
            for i, (program, test, entry) in enumerate(requests)
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return [r for r in results if r is not None]
