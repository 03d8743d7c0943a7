"""Pick the few memory entries to prepend to one task (MemCollab's retrieval step).

Screen, filter, then rank. The screen (memcollab_eval/bank/governance.py) first drops the entries this
run may not retrieve (scopes, policy, lifecycle), before anything below is built, so no ranker, ablation
or selector ever sees them. Then keep entries of the task's category that involve the target model (as the
preferred or the unpreferred side of the pair they were distilled from), score them by
relevance to the problem text (TF-IDF or BM25 over words, or the cosine of sentence
embeddings: ``ranker=embedding``, memcollab_eval/embedding.py), add a small bonus for the
task's subcategory, drop weak matches and keep the top k. With ``selector=llm`` the target
model itself is shown the best ``llm_candidates`` and picks up to k of them, or none
(prompting-based retrieval, memcollab_eval/retrieval_llm.py). An empty result is a
deliberate abstention: the caller counts it rather than padding the prompt with unrelated
lessons.

Evaluation calls this once per problem for thousands of problems, so everything that does
not depend on the query (vectorizer, idf, per-category candidate postings, the bank's
embeddings) is computed at construction; a lexical query is one tokenization plus a few
numpy gathers over the candidates' postings of the query's terms. :meth:`Retriever.prepare`
takes all queries of a run at once: the embedding ranker encodes them in batches and the
LLM selector asks the model about all of them in one ``generate_until`` call.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from memcollab_eval.bank.fields import FieldProblem, check_name, parse_time
from memcollab_eval.bank.governance import (
    ACCESS_REASONS,
    LIFECYCLE_REASONS,
    REASONS,
    Access,
    access_for,
    is_governed,
    screen,
)
from memcollab_eval.bank.store import MemoryBank, MemoryEntry
from memcollab_eval.categorize import GENERAL, Category
from memcollab_eval.categorize_llm import KINDS as CATEGORIZER_KINDS
from memcollab_eval.embedding import DEFAULT_ENCODER, ENCODERS, load_encoder
from memcollab_eval.retrieval_llm import EntryChooser

RANKERS = ("tfidf", "bm25", "embedding")
SELECTORS = ("score", "llm")
CATEGORIZERS = CATEGORIZER_KINDS  # categorize.py's rules | categorize_llm.py's model
LEXICAL_MIN_SCORE = 0.05  # tfidf and bm25 (both normalized to [0, 1])
MEMORY_HEADER = "Lessons from past solutions to similar problems (apply those that fit):"
_TOKEN = re.compile(r"[a-z][a-z0-9]+")


@dataclass(frozen=True)
class RetrievalConfig:
    """``min_score`` applies to the final score (relevance + subcategory bonus), which lies
    in [0, 1 + subcategory_bonus] for the lexical rankers (BM25 is normalized, see _BM25Index)
    and in [-1, 1 + subcategory_bonus] for the embedding ranker (cosine similarity). ``None``
    (the default) means the ranker's own threshold: 0.05 for tfidf and bm25, and for the
    embedding ranker the encoder's threshold calibrated on training problems
    (``EncoderSpec.min_score``); it is resolved here, so ``config.min_score`` is always a number.

    ``selector``: ``score`` keeps the top k by score; ``llm`` shows the target model the
    ``llm_candidates`` best entries (those at or above ``min_score``) and keeps the ones it
    picks, at most k, possibly none; the Retriever then needs an ``EntryChooser``."""

    top_k: int = 3
    use_categories: bool = True
    model_filter: bool = True
    min_score: Optional[float] = None
    ranker: str = "tfidf"  # "tfidf" | "bm25" | "embedding"
    subcategory_bonus: float = 0.05
    encoder: str = DEFAULT_ENCODER  # ranker=embedding: a name from memcollab_eval.embedding.ENCODERS
    selector: str = "score"  # "score" | "llm"
    llm_candidates: int = 8  # selector=llm: how many of the best-scored entries the model is shown
    # Who puts the query into a category (use_categories): the keyword rules, or a model (categorize_llm);
    # categorizer_model: a target config name, None = the model that tagged the bank, else the target
    categorizer: str = "keywords"
    categorizer_model: Optional[str] = None
    # Access and lifecycle (bank/governance.py): who retrieves, and when validity is judged (None: now)
    principal: Optional[str] = None
    as_of: Optional[str] = None

    def __post_init__(self) -> None:
        """Refuse settings that would make retrieval silently return nothing (or everything); the
        messages name the keys as the evaluate command spells them (``retrieval.top_k``)."""
        if self.ranker not in RANKERS:
            raise ValueError(f"retrieval.ranker must be one of {RANKERS}, got {self.ranker!r}")
        if self.selector not in SELECTORS:
            raise ValueError(f"retrieval.selector must be one of {SELECTORS}, got {self.selector!r}")
        if self.categorizer not in CATEGORIZERS:
            raise ValueError(f"retrieval.categorizer must be one of {CATEGORIZERS}, got {self.categorizer!r}")
        if self.categorizer_model is not None and self.categorizer != "llm":
            raise ValueError("retrieval.categorizer_model is set but retrieval.categorizer is "
                             f"{self.categorizer!r}: it names the model of retrieval.categorizer=llm")
        if self.encoder not in ENCODERS:
            raise ValueError(f"retrieval.encoder must be one of {sorted(ENCODERS)}, got {self.encoder!r}")
        if isinstance(self.llm_candidates, bool) or not isinstance(self.llm_candidates, int) \
                or self.llm_candidates < 1:
            raise ValueError(f"retrieval.llm_candidates must be an integer >= 1, got {self.llm_candidates!r}")
        try:
            if self.principal is not None:
                check_name(self.principal, "retrieval.principal")
            if self.as_of is not None:
                parse_time(self.as_of)
        except FieldProblem as exc:
            raise ValueError(str(exc) if str(exc).startswith("retrieval.") else f"retrieval.as_of: {exc}") from None
        if self.min_score is None:  # the ranker's own threshold
            default = ENCODERS[self.encoder].min_score if self.ranker == "embedding" else LEXICAL_MIN_SCORE
            object.__setattr__(self, "min_score", default)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"retrieval.top_k must be an integer >= 0 (0 = never retrieve), got {self.top_k!r}")
        for key in ("min_score", "subcategory_bonus"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"retrieval.{key} must be a finite number, got {value!r} (a NaN compares false "
                                 "with every score, so retrieval would abstain on every problem)")
        if self.subcategory_bonus < 0:
            raise ValueError(f"retrieval.subcategory_bonus must be >= 0, got {self.subcategory_bonus!r}")
        if self.min_score > 1.0 + self.subcategory_bonus:
            raise ValueError(f"retrieval.min_score={self.min_score!r} is above the highest possible score "
                             f"{1.0 + self.subcategory_bonus:g} (relevance <= 1 plus subcategory_bonus), so retrieval "
                             "would abstain on every problem")


@dataclass(frozen=True)
class Retrieved:
    entry: MemoryEntry
    score: float


@dataclass(frozen=True)
class Filtered:
    """What the access and lifecycle screen removed from one problem's candidates (the entries that
    would have passed the category and model filters): a count per reason, and the ids of the
    lifecycle removals (at most ``MAX_LOGGED_IDS``; access removals are counted, never named, since
    a principal's own run record should not list what it may not see)."""

    counts: dict[str, int]
    lifecycle_ids: tuple[str, ...] = ()

    @property
    def access(self) -> int:
        return sum(self.counts.get(r, 0) for r in ACCESS_REASONS)

    @property
    def lifecycle(self) -> int:
        return sum(self.counts.get(r, 0) for r in LIFECYCLE_REASONS)


MAX_LOGGED_IDS = 20


def analyze(text: str) -> list[str]:
    """Lower-case word tokens without English stop words, with plurals folded ("fractions" ->
    "fraction") so short lessons still meet problem wording. Shared by both rankers."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in ENGLISH_STOP_WORDS:
            continue
        if len(tok) > 4 and tok.endswith("ies"):
            tok = tok[:-3] + "y"
        elif len(tok) > 3 and tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
            tok = tok[:-1]
        out.append(tok)
    return out


def entry_text(entry: MemoryEntry) -> str:
    """What an entry is matched on: its lesson plus its subcategory label."""
    return f"{entry.enforce} {entry.avoid} {entry.subcategory}"


class _TfidfIndex:
    """scikit-learn TF-IDF (sublinear tf, l2 rows) fitted on the bank; cosine = dot product.
    The query vector is built by hand from the fitted vocabulary/idf, which is exactly what
    ``vectorizer.transform`` computes but ~50x faster for one short text."""

    def __init__(self, docs: list[str]) -> None:
        self.vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, norm="l2")
        self.matrix = sparse.csr_matrix(self.vectorizer.fit_transform(docs), dtype=np.float64)
        self.vocab: dict[str, int] = self.vectorizer.vocabulary_
        self.idf = self.vectorizer.idf_.astype(np.float64)

    def query(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(t for t in analyze(text) if t in self.vocab)
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        ids = np.fromiter((self.vocab[t] for t in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights = (1.0 + np.log(tf)) * self.idf[ids]
        return ids, weights / np.linalg.norm(weights)


class _BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75, Lucene's non-negative idf) as a precomputed term-weight
    matrix. The score is divided by the query's best possible score (sum of idf*(k1+1) over
    its distinct in-vocabulary terms), so it lies in [0, 1] and ``min_score`` means the same
    for both rankers."""

    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        tokenized = [analyze(d) for d in docs]
        self.vocab = {t: i for i, t in enumerate(sorted({t for toks in tokenized for t in toks}))}
        rows, cols, tfs = [], [], []
        for r, toks in enumerate(tokenized):
            for term, tf in sorted(Counter(toks).items()):
                rows.append(r)
                cols.append(self.vocab[term])
                tfs.append(tf)
        n_docs, n_terms = len(docs), len(self.vocab)
        tf_arr = np.asarray(tfs, dtype=np.float64)
        col_arr = np.asarray(cols, dtype=np.int64)
        df = np.bincount(col_arr, minlength=n_terms).astype(np.float64)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        lengths = np.asarray([len(t) for t in tokenized], dtype=np.float64)
        norm = k1 * (1.0 - b + b * lengths / max(lengths.mean() if n_docs else 1.0, 1e-9))
        row_arr = np.asarray(rows, dtype=np.int64)
        data = self.idf[col_arr] * tf_arr * (k1 + 1.0) / (tf_arr + norm[row_arr])
        self.matrix = sparse.csr_matrix((data, (row_arr, col_arr)), shape=(n_docs, n_terms))
        self.k1 = k1

    def query(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        terms = sorted({t for t in analyze(text) if t in self.vocab})
        if not terms:
            return np.empty(0, dtype=np.int64), np.empty(0)
        ids = np.fromiter((self.vocab[t] for t in terms), dtype=np.int64, count=len(terms))
        best = float(self.idf[ids].sum() * (self.k1 + 1.0))
        return ids, np.full(len(ids), 1.0 / best) if best > 0 else np.zeros(len(ids))


class _DenseIndex:
    """The bank's sentence embeddings (unit rows, so cosine = dot product), computed once per
    bank and encoder in a process (:func:`_bank_vectors`), and a cache of query embeddings
    filled in batches by :meth:`prepare` (one text at a time otherwise)."""

    def __init__(self, docs: list[str], encoder: str) -> None:
        self.encoder = load_encoder(encoder)
        self.matrix = _bank_vectors(encoder, tuple(docs))
        self._queries: dict[str, np.ndarray] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if missing:
            self._queries.update(zip(missing, self.encoder.encode(missing), strict=True))

    def query(self, text: str) -> np.ndarray:
        vector = self._queries.get(text)
        if vector is None:
            vector = self._queries[text] = self.encoder.encode([text])[0]
        return vector


@lru_cache(maxsize=8)
def _bank_vectors(encoder: str, docs: tuple[str, ...]) -> np.ndarray:
    """Embeddings of a bank's entry texts: every task twin of a run (and every benchmark) shares
    them. A text that several entries share (one lesson distilled from several pairs) is embedded once."""
    distinct = list(dict.fromkeys(docs))
    where = {text: i for i, text in enumerate(distinct)}
    vectors = load_encoder(encoder).encode(distinct)[[where[text] for text in docs]]
    vectors.setflags(write=False)
    return vectors


def _build_index(ranker: str, docs: list[str], encoder: str = DEFAULT_ENCODER):
    """The ranker's index over all entries, or None when there is nothing to index (no entry,
    or for the lexical rankers no indexable word)."""
    if ranker == "embedding":
        return _DenseIndex(docs, encoder) if docs else None
    try:
        index = _TfidfIndex(docs) if ranker == "tfidf" else _BM25Index(docs)
    except ValueError:  # scikit-learn: "empty vocabulary"
        return None
    return index if index.vocab else None


class _Candidates:
    """One candidate set (entries of one category that involve the target model) with its
    postings in CSC form: column t lists the candidates containing term t."""

    def __init__(self, rows: np.ndarray, matrix: sparse.csr_matrix, subcategory_codes: np.ndarray) -> None:
        self.rows = rows
        sub = matrix[rows].tocsc()
        sub.sort_indices()
        self.indptr, self.indices, self.data = sub.indptr, sub.indices, sub.data
        self.subcategory_codes = subcategory_codes[rows]

    def scores(self, query: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        term_ids, term_weights = query
        n = len(self.rows)
        if len(term_ids) == 0:
            return np.zeros(n)
        starts, ends = self.indptr[term_ids], self.indptr[term_ids + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(n)
        # Flat positions of every posting of every query term, without a Python loop.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        weights = self.data[offsets] * np.repeat(term_weights, lengths)
        return np.bincount(self.indices[offsets], weights=weights, minlength=n)


class _DenseCandidates:
    """One candidate set for the embedding ranker: its rows of the bank's embedding matrix."""

    def __init__(self, rows: np.ndarray, matrix: np.ndarray, subcategory_codes: np.ndarray) -> None:
        self.rows = rows
        self.matrix = matrix if len(rows) == len(matrix) else np.ascontiguousarray(matrix[rows])
        self.subcategory_codes = subcategory_codes[rows]

    def scores(self, query: np.ndarray) -> np.ndarray:
        return (self.matrix @ query).astype(np.float64)


class Retriever:
    """Retrieval over one bank for one target model identity (fixed at construction).

    ``chooser`` is the target model behind ``selector=llm`` (see retrieval_llm.LMChooser); the
    other selectors do not use it."""

    def __init__(self, bank: MemoryBank, config: RetrievalConfig, target_identity: str,
                 chooser: EntryChooser | None = None, access: Access | None = None) -> None:
        self.bank, self.config, self.target_identity = bank, config, target_identity
        self.chooser = chooser
        # Access and lifecycle first: an entry this run may not retrieve enters no index below.
        self.access = access if access is not None else access_for(config.principal, as_of=config.as_of)
        self.screen = screen(bank.entries, self.access)
        self.governed = is_governed(bank.entries) or self.access.principal is not None
        entries = tuple(bank.entries[i] for i in self.screen.kept)
        self._entries = entries
        self._index = _build_index(config.ranker, [entry_text(e) for e in entries], config.encoder)
        self._prepared: dict[tuple, list[Retrieved]] = {}  # selector=llm: answers asked for in prepare()
        # Rank of each entry's id in sorted order: integer tie-breaks instead of string compares.
        order = sorted(range(len(entries)), key=lambda i: entries[i].id)
        self._id_rank = np.empty(len(entries), dtype=np.int64)
        self._id_rank[order] = np.arange(len(entries))
        # The subcategory bonus is keyed on (category, subcategory): "percentages" under Algebra
        # is not the task's subcategory when the task is Prealgebra. GENERAL never earns it.
        keys = sorted({_subcat_key(e.category, e.subcategory) for e in entries} - {None})
        self._subcat_code = {k: i for i, k in enumerate(keys)}
        codes = np.asarray([self._subcat_code.get(_subcat_key(e.category, e.subcategory), -1) for e in entries],
                           dtype=np.int64)

        # Candidate sets: None = no category filter (use_categories off, or no category given).
        by_category: dict[str | None, list[int]] = {None: []}
        for i, e in enumerate(entries):
            if not config.model_filter or target_identity in (e.preferred_model, e.unpreferred_model):
                by_category[None].append(i)
                if config.use_categories:
                    by_category.setdefault(_norm(e.category), []).append(i)
        self._removed: dict[str | None, list[int]] = {None: []}  # what the screen took from each candidate set
        self._filtered: dict[str | None, Filtered] = {}
        for i in sorted(self.screen.removed):
            e = bank.entries[i]
            if not config.model_filter or target_identity in (e.preferred_model, e.unpreferred_model):
                self._removed[None].append(i)
                if config.use_categories:
                    self._removed.setdefault(_norm(e.category), []).append(i)
        self._groups: dict[str | None, _Candidates | _DenseCandidates] = {}
        group_type = _DenseCandidates if isinstance(self._index, _DenseIndex) else _Candidates
        if self._index is not None:
            for key, rows in by_category.items():
                if rows:
                    self._groups[key] = group_type(np.asarray(rows, dtype=np.int64), self._index.matrix, codes)

    def candidate_count(self, category: Category | None) -> int:
        """How many entries pass the category/model filters (0 means retrieve() abstains)."""
        group = self._groups.get(self._group_key(category))
        return 0 if group is None else len(group.rows)

    def filtered(self, category: Category | None) -> Filtered:
        """What the access and lifecycle screen removed from this problem's candidate set (it depends on
        the candidate set only, so it is worked out once per category)."""
        key = self._group_key(category)
        if key not in self._filtered:
            self._filtered[key] = self._count_removed(key)
        return self._filtered[key]

    def _count_removed(self, key: str | None) -> Filtered:
        removed = self._removed.get(key, [])
        counts = dict.fromkeys(REASONS, 0)
        ids = []
        for i in removed:
            reason = self.screen.removed[i]
            counts[reason] += 1
            if reason in LIFECYCLE_REASONS and len(ids) < MAX_LOGGED_IDS:
                ids.append(self.bank.entries[i].id)
        return Filtered(counts, tuple(ids))

    def _group_key(self, category: Category | None) -> str | None:
        return _norm(category.category) if (self.config.use_categories and category is not None) else None

    def retrieve(self, text: str, *, category: Category | None) -> list[Retrieved]:
        """Top-k entries for ``text``, best first; ties broken by entry id. ``[]`` when no entry
        passes the filters or none scores at least ``min_score``. With ``selector=llm``: the
        entries the model picked among the best ``llm_candidates`` (in its order), ``[]`` when
        it picked none."""
        key = _query_key(text, category)
        if key in self._prepared:
            return list(self._prepared[key])
        shortlist = self.rank(text, category=category)
        if self.config.selector == "llm" and shortlist:
            return self._choose([text], [shortlist])[0]
        return shortlist

    def prepare(self, queries: Sequence[tuple[str, Category | None]]) -> None:
        """Do the per-query work of a whole run at once: embed all query texts in batches
        (``ranker=embedding``) and, with ``selector=llm``, ask the model about every query in
        one call. Later :meth:`retrieve` calls for these queries return the same results they
        would have computed one by one."""
        if self.config.top_k == 0 or not self._groups:
            return
        live = [(t, c) for t, c in queries if self._group_key(c) in self._groups]
        if isinstance(self._index, _DenseIndex):
            self._index.prepare([t for t, _ in live])
        if self.config.selector != "llm":
            return
        pending: dict[tuple, tuple[str, list[Retrieved]]] = {}
        for text, category in live:
            key = _query_key(text, category)
            if key not in self._prepared and key not in pending:
                pending[key] = (text, self.rank(text, category=category))
        asked = [(k, t, s) for k, (t, s) in pending.items() if s]
        picked = self._choose([t for _, t, _ in asked], [s for _, _, s in asked]) if asked else []
        self._prepared.update({k: [] for k, (_, s) in pending.items() if not s})
        self._prepared.update({k: p for (k, _, _), p in zip(asked, picked, strict=True)})

    def rank(self, text: str, *, category: Category | None, limit: int | None = None) -> list[Retrieved]:
        """The best entries by score (at most ``limit``, default: top_k, or llm_candidates
        under ``selector=llm``), at or above ``min_score``, best first, ties by entry id."""
        group = self._groups.get(self._group_key(category))
        if group is None or self.config.top_k == 0:
            return []
        if limit is None:
            limit = self.config.llm_candidates if self.config.selector == "llm" else self.config.top_k
        scores = group.scores(self._index.query(text))
        if category is not None and self.config.subcategory_bonus:
            code = self._subcat_code.get(_subcat_key(category.category, category.subcategory))
            if code is not None:
                scores = scores + self.config.subcategory_bonus * (group.subcategory_codes == code)
        # Round away float noise so equal scores tie exactly and fall back to id order.
        scores = np.round(scores, 9 if isinstance(group, _Candidates) else 6)
        keep = np.flatnonzero(scores >= self.config.min_score)
        if len(keep) == 0:
            return []
        if len(keep) > 4 * limit:  # cut to the k best scores (and their ties) first
            kth = np.partition(scores[keep], len(keep) - limit)[len(keep) - limit]
            keep = keep[scores[keep] >= kth]
        rows = group.rows[keep]
        picked = np.lexsort((self._id_rank[rows], -scores[keep]))[:limit]
        return [Retrieved(self._entries[rows[j]], float(scores[keep[j]])) for j in picked]

    def _choose(self, texts: list[str], shortlists: list[list[Retrieved]]) -> list[list[Retrieved]]:
        if self.chooser is None:
            raise RuntimeError("retrieval.selector=llm needs the target model to pick entries: build the Retriever "
                               "with chooser=LMChooser(lm) (the evaluate job does)")
        k = self.config.top_k
        picks = self.chooser.choose(texts, [[r.entry for r in s] for s in shortlists], k)
        if len(picks) != len(texts):
            raise RuntimeError(f"the entry chooser answered {len(picks)} times for {len(texts)} problems")
        out = []
        for shortlist, pick in zip(shortlists, picks, strict=True):
            chosen = list(dict.fromkeys(i for i in pick if 0 <= i < len(shortlist)))[:k]
            out.append([shortlist[i] for i in chosen])
        return out


def _query_key(text: str, category: Category | None) -> tuple:
    return (text, None if category is None else (category.category, category.subcategory))


def _norm(category: str) -> str:
    """Category labels compare case- and space-insensitively ("algebra" == "Algebra ")."""
    return " ".join(category.split()).casefold()


def _subcat_key(category: str, subcategory: str) -> tuple[str, str] | None:
    return None if subcategory in ("", GENERAL) else (_norm(category), subcategory)


def render_memory(items: Sequence[Retrieved]) -> str:
    """The block prepended to a prompt: ``""`` when nothing was retrieved, else a header line
    and one ``- enforce ...; avoid ...`` line per entry, best first (no trailing newline)."""
    if not items:
        return ""
    return "\n".join([MEMORY_HEADER, *(f"- {item.entry.render()}" for item in items)])


__all__ = ["MAX_LOGGED_IDS", "MEMORY_HEADER", "RANKERS", "SELECTORS", "Filtered", "RetrievalConfig", "Retrieved",
           "Retriever", "analyze", "entry_text", "render_memory"]
