"""Decide whether a model's math answer matches the gold answer.

Equivalence is math-verify's (``parse`` + ``verify``): it already knows fractions,
sets, intervals, matrices, units, ``x=3`` vs ``3`` and much more. This module only
adds what it lacks for our use:

* our own extraction (``math_extract``), so the reported answer is a string a
  human can read and MATH/GSM8K answer formats are handled the same way;
* exact numeric comparison for GSM8K (``$1,000.00`` == ``1000``);
* a few rewrites tried only after math-verify said "no" (``math_extract.rewrites``);
* timeouts that cannot hang an evaluation. math-verify times out with
  ``signal.alarm``, which only works in a process's main thread, and a check stuck
  in C code ignores it. So checks run in the main thread of worker processes, each
  under its own alarm, and the parent kills and replaces any worker that overruns a
  hard wall-clock limit.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from multiprocessing.connection import Connection, wait
from typing import Any

import math_verify
import math_verify.grader
import math_verify.parser
from tqdm import tqdm

from memcollab_eval.verify.math_extract import (
    KINDS,
    bases_conflict,
    check_kind,
    extract_answer,
    extract_gold,
    magnitude_mismatch,
    rewrites,
    to_number,
)
from memcollab_eval.verify.verdict import Verdict

__all__ = ["KINDS", "check_answer", "check_answers", "extract_answer"]

# We pass timeout=None to math-verify and enforce our own limit (its alarm(0) on
# exit would cancel an outer timer), so its "timeout is disabled" warning is moot.
math_verify.parser.TIMEOUT_WARNING_SHOWN = True
math_verify.grader.TIMEOUT_WARNING_SHOWN = True

Job = tuple[str, str, str, float]  # response, gold, kind, timeout
CheckFn = Callable[[str, str, str, float], Verdict]


class _CheckTimeout(BaseException):
    """Raised by our alarm. A BaseException so the ``except Exception`` blocks in
    math-verify and sympy cannot swallow it and carry on computing."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_CheckTimeout`` in this (main) thread after ``seconds``.

    ``setitimer`` rather than ``alarm`` for sub-second limits; an outer timer (e.g.
    pytest-timeout's) is put back with the time it had left.
    """

    def _raise(signum: int, frame: Any) -> None:
        raise _CheckTimeout

    previous = signal.signal(signal.SIGALRM, _raise)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:
            remaining = max(outer_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> list[Any]:
    """math-verify's reading of an extracted answer. Boxing it selects the LaTeX
    path with all of math-verify's normalisation; cached because golds repeat."""
    return math_verify.parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def _verify(gold: str, pred: str) -> bool:
    return math_verify.verify(_parse(gold), _parse(pred), timeout_seconds=None)


def _math_equal(pred: str, gold: str) -> tuple[bool, str]:
    """math-verify on the answers as given, then on the rewritten readings."""
    if _verify(gold, pred):
        return True, "math-verify"
    for gold_form in [gold, *rewrites(gold)]:
        for pred_form in [pred, *rewrites(pred)]:
            if (gold_form, pred_form) != (gold, pred) and _verify(gold_form, pred_form):
                return True, f"math-verify after rewriting ({gold_form!r} vs {pred_form!r})"
    return False, f"not equivalent to gold {gold!r}"


def _equivalent(pred: str, gold: str, kind: str) -> tuple[bool, str]:
    """Two plain numbers compare exactly (fast, and no float rounding: math-verify
    rounds to 6 decimals, so .0000672 == .0000673); anything else is math-verify's."""
    if not gold:
        raise ValueError("gold answer is empty")
    pred_value, gold_value = to_number(pred), to_number(gold)
    if pred_value is not None and gold_value is not None:
        verdict = "equal" if pred_value == gold_value else f"!= gold {gold!r}"
        return pred_value == gold_value, f"numeric: {verdict}"
    if bases_conflict(pred, gold):
        return False, f"base differs from gold {gold!r}"
    mismatch = magnitude_mismatch(pred, gold)
    if mismatch:
        return False, f"not equivalent: {mismatch}"
    return _math_equal(pred, gold)


def _check_here(response: str, gold: str, kind: str, timeout: float) -> Verdict:
    """One check in the calling process; must run in its main thread (SIGALRM)."""
    start = time.perf_counter()
    extracted: str | None = None
    try:
        with _time_limit(timeout):
            extracted = extract_answer(response, kind)
            if extracted is None:
                status, detail = "no_answer", "no answer found in the response"
            else:
                passed, detail = _equivalent(extracted, extract_gold(gold, kind), kind)
                status = "pass" if passed else "fail"
    except _CheckTimeout:
        status, detail = "timeout", f"check exceeded {timeout:g}s"
    except Exception as exc:  # a verdict, never a crashed evaluation
        status, detail = "error", f"{type(exc).__name__}: {exc}"
    return Verdict(status, extracted, detail, time.perf_counter() - start)


# ---------------------------------------------------------------- process pool


def _hard_limit(timeout: float) -> float:
    """Wall-clock budget per check in a worker: the alarm's, plus slack for a
    loaded machine, before we conclude the worker ignores the alarm."""
    return 1.5 * timeout + 1.0


def _thread_count() -> int:
    """Threads of this process, native ones (BLAS, CUDA, servers) included."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _context() -> Any:
    """``fork`` when this process runs a single thread: workers start instantly and
    need not re-import sympy. With other threads alive (a caller thread, BLAS or
    GPU runtimes) a forked child may inherit a lock held mid-update and deadlock, so
    we then use a forkserver that has preloaded this module (~0.5 s, once)."""
    if _thread_count() == 1:
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _worker_main(conn: Connection, check: CheckFn) -> None:
    """Worker loop: run jobs in this process's main thread until told to stop."""
    gc.freeze()  # inherited objects: keep GC passes from touching (copying) their pages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    while (job := conn.recv()) is not None:
        conn.send(check(*job))


class _Worker:
    """A checker process with a private pipe, so one stuck check can be killed
    without losing the others (a stdlib pool would break as a whole).

    Up to ``_IN_FLIGHT`` jobs are queued in its pipe so it never idles waiting for
    the parent; only the oldest is running, and its clock is the one we watch.
    """

    def __init__(self, check: CheckFn, hard_limit: float) -> None:
        ctx = _context()
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child_conn, check), daemon=True)
        self.proc.start()
        child_conn.close()
        self.queue: deque[tuple[int, Job]] = deque()
        self.hard_limit, self.started = hard_limit, 0.0

    @property
    def deadline(self) -> float:
        return self.started + self.hard_limit

    def submit(self, index: int, job: Job) -> None:
        self.conn.send(job)
        if not self.queue:
            self.started = time.monotonic()
        self.queue.append((index, job))

    def finish(self) -> tuple[int, Verdict]:
        """The oldest job's verdict (an error verdict if the worker died)."""
        index, _ = self.queue.popleft()
        try:
            verdict = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(1)
            verdict = Verdict("error", detail=f"worker died (exit code {self.proc.exitcode})")
        self.started = time.monotonic()
        return index, verdict

    def kill(self) -> tuple[int, Verdict]:
        """Stop a worker stuck past its hard limit; the oldest job timed out."""
        elapsed = time.monotonic() - self.started
        index, _ = self.queue.popleft()
        self.proc.kill()
        self.proc.join()
        return index, Verdict("timeout", detail=f"worker killed after {elapsed:.1f}s", seconds=elapsed)

    def close(self, kill: bool = False) -> None:
        if not kill and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(2)
            except OSError:
                pass
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


