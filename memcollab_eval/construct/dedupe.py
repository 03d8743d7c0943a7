"""Near-duplicate merging: a summarizer often restates the same lesson for similar problems.

Within one category, an entry whose TF-IDF cosine similarity to an earlier kept entry is at
or above the threshold is dropped (the earlier one stays, so the result is deterministic).
"""

from __future__ import annotations

from collections import defaultdict

from sklearn.feature_extraction.text import TfidfVectorizer


def drop_near_duplicates(entries: list[dict], threshold: float) -> tuple[list[dict], int]:
    """Return (kept entries in their original order, number dropped)."""
    if threshold >= 1.0 or len(entries) < 2:
        return list(entries), 0
    texts = [f"{e['enforce']} {e['avoid']}" for e in entries]
    matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    kept_by_category: dict[str, list[int]] = defaultdict(list)
    keep = []
    for i, entry in enumerate(entries):
        earlier = kept_by_category[entry["category"]]
        if earlier and (matrix[earlier] @ matrix[i].T).max() >= threshold:
            continue
        earlier.append(i)
        keep.append(i)
    return [entries[i] for i in keep], len(entries) - len(keep)
