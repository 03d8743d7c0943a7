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
    support: str = "",
) -> Verdict:
    """Run ``program`` and its tests in the sandbox; ``pass`` only if the tests completed.

    The program runs in one process, ``support`` and ``test`` in another that calls the
    program's functions with plain data (see ``call_channel``), so the program cannot
    reach the code that decides the verdict. ``support`` is code the benchmark supplies
    and the tests use (HumanEval: the prompt, for helpers such as ``poly``; MBPP:
    ``test_setup_code``): it runs beside the tests from this text, never from the
    program's definitions. MBPP: ``test`` is the ``assert`` lines. HumanEval: ``test``
    defines ``check(candidate)`` and ``entry_point`` names the function to pass to it
    (without a ``check`` in ``test``, ``entry_point`` only names the function under
    test, the one name of the program that may shadow a builtin, as MBPP 126's ``sum``).
    A program that exits early (``sys.exit(0)``, ``os._exit(0)``) before the tests
    completed fails; so does a result that is not plain data.
    """
    pool = shared_pool(config or SandboxConfig())
    return pool.run(program, test, entry_point=entry_point, timeout=timeout, support=support)


def execute_code(program: str, *, timeout: float = 10.0, config: SandboxConfig | None = None) -> Execution:
    """Run a script in the sandbox and return its (capped) output: for agents' code blocks."""
    return shared_pool(config or SandboxConfig()).execute(program, timeout=timeout)


Request = tuple[str, str, "str | None", str]  # program, test, entry_point, support


def _as_request(item: CodeItem, index: int) -> Request:
    if isinstance(item, tuple):
        if len(item) not in (2, 3, 4):
            raise ValueError(
                f"run_codes item {index}: expected (program, test[, entry_point[, support]]), got {len(item)} values"
            )
        padded = (*item, None, "")[:4] if len(item) < 4 else item
        return (str(padded[0]), str(padded[1]), padded[2], str(padded[3] or ""))
    missing = [k for k in ("program", "test") if k not in item]
    if missing:
        raise ValueError(
            f"run_codes item {index}: missing field(s) {missing}; expected program, test[, entry_point, support]"
        )
    entry = item.get("entry_point")
    return (str(item["program"]), str(item["test"]), None if entry is None else str(entry), str(item.get("support") or ""))


def run_codes(
    items: Iterable[CodeItem],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    progress: bool | None = None,
    config: SandboxConfig | None = None,
    pool: SandboxPool | None = None,
) -> list[Verdict]:
    """Run many (program, test[, entry_point[, support]]) items; verdicts come back in input order.

    ``items`` are tuples or mappings with ``program``, ``test`` and optional
    ``entry_point`` and ``support`` (as for ``run_code``). A progress bar is shown for batches over 20 items on a terminal
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
            executor.submit(pool.run, program, test, entry_point=entry, timeout=timeout, support=support): i
            for i, (program, test, entry, support) in enumerate(requests)
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return [r for r in results if r is not None]