_IN_FLIGHT = 2


class _Bar(tqdm):  # type: ignore[type-arg]
    monitor_interval = 0  # tqdm's monitor thread outlives the bar and would rule out fork


def _progress_bar(total: int, show: bool) -> Any:
    return _Bar(total=total, desc="math checks", file=sys.stderr) if show else nullcontext()


def _run_pool(jobs: list[Job], workers: int, progress: bool, check: CheckFn = _check_here) -> list[Verdict]:
    """Run jobs on ``workers`` processes; results come back in input order."""
    results = [Verdict("error", detail="not run")] * len(jobs)
    todo = deque(enumerate(jobs))
    hard_limit = _hard_limit(max(job[3] for job in jobs))
    pool = [_Worker(check, hard_limit) for _ in range(min(workers, len(jobs)))]
    try:
        with _progress_bar(len(jobs), progress) as bar:
            while todo or any(w.queue for w in pool):
                for worker in pool:
                    while todo and len(worker.queue) < _IN_FLIGHT:
                        worker.submit(*todo.popleft())
                busy = [w for w in pool if w.queue]
                ready = wait([w.conn for w in busy], max(0.0, min(w.deadline for w in busy) - time.monotonic()))
                for worker in busy:
                    if worker.conn in ready:
                        index, results[index] = worker.finish()
                    elif time.monotonic() >= worker.deadline:
                        index, results[index] = worker.kill()
                    else:
                        continue
                    if bar is not None:
                        bar.update()
                    if not worker.proc.is_alive():  # killed or died: requeue, replace
                        todo.extendleft(reversed(worker.queue))
                        worker.queue.clear()
                        worker.close(kill=True)
                        pool.remove(worker)
                        if todo:
                            pool.append(_Worker(check, hard_limit))
    finally:
        for worker in pool:
            worker.close(kill=bool(worker.queue))
    return results


