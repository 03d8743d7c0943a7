"""Calibrate the embedding ranker's abstention threshold, and compare the rankers, on training problems.

Training problems only (MATH train, GSM8K train, MBPP train from the data folder; never an
evaluation set). The bank is every lesson committed in memcollab_eval/banks/ (deduplicated by
text): the kind of entries the threshold will face. Each training problem is a query over the
full bank (no category, no model filter), and the labelled check is whether the top entry
shares the problem's category: MATH's own subject label for MATH train; Prealgebra for GSM8K
(its word problems are Prealgebra in this taxonomy); for MBPP, which has no label, the category
the keyword categorizer gives the problem (the one task-aware retrieval filters on).

The threshold is the cosine t that maximises the decision accuracy "keep the top entry when
its score >= t and it fits, abstain when it scores < t and it does not fit" over all training
queries pooled, rounded to two decimals (ties: the lower t). It is written into
memcollab_eval/embedding.py (EncoderSpec.min_score) by hand, with the figures printed here.

Run: python scripts/calibrate_retrieval.py [--data-dir DIR (default $MEMCOLLAB_DATA_DIR)] [--per-subject 60] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from memcollab_eval.bank.store import BankManifest, MemoryBank, load_bank
from memcollab_eval.categorize import MATH_SUBJECTS, categorize
from memcollab_eval.retrieve import RetrievalConfig, Retriever

REPO = Path(__file__).resolve().parents[1]


def committed_lessons() -> MemoryBank:
    seen, entries = set(), []
    for folder in sorted((REPO / "memcollab_eval" / "banks").iterdir()):
        if not (folder / "entries.jsonl").is_file():
            continue
        for e in load_bank(folder).entries:
            key = (e.enforce.strip().lower(), e.avoid.strip().lower())
            if key not in seen:
                seen.add(key)
                entries.append(e)
    manifest = BankManifest(name="committed-lessons", version=1, sha256="0" * 64, n_entries=len(entries),
                            sources=["memcollab_eval/banks"], summarizer="", config={})
    return MemoryBank(manifest, tuple(entries))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_queries(data: Path, per_subject: int, n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """benchmark -> [(problem text, its category label)]"""
    rng = random.Random(seed)
    math = read(data / "math_train" / "train.jsonl")
    rng.shuffle(math)
    picked = []
    for subject in MATH_SUBJECTS:
        picked += [(r["problem"], subject) for r in math if r["type"] == subject][:per_subject]
    gsm = read(data / "gsm8k" / "train.jsonl")
    rng.shuffle(gsm)
    mbpp = read(data / "mbpp" / "train.jsonl")
    rng.shuffle(mbpp)
    return {
        "math_train": picked,
        "gsm8k_train": [(r["question"], "Prealgebra") for r in gsm[:n]],
        "mbpp_train": [(r["text"], categorize(r["text"], domain="code", benchmark="mbpp").category) for r in mbpp[:n]],
    }


def top1(bank: MemoryBank, ranker: str, queries: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, float]:
    """(top score, top entry fits?) per query, and seconds per query (embedding: batched)."""
    cfg = RetrievalConfig(ranker=ranker, top_k=1, use_categories=False, model_filter=False, min_score=-1.0)
    retriever = Retriever(bank, cfg, "any")
    start = time.perf_counter()
    retriever.prepare([(text, None) for text, _ in queries])
    scores, fits = [], []
    for text, label in queries:
        got = retriever.retrieve(text, category=None)
        scores.append(got[0].score if got else -1.0)
        fits.append(bool(got) and got[0].entry.category == label)
    return np.asarray(scores), np.asarray(fits), (time.perf_counter() - start) / len(queries)


def best_threshold(scores: np.ndarray, fits: np.ndarray) -> tuple[float, float]:
    grid = np.round(np.arange(-0.2, 1.0, 0.01), 2)
    accuracy = [float(np.mean(np.where(scores >= t, fits, ~fits))) for t in grid]
    i = int(np.argmax(accuracy))
    return float(grid[i]), accuracy[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MEMCOLLAB_DATA_DIR"),
                        help="training pools (math_train/, gsm8k/, mbpp/ train files; not shipped with the package); "
                             "default $MEMCOLLAB_DATA_DIR")
    parser.add_argument("--per-subject", type=int, default=60, help="MATH train problems per subject")
    parser.add_argument("--n", type=int, default=200, help="GSM8K / MBPP train problems")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bank = committed_lessons()
    if not args.data_dir:
        parser.error("the calibration reads training problems, which are not shipped: pass --data-dir DIR or set "
                     "MEMCOLLAB_DATA_DIR (a folder with math_train/train.jsonl, gsm8k/train.jsonl, mbpp/train.jsonl)")
    queries = training_queries(Path(args.data_dir), args.per_subject, args.n, args.seed)
    print(f"bank: {len(bank.entries)} distinct committed lessons; queries: "
          + ", ".join(f"{k} {len(v)}" for k, v in queries.items()) + "\n")
    print("| ranker | " + " | ".join(f"top entry fits: {k}" for k in queries) + " | ms/query |")
    print("| --- |" + " ---: |" * (len(queries) + 1))
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ranker in ("tfidf", "bm25", "embedding"):
        cells, seconds = [], []
        per = {}
        for name, qs in queries.items():
            s, f, sec = top1(bank, ranker, qs)
            per[name] = (s, f)
            cells.append(f"{f.mean():.3f}")
            seconds.append(sec)
        pooled[ranker] = (np.concatenate([per[k][0] for k in queries]), np.concatenate([per[k][1] for k in queries]))
        print(f"| {ranker} | " + " | ".join(cells) + f" | {1000 * float(np.mean(seconds)):.1f} |")
        if ranker == "embedding":
            per_embedding = per
    scores, fits = pooled["embedding"]
    t, acc = best_threshold(scores, fits)
    kept = scores >= t
    print(f"\nembedding threshold: min_score = {t:.2f} (decision accuracy {acc:.3f} on {len(scores)} training queries; "
          f"never abstaining: {fits.mean():.3f})")
    print(f"kept {kept.mean():.1%} of top entries; of those kept {fits[kept].mean():.1%} fit; "
          f"of those dropped {(~fits[~kept]).mean():.1%} did not fit")
    for name, (s, f) in per_embedding.items():
        k = s >= t
        print(f"  {name}: abstains on {1 - k.mean():.1%}; kept top entries that fit {f[k].mean() if k.any() else 0:.1%}"
              f"; median top score {np.median(s):.2f}")


if __name__ == "__main__":
    main()
