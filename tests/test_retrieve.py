"""Retrieval on the hand-made fixture bank (tests/data/bank_fixture) and the demo bank.

Fixture layout (model pairs are preferred/unpreferred):
  alg-1 Algebra/quadratics a/b, alg-2 Algebra/functions a/c, alg-3 Algebra/quadratics b/c,
  alg-4 Algebra/linear equations c/b, geo-1 Geometry/circles a/b, geo-2 Geometry/triangles b/a,
  pre-1 Prealgebra/percentages a/b, tie-b + tie-a Prealgebra/money a/b (identical text, file
  order b then a), str-1 string manipulation/substrings a/b, str-2 .../case and formatting b/c.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from memcollab_eval.bank.store import MemoryEntry, load_bank
from memcollab_eval.categorize import TAXONOMY, Category
from memcollab_eval.retrieve import (
    MEMORY_HEADER,
    RetrievalConfig,
    Retrieved,
    Retriever,
    analyze,
    entry_text,
    render_memory,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "bank_fixture"
DEMO = REPO / "memcollab_eval" / "banks" / "demo_handmade"
QUADRATIC = "Solve the quadratic equation and check each root: which roots are extraneous?"
ALGEBRA_QUAD = Category("Algebra", "quadratics")


@pytest.fixture(scope="module")
def bank():
    return load_bank(FIXTURE)


def ids(items: list[Retrieved]) -> list[str]:
    return [r.entry.id for r in items]


@pytest.mark.parametrize("ranker", ["tfidf", "bm25"])
def test_category_filter_keeps_only_the_tasks_category(bank, ranker):
    r = Retriever(bank, RetrievalConfig(ranker=ranker, top_k=10, min_score=0.0), "model_a")
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    assert got and {x.entry.category for x in got} == {"Algebra"}
    assert ids(got)[0] == "alg-1"


def test_category_without_entries_abstains(bank):
    r = Retriever(bank, RetrievalConfig(min_score=0.0), "model_a")
    assert r.retrieve(QUADRATIC, category=Category("Precalculus", "trigonometry")) == []
    assert r.candidate_count(Category("Precalculus", "trigonometry")) == 0
    assert r.candidate_count(ALGEBRA_QUAD) == 2  # alg-1, alg-2 involve model_a


def test_category_label_comparison_ignores_case_and_spaces(bank):
    r = Retriever(bank, RetrievalConfig(), "model_a")
    assert ids(r.retrieve(QUADRATIC, category=Category(" algebra ", "quadratics")))[0] == "alg-1"


def test_model_filter_on_keeps_entries_involving_the_target(bank):
    r = Retriever(bank, RetrievalConfig(top_k=10, min_score=0.0), "model_a")
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    assert set(ids(got)) == {"alg-1", "alg-2"}
    # model_a as the *unpreferred* side also counts (geo-2 is b/a).
    geo = r.retrieve("right angle triangle", category=Category("Geometry", "triangles"))
    assert "geo-2" in ids(geo)


def test_model_filter_off_uses_every_entry_of_the_category(bank):
    r = Retriever(bank, RetrievalConfig(top_k=10, min_score=0.0, model_filter=False), "model_a")
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    assert set(ids(got)) == {"alg-1", "alg-2", "alg-3", "alg-4"}


def test_unknown_target_model_gets_nothing_with_the_filter(bank):
    r = Retriever(bank, RetrievalConfig(min_score=0.0), "model_z")
    assert r.retrieve(QUADRATIC, category=ALGEBRA_QUAD) == []
    assert r.retrieve(QUADRATIC, category=None) == []


def test_categories_off_searches_the_whole_bank(bank):
    text = "What is the area of a circle whose diameter is given? Use the radius."
    on = Retriever(bank, RetrievalConfig(top_k=10), "model_a").retrieve(text, category=ALGEBRA_QUAD)
    off = Retriever(bank, RetrievalConfig(top_k=10, use_categories=False), "model_a").retrieve(
        text, category=ALGEBRA_QUAD)
    assert "geo-1" not in ids(on)
    assert ids(off)[0] == "geo-1"


def test_no_category_given_means_no_category_filter(bank):
    r = Retriever(bank, RetrievalConfig(top_k=10), "model_a")
    got = r.retrieve("count overlapping occurrences of a substring", category=None)
    assert ids(got)[0] == "str-1"


def test_ranking_order_and_scores(bank):
    r = Retriever(bank, RetrievalConfig(top_k=10, min_score=0.0, model_filter=False), "model_a")
    got = r.retrieve("factor the quadratic and check each root in the original equation", category=ALGEBRA_QUAD)
    scores = [x.score for x in got]
    assert scores == sorted(scores, reverse=True)
    assert ids(got)[:2] == ["alg-1", "alg-3"]  # both quadratics; alg-1 shares more terms
    assert all(isinstance(s, float) for s in scores)


def test_subcategory_bonus_is_small_and_deterministic(bank):
    cfg = RetrievalConfig(top_k=10, min_score=0.0, model_filter=False)
    r = Retriever(bank, cfg, "model_a")
    # No word of this text occurs in the bank: only the subcategory bonus separates entries.
    got = r.retrieve("zebra xylophone", category=ALGEBRA_QUAD)
    bonus = {x.entry.id: x.score for x in got if x.score > 0}
    assert bonus == {"alg-1": cfg.subcategory_bonus, "alg-3": cfg.subcategory_bonus}
    # "general" never earns the bonus.
    got = r.retrieve("zebra xylophone", category=Category("Algebra", "general"))
    assert all(x.score == 0.0 for x in got)


def test_top_k(bank):
    for k in (0, 1, 2, 3):
        r = Retriever(bank, RetrievalConfig(top_k=k, min_score=0.0, model_filter=False), "model_a")
        assert len(r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)) == k
    assert RetrievalConfig().top_k == 3


def test_min_score_abstention(bank):
    r = Retriever(bank, RetrievalConfig(), "model_a")
    assert r.retrieve("zebra xylophone", category=Category("Algebra", "functions")) != []  # bonus 0.05 >= 0.05
    assert r.retrieve("zebra xylophone", category=Category("Algebra", "general")) == []
    strict = Retriever(bank, RetrievalConfig(min_score=0.99), "model_a")
    assert strict.retrieve(QUADRATIC, category=ALGEBRA_QUAD) == []
    assert all(x.score >= 0.05 for x in r.retrieve(QUADRATIC, category=None))


def test_ties_break_by_entry_id(bank):
    r = Retriever(bank, RetrievalConfig(top_k=2), "model_a")
    got = r.retrieve("separate income and spending totals", category=Category("Prealgebra", "money"))
    assert ids(got) == ["tie-a", "tie-b"]
    assert got[0].score == got[1].score


@pytest.mark.parametrize("ranker", ["tfidf", "bm25"])
def test_determinism(bank, ranker):
    cfg = RetrievalConfig(ranker=ranker, top_k=5, min_score=0.0, use_categories=False, model_filter=False)
    queries = [QUADRATIC, "circle radius", "percentage of the amount", "", "zebra"]
    first = [Retriever(bank, cfg, "model_a").retrieve(q, category=ALGEBRA_QUAD) for q in queries]
    r = Retriever(bank, cfg, "model_a")
    for _ in range(3):
        assert [r.retrieve(q, category=ALGEBRA_QUAD) for q in queries] == first


def test_bm25_scores_are_normalized(bank):
    r = Retriever(bank, RetrievalConfig(ranker="bm25", top_k=20, min_score=0.0, use_categories=False,
                                        model_filter=False), "model_a")
    for q in (QUADRATIC, "circle diameter radius formula", "overlapping substring occurrences count"):
        got = r.retrieve(q, category=None)
        assert got and all(0.0 <= x.score <= 1.0 + 1e-9 for x in got)
        assert max(x.score for x in got) > 0.1


def test_tfidf_query_vector_matches_sklearn_transform(bank):
    r = Retriever(bank, RetrievalConfig(), "model_a")
    index = r._index
    for text in (QUADRATIC, "roots roots roots of the circle", "nothing known here"):
        term_ids, weights = index.query(text)
        mine = np.zeros(len(index.vocab))
        mine[term_ids] = weights
        reference = index.vectorizer.transform([text]).toarray()[0]
        np.testing.assert_allclose(mine, reference, atol=1e-12)


def test_analyze_folds_plurals_and_drops_stop_words():
    assert analyze("The Fractions of the remaining quantities") == ["fraction", "remaining", "quantity"]


def test_render_memory_format(bank):
    assert render_memory([]) == ""
    r = Retriever(bank, RetrievalConfig(), "model_a")
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    text = render_memory(got)
    lines = text.split("\n")
    assert lines[0] == MEMORY_HEADER
    assert len(lines) == len(got) + 1
    for line, item in zip(lines[1:], got, strict=False):
        assert line == f"- enforce {item.entry.enforce}; avoid {item.entry.avoid}"
    assert not text.endswith("\n")


def test_config_validation():
    with pytest.raises(ValueError, match="ranker"):
        RetrievalConfig(ranker="dense")
    with pytest.raises(ValueError, match="top_k"):
        RetrievalConfig(top_k=-1)


@pytest.mark.parametrize("ranker", ["tfidf", "bm25"])
def test_empty_bank_or_no_vocabulary_abstains(ranker):
    from memcollab_eval.bank.store import BankManifest, MemoryBank

    entry = MemoryEntry(id="x", enforce="the", avoid="a", category="Algebra", subcategory="",
                        preferred_model="m", unpreferred_model="n", source_benchmark="", source_problem_id="")
    manifest = BankManifest(name="t", version=1, sha256="0" * 64, n_entries=1, sources=[], summarizer="", config={})
    for entries in ((entry,), ()):
        r = Retriever(MemoryBank(manifest, entries), RetrievalConfig(ranker=ranker, min_score=0.0), "m")
        assert r.retrieve("anything", category=None) == []
        assert r.candidate_count(None) == 0


def test_demo_bank_is_well_formed_and_abstract():
    demo = load_bank(DEMO)
    assert 30 <= len(demo.entries) <= 40
    assert "hand-made" in demo.manifest.notes.lower() or "hand" in demo.manifest.notes.lower()
    models = {"qwen25_coder_15b", "qwen25_coder_05b"}
    domains = set()
    for e in demo.entries:
        domain = next(d for d, cats in TAXONOMY.items() if e.category in cats)
        domains.add(domain)
        assert e.subcategory in TAXONOMY[domain][e.category]
        assert {e.preferred_model, e.unpreferred_model} == models
        # Abstract lessons: no numbers and no code identifiers (snake_case, calls, brackets).
        for text in (e.enforce, e.avoid):
            assert not re.search(r"\d|_|\(|\)|\[|\]", text), (e.id, text)
    assert domains == {"math", "code"}
    assert {e.category for e in demo.entries} >= set(TAXONOMY["math"])


def test_demo_bank_retrieves_for_a_word_problem():
    demo = load_bank(DEMO)
    r = Retriever(demo, RetrievalConfig(), "qwen25_coder_05b")
    text = "A shop sells pens at a fixed price each. After a discount on the whole order, what is the total cost?"
    got = r.retrieve(text, category=Category("Prealgebra", "money"))
    assert 1 <= len(got) <= 3 and all(x.entry.category == "Prealgebra" for x in got)


# ---- ranker=embedding (a deterministic stand-in encoder; the real one: tests/test_embedding.py) ----

class BagEncoder:
    """Stand-in for the sentence encoder: unit vectors of hashed word counts (``analyze``), so
    texts that share words are close. Records every batch it is asked to encode."""

    dim = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size: int = 32) -> np.ndarray:
        import zlib

        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in analyze(text):
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out


@pytest.fixture
def bag(monkeypatch):
    import memcollab_eval.retrieve as retrieve_module

    encoder = BagEncoder()
    monkeypatch.setattr(retrieve_module, "load_encoder", lambda name: encoder)
    retrieve_module._bank_vectors.cache_clear()
    yield encoder
    retrieve_module._bank_vectors.cache_clear()


def test_embedding_min_score_defaults_to_the_calibrated_threshold():
    from memcollab_eval.embedding import MINILM

    assert RetrievalConfig().min_score == 0.05
    assert RetrievalConfig(ranker="bm25").min_score == 0.05
    assert RetrievalConfig(ranker="embedding").min_score == MINILM.min_score
    assert RetrievalConfig(ranker="embedding", min_score=0.2).min_score == 0.2
    with pytest.raises(ValueError, match="encoder"):
        RetrievalConfig(ranker="embedding", encoder="no-such-model")


def test_embedding_ranker_filters_and_ranks(bank, bag):
    r = Retriever(bank, RetrievalConfig(ranker="embedding", top_k=10, min_score=0.0), "model_a")
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    assert set(ids(got)) == {"alg-1", "alg-2"}  # category + model filter as for the lexical rankers
    assert ids(got)[0] == "alg-1"
    scores = [x.score for x in got]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 0.05 for s in scores)
    full = Retriever(bank, RetrievalConfig(ranker="embedding", top_k=3, use_categories=False, model_filter=False,
                                           min_score=0.0), "model_z")
    assert ids(full.retrieve("What is the area of a circle whose diameter is given? Use the radius.",
                             category=ALGEBRA_QUAD))[0] == "geo-1"


def test_embedding_ranker_abstains_below_min_score(bank, bag):
    r = Retriever(bank, RetrievalConfig(ranker="embedding", min_score=0.99, use_categories=False), "model_a")
    assert r.retrieve("zebra xylophone", category=None) == []


def test_embedding_bank_is_embedded_once_and_queries_in_one_batch(bank, bag):
    cfg = RetrievalConfig(ranker="embedding", top_k=2, min_score=0.0, use_categories=False)
    first = Retriever(bank, cfg, "model_a")
    second = Retriever(bank, cfg, "model_b")  # another twin/benchmark of the same run: same bank vectors
    assert len(bag.calls) == 1 and bag.calls[0] == list(dict.fromkeys(entry_text(e) for e in bank.entries))  # tie-a/b once
    queries = [(QUADRATIC, None), ("circle radius", None), (QUADRATIC, None), ("percentage of the amount", None)]
    one_by_one = [Retriever(bank, cfg, "model_a").retrieve(t, category=c) for t, c in queries]
    bag.calls.clear()
    first.prepare(queries)
    assert bag.calls == [[QUADRATIC, "circle radius", "percentage of the amount"]]  # unique texts, one batch
    assert [first.retrieve(t, category=c) for t, c in queries] == one_by_one
    assert bag.calls == [[QUADRATIC, "circle radius", "percentage of the amount"]]  # no more encoding
    assert second.retrieve("circle radius", category=None)  # unprepared: encoded on its own
    assert bag.calls[-1] == ["circle radius"]


def test_embedding_empty_bank_abstains(bag):
    from memcollab_eval.bank.store import BankManifest, MemoryBank

    manifest = BankManifest(name="t", version=1, sha256="0" * 64, n_entries=0, sources=[], summarizer="", config={})
    r = Retriever(MemoryBank(manifest, ()), RetrievalConfig(ranker="embedding", min_score=0.0), "m")
    r.prepare([("anything", None)])
    assert r.retrieve("anything", category=None) == [] and r.candidate_count(None) == 0


# ---- selector=llm: the target model picks (scripted test double) ---------------------------

def scripted_chooser(rules: list[tuple[str, str]], tmp_path, default: str | None = None):
    import json

    from memcollab_eval.models.scripted import ScriptedLM
    from memcollab_eval.retrieval_llm import LMChooser

    path = tmp_path / "rules.json"
    path.write_text(json.dumps([list(r) for r in rules]))
    lm = ScriptedLM(rules=str(path), default=default)
    return LMChooser(lm, chat=True), lm


def test_llm_selector_keeps_the_models_picks_in_its_order(bank, tmp_path):
    chooser, lm = scripted_chooser([("Problem:\nSolve the quadratic", "2, 1")], tmp_path)
    cfg = RetrievalConfig(selector="llm", top_k=3, min_score=0.0, model_filter=False, llm_candidates=4)
    r = Retriever(bank, cfg, "model_a", chooser=chooser)
    shortlist = r.rank(QUADRATIC, category=ALGEBRA_QUAD)
    assert len(shortlist) == 4  # llm_candidates, not top_k
    got = r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    assert ids(got) == [shortlist[1].entry.id, shortlist[0].entry.id]
    prompt = lm.prompts[-1]
    assert prompt.startswith("<user>: ") and "at most 3" in prompt  # chat-rendered, k stated
    for i, item in enumerate(shortlist, 1):
        assert f"{i}. {item.entry.render()}" in prompt


@pytest.mark.parametrize(("reply", "expected"), [
    ("none", []), ("None of them.", []), ("I'm not sure", []), ("3", [2]), ("Lessons 4 and 4, then 9", [3]),
    ("1, 2, 3, 4", [0, 1, 2]), ("\n\n2\n", [1]),
])
def test_llm_selector_parses_replies_leniently(bank, tmp_path, reply, expected):
    chooser, _ = scripted_chooser([], tmp_path, default=reply)
    cfg = RetrievalConfig(selector="llm", top_k=3, min_score=0.0, model_filter=False, llm_candidates=4)
    r = Retriever(bank, cfg, "model_a", chooser=chooser)
    shortlist = r.rank(QUADRATIC, category=ALGEBRA_QUAD)
    assert ids(r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)) == [shortlist[i].entry.id for i in expected]
    assert chooser.stats.asked == 1
    assert chooser.stats.unparsed == (1 if reply == "I'm not sure" else 0)


def test_llm_selector_asks_once_for_all_prepared_queries(bank, tmp_path):
    chooser, lm = scripted_chooser([("circle", "1")], tmp_path, default="none")
    cfg = RetrievalConfig(selector="llm", top_k=2, model_filter=False, use_categories=False)
    r = Retriever(bank, cfg, "model_a", chooser=chooser)
    calls = []
    original = lm.generate_until
    lm.generate_until = lambda requests, disable_tqdm=False: calls.append(len(requests)) or original(requests)
    queries = [(QUADRATIC, None), ("area of a circle from its radius", None), ("zebra xylophone", None)]
    r.prepare(queries)
    assert calls == [2]  # one call; the query with no candidate above min_score is not asked
    assert r.retrieve("zebra xylophone", category=None) == []
    assert ids(r.retrieve("area of a circle from its radius", category=None)) == ["geo-1"]
    assert r.retrieve(QUADRATIC, category=None) == []  # the model said none
    assert calls == [2]


def test_llm_selector_asks_only_about_the_problems_the_run_scores(bank, tmp_path):
    """lm-eval processes a whole split before applying the run's limit, and deep-copies every task
    config: the hook must reach the run's one model (a lock inside it cannot be copied), and ask it
    about the scored docs only, not about all of them."""
    import copy
    import threading

    import datasets

    from memcollab_eval.evaluation.tasks import MemorySetup, task_config

    chooser, lm = scripted_chooser([], tmp_path, default="1")
    lm.lock = threading.Lock()  # what a real backend holds
    calls = []
    original = lm.generate_until
    lm.generate_until = lambda requests, disable_tqdm=False: calls.append(len(requests)) or original(requests)
    setup = MemorySetup(bank, RetrievalConfig(selector="llm", top_k=1, min_score=0.0, model_filter=False,
                                              use_categories=False), "model_a", chooser=chooser)
    task = copy.deepcopy(task_config("gsm8k", data_dir=None, setup=setup, evaluated=frozenset({1, 3})))
    docs = datasets.Dataset.from_list([{"question": f"{QUADRATIC} (variant {i})", "answer": "#### 1"}
                                       for i in range(6)])
    out = task["process_docs"](docs)
    assert calls == [2]  # one call, for docs 1 and 3
    assert [bool(row["memcollab_retrieved"]) for row in out] == [False, True, False, True, False, False]


def test_llm_selector_without_a_chooser_says_what_is_missing(bank):
    r = Retriever(bank, RetrievalConfig(selector="llm", min_score=0.0), "model_a")
    with pytest.raises(RuntimeError, match="chooser"):
        r.retrieve(QUADRATIC, category=ALGEBRA_QUAD)
    with pytest.raises(ValueError, match="selector"):
        RetrievalConfig(selector="vote")
    with pytest.raises(ValueError, match="llm_candidates"):
        RetrievalConfig(llm_candidates=0)


def test_retrieval_ablation_configs_compose():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from memcollab_eval.evaluation.cli import prepare_argv, register_hydra

    register_hydra()
    with initialize_config_module(config_module="memcollab_eval.conf", version_base="1.3"):
        def runtime(name):
            return OmegaConf.to_object(compose(config_name="config", overrides=prepare_argv([f"retrieval={name}"]))).retrieval_config()

        default = runtime("default")
        assert (default.ranker, default.selector, default.min_score) == ("tfidf", "score", 0.05)
        dense = runtime("embedding")
        assert dense.ranker == "embedding" and dense.use_categories and dense.model_filter
        full = runtime("embedding_full_bank")
        assert (full.ranker, full.use_categories, full.model_filter) == ("embedding", False, False)
        assert full.min_score == dense.min_score > 0.05
        prompting = runtime("prompting")
        assert (prompting.selector, prompting.ranker, prompting.use_categories, prompting.model_filter) == (
            "llm", "embedding", False, False)
        assert prompting.min_score == -1.0 and prompting.llm_candidates == 8
