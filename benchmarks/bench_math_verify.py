"""Throughput of the math checker against raw math-verify on the MATH500 golds.

Each of the 500 checks is the response "The answer is $\\boxed{<gold>}$" against
<gold>.

(a) raw math-verify as most harnesses call it: ``parse`` both sides, ``verify``,
    one check after the other in one process;
(b) our ``check_answers(..., workers=2)``: "cold" is the first call in a fresh
    process (worker start-up included), "warm" a second call in that process.
    ``workers=0`` (in-process, one core) is shown for reference.

Every measurement runs in its own fresh interpreter, so no run profits from
sympy/antlr caches another one filled, and each is repeated (median reported)
because timings on a small shared VM jitter by tens of percent.

Run: ``python benchmarks/bench_math_verify.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _data_dir() -> Path:
    env = os.environ.get("MEMCOLLAB_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _load_golds() -> list[str]:
    with open(_data_dir() / "math500" / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f]


def _response(gold: str) -> str:
    return f"The answer is $\\boxed{{{gold}}}$"


def _measure_raw(golds: list[str]) -> dict[str, float]:
    import math_verify

    start = time.perf_counter()
    passed = 0
    for gold in golds:
        parsed_gold = math_verify.parse(f"$\\boxed{{{gold}}}$")
        passed += bool(math_verify.verify(parsed_gold, math_verify.parse(_response(gold))))
    return {"seconds": time.perf_counter() - start, "passed": passed}


def _measure_ours(golds: list[str], workers: int) -> dict[str, float]:
    from memcollab_eval.verify.math_answer import check_answers

    items = [(_response(gold), gold, "math") for gold in golds]
    timings = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        verdicts = check_answers(items, workers=workers, progress=False)
        timings[label] = time.perf_counter() - start
    return {**timings, "seconds": timings["cold"], "passed": sum(v.passed for v in verdicts)}


def _run_fresh(mode: str, workers: int) -> dict[str, float]:
    """One measurement in a new interpreter; its JSON result is the last line."""
    cmd = [sys.executable, __file__, "--measure", mode, "--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="math checks per second: raw math-verify vs check_answers")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure", choices=["raw", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    golds = _load_golds()
    if args.measure == "raw":
        print(json.dumps(_measure_raw(golds)))
        return
    if args.measure == "ours":
        print(json.dumps(_measure_ours(golds, args.workers)))
        return

    n = len(golds)
    raw, ours, inproc = [], [], []
    for _ in range(args.repeats):
        raw.append(_run_fresh("raw", 0))
        ours.append(_run_fresh("ours", args.workers))
        inproc.append(_run_fresh("ours", 0))

    def rate(runs: list[dict[str, float]], key: str) -> float:
        return n / statistics.median(run[key] for run in runs)

    raw_rate = rate(raw, "seconds")
    print(f"MATH500 golds: {n} checks per run, {os.cpu_count()} CPUs, median of {args.repeats} fresh-process runs")
    print(f"(a) raw math-verify, sequential       : {raw_rate:7.1f} checks/s  ({raw[0]['passed']}/{n} pass)")
    for label in ("cold", "warm"):
        ours_rate = rate(ours, label)
        print(
            f"(b) check_answers workers={args.workers}, {label:4}   : {ours_rate:7.1f} checks/s"
            f"  ({ours[0]['passed']}/{n} pass)   ratio b/a = {ours_rate / raw_rate:.2f}"
        )
    print(f"    check_answers workers=0 (ref.)    : {rate(inproc, 'cold'):7.1f} checks/s  (in-process, 1 core)")
    print("target: ratio b/a >= 0.8")


if __name__ == "__main__":
    main()
