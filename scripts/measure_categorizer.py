"""Subject accuracy of the categorizers on MATH500, from the problem text alone.

The keyword rules' figure (0.65) is the one tests/test_categorize.py pins; this script puts the
LLM categorizer (memcollab_eval/categorize_llm.py, ``categorizer=llm``) beside it, on the same
500 problems of the package's MATH500 copy, with MATH's subject label hidden from both. It prints
each accuracy with a 95% Wilson interval, the replies that named no category (they fall back to
the keyword category, and count as whatever that gives), the paired disagreements (problems one
gets right and the other wrong) and the wall time. ``--out`` writes the figures and every
prediction as JSON.

Prompts are tuned on MATH *train*, never on MATH500: ``--data DIR/math_train/train.jsonl --per-subject 10``
measures on a seeded sample of training problems (label field ``type``) instead.

Run: python scripts/measure_categorizer.py --target qwen25_coder_05b [--limit N] [--prompt-version V]
     [--data FILE --per-subject N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from pathlib import Path

from memcollab_eval.categorize import categorize
from memcollab_eval.categorize_llm import PROMPT_VERSION, CategoryQuery, LMCategorizer, lm_generate
from memcollab_eval.models.generation import build_lm, load_target
from memcollab_eval.packaged_data import packaged_file


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="a target config name (conf/target/) or a target YAML path")
    ap.add_argument("--limit", type=int, default=None, help="the first N problems only")
    ap.add_argument("--out", type=Path, default=None, help="write figures and predictions as JSON here")
    ap.add_argument("--prompt-version", type=int, default=PROMPT_VERSION)
    ap.add_argument("--data", type=Path, default=None,
                    help="a MATH-style JSONL instead of the package's MATH500 (e.g. MATH train, to tune prompts on)")
    ap.add_argument("--per-subject", type=int, default=None, help="with --data: a seeded sample of N per subject")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    path = args.data or packaged_file("math500/test.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r.setdefault("subject", r.get("type"))
    if args.per_subject:
        random.Random(args.seed).shuffle(rows)
        taken: Counter = Counter()
        sample = []
        for r in rows:
            if taken[r["subject"]] < args.per_subject:
                taken[r["subject"]] += 1
                sample.append(r)
        rows = sample
    rows = rows[: args.limit] if args.limit else rows
    gold = [r["subject"] for r in rows]
    keywords = [categorize(r["problem"], domain="math", benchmark="math500").category for r in rows]

    target = load_target(args.target)
    lm = build_lm(target)
    categorizer = LMCategorizer(lm_generate(lm, chat=target.apply_chat_template), target.identity,
                                args.prompt_version)
    start = time.perf_counter()
    llm = [c.category for c in categorizer.categorize_many(
        [CategoryQuery(r["problem"], "math", "math500") for r in rows])]
    seconds = time.perf_counter() - start

    n = len(rows)
    figures = {}
    for name, predicted in (("keywords", keywords), (categorizer.name, llm)):
        k = sum(p == g for p, g in zip(predicted, gold, strict=True))
        low, high = wilson(k, n)
        figures[name] = {"correct": k, "n": n, "accuracy": round(k / n, 3), "wilson95": [round(low, 3), round(high, 3)]}
        print(f"{name:40s} {k:4d}/{n} = {k / n:.3f}  [{low:.3f}, {high:.3f}]")
    only_llm = sum(a == g != b for a, b, g in zip(llm, keywords, gold, strict=True))
    only_kw = sum(b == g != a for a, b, g in zip(llm, keywords, gold, strict=True))
    print(f"right by the LLM only: {only_llm}; by the keywords only: {only_kw}")
    print(f"data: {path} ({n} problems), prompt v{args.prompt_version}")
    print(f"replies naming no category (keyword fallback): {categorizer.stats.unparsed} of {categorizer.stats.asked}")
    print(f"LLM wall time: {seconds:.0f} s ({seconds / max(n, 1):.2f} s per problem)")
    confusion = Counter((g, p) for g, p in zip(gold, llm, strict=True) if g != p)
    print("most common LLM confusions (true -> predicted):",
          ", ".join(f"{g} -> {p}: {c}" for (g, p), c in confusion.most_common(6)))
    if args.out:
        record = {"target": target.identity, "prompt_version": args.prompt_version, "data": str(path),
                  "per_subject": args.per_subject, "figures": figures,
                  "right_by_llm_only": only_llm, "right_by_keywords_only": only_kw,
                  "unparsed": categorizer.stats.unparsed, "seconds": round(seconds, 1),
                  "predictions": [{"unique_id": r.get("unique_id"), "subject": g, "keywords": k, "llm": p,
                                   "reply": reply} for r, g, k, p, reply
                                  in zip(rows, gold, keywords, llm, categorizer.stats.replies, strict=True)]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
