"""Several samples of one long prompt, with and without sharing its prefill, in the llama_cpp backend.

Why: a bank build asks the summarizer for ``distill_samples`` (3) replies to each pair's prompt of
about 800 tokens, and self-contrast asks for 4 samples of each problem. Decoded together, each
sample used to compute the same prompt again; now the first computes it and the others copy its
cells (``memcollab_eval/models/llamacpp_batch.py``). This prints both wall times and CPU seconds
for one prompt made of packaged evaluation problems, sampled ``--samples`` times at temperature 0.7
with one seed each, and whether the texts agree between the two ways (they need not: a copied
prefill was computed in a batch of a different shape; each way is reproducible).

Run: python benchmarks/bench_shared_prompt.py [--model qwen25_coder_05b] [--prompt-tokens 2000]
     [--samples 3] [--max-tokens 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from memcollab_eval.adapters import BENCHMARKS  # noqa: E402
from memcollab_eval.models.llamacpp_batch import BatchRequest  # noqa: E402
from memcollab_eval.models.llamacpp_lm import LlamaCppLM  # noqa: E402
from memcollab_eval.packaged_data import packaged_file  # noqa: E402


def long_prompt(lm: LlamaCppLM, tokens: int) -> list[int]:
    """Packaged GSM8K and MBPP problems, concatenated until the chat-rendered prompt has ``tokens`` tokens."""
    parts: list[str] = []
    for name in ("gsm8k", "mbpp"):
        with open(packaged_file(BENCHMARKS[name].local_file), encoding="utf-8") as f:
            docs = [json.loads(line) for line, _ in zip(f, range(100), strict=False)]
        parts += [BENCHMARKS[name].prompt(doc) for doc in docs]
    for end in range(1, len(parts) + 1):
        ids = lm.tok_encode(lm.apply_chat_template([{"role": "user", "content": "\n\n".join(parts[:end])}]))
        if len(ids) >= tokens:
            return ids[:tokens]
    raise SystemExit(f"the packaged problems give fewer than {tokens} prompt tokens")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen25_coder_05b")
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    lm = LlamaCppLM(model=args.model, n_ctx=4096, n_threads=args.threads, n_parallel=args.samples, progress=False)
    prompt = long_prompt(lm, args.prompt_tokens)
    requests = [BatchRequest(prompt=prompt, max_tokens=args.max_tokens, stop=(),
                             sampling={"temperature": 0.7, "seed": 1000 + i}) for i in range(args.samples)]
    decoder = lm._batched
    figures = {}
    for share in (False, True):
        decoder.share_prompts = share
        wall, cpu = time.perf_counter(), time.process_time()
        results = decoder.generate(requests)
        figures[share] = (time.perf_counter() - wall, time.process_time() - cpu, [r.text for r in results],
                          sum(r.shared_prompt_tokens for r in results))
    (w0, c0, t0, _), (w1, c1, t1, shared) = figures[False], figures[True]
    print(f"model {args.model}, {args.threads} thread(s), one prompt of {len(prompt)} tokens, "
          f"{args.samples} samples of at most {args.max_tokens} tokens at temperature 0.7")
    print(f"computed by every sample : {w0:7.1f} s wall, {c0:7.1f} s CPU")
    print(f"computed once, copied    : {w1:7.1f} s wall, {c1:7.1f} s CPU ({shared} prompt tokens copied)")
    same = sum(a == b for a, b in zip(t0, t1, strict=True))
    print(f"ratio: {w0 / w1:.2f}x wall, {c0 / c1:.2f}x CPU; identical texts {same} of {len(t0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
