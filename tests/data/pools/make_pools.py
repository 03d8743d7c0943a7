"""Cut the small training-pool fixture in this folder from the full pools.

    python tests/data/pools/make_pools.py /path/to/data     # a folder laid out as MEMCOLLAB_DATA_DIR

From each file the first 10 rows, then, per source (MATH train, GSM8K train, MBPP
train+validation+prompt) and task category, rows in file order until the category has 4; plus
every MBPP training row whose text repeats an evaluation problem (so the exclusion rule has work
to do). Rows are copied unchanged, each into the file it came from, in the original order. With
seed 1234 the tiny pool (2 problems per source) drawn from this holds two problems of one
category, as it does from the full pools, so near-duplicate lessons get merged in the tests.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from memcollab_eval.adapters import get_spec
from memcollab_eval.construct.pools import POOL_SOURCES, categorized, eval_texts, normalise

PER_CATEGORY = 4
HEAD = 10
HERE = Path(__file__).resolve().parent


def main(source_dir: str) -> None:
    src = Path(source_dir)
    evals = eval_texts(str(src))
    for source, (benchmark, files) in POOL_SOURCES.items():
        spec = get_spec(benchmark)
        seen: Counter[str] = Counter()
        for rel in files:
            lines = (src / rel).read_text(encoding="utf-8").splitlines(keepends=True)
            kept = []
            for i, line in enumerate(lines):
                row = json.loads(line)
                if source == "math_train":
                    row = {**row, "subject": row.get("subject", row.get("type", ""))}
                pid = spec.problem_id(row, split="train")
                category = categorized(source, pid, row).category
                leaks = normalise(spec.text(row)) in evals
                if leaks or i < HEAD or seen[category] < PER_CATEGORY:
                    kept.append(line)
                    seen[category] += not leaks
            (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
            (HERE / rel).write_text("".join(kept), encoding="utf-8")
            print(f"{rel}: {len(kept)} of {len(lines)} rows")


if __name__ == "__main__":
    main(sys.argv[1])