# ------------------------------------------------------------------ public API


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _as_job(item: tuple[str, str, str] | dict[str, str], timeout: float) -> Job:
    if isinstance(item, dict):
        response, gold, kind = item["response"], item["gold"], item.get("kind", "math")
    else:
        response, gold, kind = item
    return response, gold, check_kind(kind), timeout


def _check_timeout(timeout: float) -> float:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def _check_in_process(jobs: list[Job], progress: bool) -> list[Verdict]:
    verdicts = []
    with _progress_bar(len(jobs), progress) as bar:
        for job in jobs:
            verdicts.append(_check_here(*job))
            if bar is not None:
                bar.update()
    return verdicts


def check_answer(response: str, gold: str, kind: str = "math", *, timeout: float = 5.0) -> Verdict:
    """Check one response against its gold answer (``kind``: "math" or "gsm8k").

    In the main thread the check runs here under an alarm; from any other thread
    it is sent to a worker process, the only place an alarm can work.
    """
    job = _as_job((response, gold, kind), _check_timeout(timeout))
    if _in_main_thread():
        return _check_here(*job)
    return _run_pool([job], workers=1, progress=False)[0]


def check_answers(
    items: Iterable[tuple[str, str, str]] | Iterable[dict[str, str]],
    *,
    workers: int = 2,
    timeout: float = 5.0,
    progress: bool | None = None,
) -> list[Verdict]:
    """Check many ``(response, gold, kind)`` tuples or ``{"response", "gold",
    "kind"}`` dicts; verdicts come back in input order.

    ``workers >= 1`` uses that many worker processes, each check under a hard
    wall-clock limit. ``workers=0`` checks in this process under the alarm only
    (also the fallback inside a daemon process, which may not have children); off
    the main thread it still needs one worker. ``progress=None`` shows a bar for
    more than 50 items when stderr is a terminal.
    """
    jobs = [_as_job(item, _check_timeout(timeout)) for item in items]
    show = progress if progress is not None else len(jobs) > 50 and sys.stderr.isatty()
    if not jobs:
        return []
    if (workers <= 0 or mp.current_process().daemon) and _in_main_thread():
        return _check_in_process(jobs, show)
    return _run_pool(jobs, max(1, workers), show)
