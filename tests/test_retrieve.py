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
from memcollab_eval.retrieve import MEMORY_HEADER, RetrievalConfig, Retrieved, Retriever, analyze, render_memory

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
