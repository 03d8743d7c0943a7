"""Wall time the memory hook adds to a whole benchmark: the memory variant vs its no-memory
twin over all 1,319 GSM8K test problems, through lm-eval, with the scripted test double as
the model (so the model costs nothing and the hook's share is what is left).

Prints both times and the added fraction (target <= 5%). ``--ranker embedding`` times the
embedding ranker: the memory variant then also loads the packaged encoder (once per process:
the first repeat pays it, and the bank's embeddings) and embeds all 1,319 queries in batches;
every repeat is printed, so both the first run and the best one show.
Run: python benchmarks/bench_memory_hook.py [--bank DIR] [--benchmark gsm8k] [--repeat 3] [--ranker tfidf]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lm_eval import simple_evaluate  # noqa: E402

from memcollab_eval.bank.store import load_bank  # noqa: E402
from memcollab_eval.evaluation.tasks import MemorySetup, task_config  # noqa: E402
from memcollab_eval.models.scripted import ScriptedLM  # noqa: E402
from memcollab_eval.retrieve import RetrievalConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed_run(benchmark: str, data_dir: str, setup: MemorySetup | None) -> tuple[float, int]:
    lm = ScriptedLM(default="Adding it up, the answer is $\\boxed{42}$.")
    task = task_config(benchmark, data_dir=data_dir, setup=setup)
    start = time.perf_counter()
    results = simple_evaluate(model=lm, tasks=[task], apply_chat_template=True, bootstrap_iters=0,
                              log_samples=True, verbosity="ERROR")
    elapsed = time.perf_counter() - start
    return elapsed, int(results["n-samples"][task["task"]]["effective"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", default=str(REPO / "memcollab_eval" / "banks" / "demo_handmade"))
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--identity", default="qwen25_coder_05b")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ranker", default="tfidf", choices=["tfidf", "bm25", "embedding"])
    parser.add_argument("--data-dir", default=os.environ.get("MEMCOLLAB_DATA_DIR", str(REPO.parent / "shared" / "data")))
    args = parser.parse_args()
    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    setup = MemorySetup(load_bank(args.bank), RetrievalConfig(ranker=args.ranker), args.identity)
    plain, mem = [], []
    for _ in range(args.repeat):  # interleave, so drift in machine load hits both sides alike
        t, n = timed_run(args.benchmark, args.data_dir, None)
        plain.append(t)
        t, n = timed_run(args.benchmark, args.data_dir, setup)
        mem.append(t)
        print(f"  repeat {len(mem)}: no-memory twin {plain[-1]:.2f} s, memory variant {t:.2f} s "
              f"({100 * (t - plain[-1]) / plain[-1]:+.1f}%)")
    a, b = min(plain), min(mem)
    print(f"{args.benchmark}: {n} problems, scripted test double as the model, best of {args.repeat}")
    print(f"no-memory twin:  {a:7.2f} s")
    print(f"memory variant:  {b:7.2f} s  (bank {Path(args.bank).name}, {len(setup.bank.entries)} entries, "
          f"ranker {args.ranker})")
    print(f"added wall time: {100 * (b - a) / a:+.1f}%  (target <= 5%)")


if __name__ == "__main__":
    main()
