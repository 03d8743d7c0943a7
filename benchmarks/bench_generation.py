"""Sequential vs batched generation in the llama_cpp backend, on the four benchmarks' prompts.

Why: batched decoding is only worth its complexity if it makes the CPU runs markedly faster
(target: >= 1.8x aggregate tokens per second at the default ``n_parallel``) without changing what
gets scored. This script measures both in one run on the same fixed prompts (the first
``--per-benchmark`` problems of MATH500, GSM8K, MBPP and HumanEval, rendered exactly as the
evaluation renders them, greedy):

* aggregate generation throughput: completion tokens of all requests / wall time of the whole
  ``generate_until`` call (prompt processing included, as in a real run), sequential
  (``n_parallel=1``) and then batched for each ``--n-parallel``;
* greedy agreement with the sequential completions: identical texts, and identical verdicts
  (``memcollab_eval.scoring.score_response``, code run in the sandbox);
* CPU seconds of the process per phase beside the wall time: on a machine shared with other jobs
  the wall time measures the neighbours too, while with one thread tokens per CPU-second stay
  close to what an idle machine gives (with two threads, waiting threads spin and count);
* peak RSS of the process after each phase (``ru_maxrss``; it only grows, so each figure is the
  peak up to that phase).

Run: MEMCOLLAB_DATA_DIR=../shared/data python benchmarks/bench_generation.py
     [--model qwen25_coder_05b] [--threads 2] [--per-benchmark 3] [--max-gen-toks 256] [--n-parallel 8]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lm_eval.api.instance import Instance  # noqa: E402

from memcollab_eval.adapters import BENCHMARKS  # noqa: E402
from memcollab_eval.models.llamacpp_lm import DEFAULT_N_PARALLEL, LlamaCppLM  # noqa: E402
from memcollab_eval.scoring import score_response  # noqa: E402
from memcollab_eval.verify import SandboxConfig  # noqa: E402


@dataclass(frozen=True)
class Problem:
    benchmark: str
    doc: dict[str, Any]
    prompt: str  # the user turn; the chat template is applied by the model under test


@dataclass(frozen=True)
class Phase:
    """One timed ``generate_until`` over all problems."""

    n_parallel: int
    texts: list[str]
    completion_tokens: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.completion_tokens / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def load_problems(data_dir: Path, per_benchmark: int) -> list[Problem]:
    problems = []
    for name, spec in BENCHMARKS.items():
        path = data_dir / spec.local_file
        if not path.exists():
            sys.exit(f"benchmark data not found: {path} (set MEMCOLLAB_DATA_DIR or --data-dir)")
        with open(path, encoding="utf-8") as f:
            docs = [json.loads(line) for line, _ in zip(f, range(per_benchmark), strict=False)]
        problems += [Problem(name, doc, spec.prompt(doc)) for doc in docs]
    return problems


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_phase(args: argparse.Namespace, problems: list[Problem], n_parallel: int) -> Phase:
    lm = LlamaCppLM(model=args.model, n_ctx=args.n_ctx, n_threads=args.threads, n_parallel=n_parallel,
                    share_identical=False, progress=False)
    requests = [
        Instance(request_type="generate_until", doc={}, idx=i,
                 arguments=(lm.apply_chat_template([{"role": "user", "content": p.prompt}]),
                            {"until": [], "max_gen_toks": args.max_gen_toks, "do_sample": False}))
        for i, p in enumerate(problems)
    ]
    started, cpu_started = time.perf_counter(), cpu_seconds()
    texts = lm.generate_until(requests, disable_tqdm=True)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    tokens = lm.usage_summary().completion_tokens
    phase = Phase(n_parallel, texts, tokens, seconds, cpu, peak_rss_mib())
    del lm
    gc.collect()
    return phase


def verdicts(problems: list[Problem], texts: list[str], sandbox: SandboxConfig) -> list[str]:
    return [score_response(BENCHMARKS[p.benchmark], p.doc, t, sandbox=sandbox).status
            for p, t in zip(problems, texts, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen25_coder_05b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-benchmark", type=int, default=3, help="first N problems of each benchmark")
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-parallel", type=int, nargs="+", default=[DEFAULT_N_PARALLEL])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MEMCOLLAB_DATA_DIR", "../shared/data")))
    parser.add_argument("--no-verdicts", action="store_true", help="skip scoring (no sandbox needed)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    problems = load_problems(args.data_dir, args.per_benchmark)
    print(f"{len(problems)} prompts ({args.per_benchmark} per benchmark), {args.model}, {args.threads} threads, "
          f"greedy, max_gen_toks={args.max_gen_toks}", flush=True)
    sequential = run_phase(args, problems, 1)
    print(f"  sequential: {sequential.tokens_per_second:.1f} tok/s ({sequential.seconds:.0f} s, "
          f"{sequential.tokens_per_cpu_second:.1f} tok per CPU-s)", flush=True)
    phases = []
    for n in args.n_parallel:
        phases.append(run_phase(args, problems, n))
        print(f"  n_parallel={n}: {phases[-1].tokens_per_second:.1f} tok/s ({phases[-1].seconds:.0f} s, "
              f"{phases[-1].tokens_per_cpu_second:.1f} tok per CPU-s)", flush=True)
    sandbox = SandboxConfig(workers=1)
    seq_verdicts = None if args.no_verdicts else verdicts(problems, sequential.texts, sandbox)

    rows = []
    print(f"\n{'mode':>12} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'ratio':>6} {'tok/CPU-s':>10} {'ratio':>6} "
          f"{'same text':>10} {'same verdict':>13} {'peak RSS':>9}")
    print(f"{'sequential':>12} {sequential.completion_tokens:>7} {sequential.seconds:>8.1f} "
          f"{sequential.tokens_per_second:>7.1f} {1.0:>6.2f} {sequential.tokens_per_cpu_second:>10.1f} {1.0:>6.2f} "
          f"{'-':>10} {'-':>13} {sequential.peak_rss_mib:>6.0f} MiB")
    for phase in phases:
        same_text = sum(a == b for a, b in zip(sequential.texts, phase.texts, strict=True)) / len(problems)
        same_verdict = None
        if seq_verdicts is not None:
            batch_verdicts = verdicts(problems, phase.texts, sandbox)
            same_verdict = sum(a == b for a, b in zip(seq_verdicts, batch_verdicts, strict=True)) / len(problems)
        ratio = phase.tokens_per_second / sequential.tokens_per_second
        cpu_ratio = phase.tokens_per_cpu_second / sequential.tokens_per_cpu_second
        verdict_cell = "-" if same_verdict is None else f"{same_verdict:.0%}"
        print(f"{'batch ' + str(phase.n_parallel):>12} {phase.completion_tokens:>7} {phase.seconds:>8.1f} "
              f"{phase.tokens_per_second:>7.1f} {ratio:>6.2f} {phase.tokens_per_cpu_second:>10.1f} {cpu_ratio:>6.2f} "
              f"{same_text:>10.0%} {verdict_cell:>13} "
              f"{phase.peak_rss_mib:>6.0f} MiB")
        rows.append({"n_parallel": phase.n_parallel, "tokens": phase.completion_tokens, "seconds": phase.seconds,
                     "tok_s": phase.tokens_per_second, "ratio": ratio, "cpu_seconds": phase.cpu_seconds,
                     "tok_per_cpu_s": phase.tokens_per_cpu_second, "cpu_ratio": cpu_ratio, "same_text": same_text,
                     "same_verdict": same_verdict, "peak_rss_mib": phase.peak_rss_mib})
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "threads": args.threads, "prompts": len(problems), "max_gen_toks": args.max_gen_toks,
            "sequential": {"tokens": sequential.completion_tokens, "seconds": sequential.seconds,
                           "cpu_seconds": sequential.cpu_seconds,
                           "tok_s": sequential.tokens_per_second, "peak_rss_mib": sequential.peak_rss_mib},
            "batched": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
