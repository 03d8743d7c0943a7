"""The optional LLM categorizer (categorize_llm.py): reply parsing, batching and caching with the
scripted test double, the evaluation hook and the build using it, and the config errors.

The problems below are written for these tests, not taken from evaluation sets.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import pool_dir
from test_build import build_cmd

from memcollab_eval.bank.store import BankManifest, MemoryBank, entry_from_dict
from memcollab_eval.categorize import CODE_CATEGORIES, MATH_SUBJECTS, categorize, subcategory
from memcollab_eval.categorize_llm import (
    CategoryQuery,
    LMCategorizer,
    category_prompt,
    lm_generate,
    parse_category,
)
from memcollab_eval.models.scripted import ScriptedLM
from memcollab_eval.retrieve import RetrievalConfig

WORD_PROBLEM = "A baker sells 12 loaves each morning and 8 each evening. How many loaves does she sell in a week?"
CIRCLE = "A circle has radius 3. What is its area?"


@pytest.mark.parametrize(("reply", "expected"), [
    ("Intermediate Algebra", "Intermediate Algebra"),  # not "Algebra"
    ("Prealgebra", "Prealgebra"), ("The category is Pre-Algebra.", "Prealgebra"),
    ("**Number Theory**", "Number Theory"), ("counting and probability", "Counting & Probability"),
    ("Geometry, or maybe Algebra", "Geometry"),  # the first one named
    ("Calculus", None), ("I cannot tell", None), ("", None),
])
def test_parse_category_reads_the_first_taxonomy_name(reply, expected):
    assert parse_category(reply, MATH_SUBJECTS) == expected


def test_parse_category_for_code_names():
    assert parse_category("List/Array Processing", CODE_CATEGORIES) == "list/array processing"
    assert parse_category("recursion / dynamic programming", CODE_CATEGORIES) == "recursion/dynamic programming"
    assert parse_category("Geometry", CODE_CATEGORIES) is None


def scripted(tmp_path: Path, rules: list[list[str]], default: str | None = None) -> ScriptedLM:
    path = tmp_path / "categorizer_rules.json"
    path.write_text(json.dumps(rules))
    return ScriptedLM(rules=str(path), default=default)


def test_llm_categorizer_asks_once_keeps_labels_caches_and_falls_back(tmp_path):
    lm = scripted(tmp_path, [["baker", "Algebra"], ["circle", "the answer: hmm"]])
    calls = []
    original = lm.generate_until
    lm.generate_until = lambda requests, disable_tqdm=False: calls.append(len(requests)) or original(requests)
    categorizer = LMCategorizer(lm_generate(lm, chat=True), "double")
    queries = [CategoryQuery(WORD_PROBLEM, "math", "gsm8k"), CategoryQuery(CIRCLE, "math", "math500"),
               CategoryQuery(CIRCLE, "math", "math500", subject="Geometry"),  # labeled: never asked
               CategoryQuery(WORD_PROBLEM, "math", "gsm8k")]  # a repeat: asked once
    got = categorizer.categorize_many(queries)
    assert calls == [2]
    assert got[0].category == "Algebra"  # the model's, where the keyword rules say Prealgebra
    assert categorize(WORD_PROBLEM, domain="math", benchmark="gsm8k").category == "Prealgebra"
    assert got[0].subcategory == subcategory(WORD_PROBLEM, "math", "Algebra") == "money"  # the rules, inside Algebra
    assert got[1] == categorize(CIRCLE, domain="math", benchmark="math500")  # unparsed: the keyword category
    assert got[2].category == "Geometry" and got[3] == got[0]
    assert (categorizer.stats.asked, categorizer.stats.unparsed) == (2, 1)
    assert categorizer.name == "llm:double:v2"
    assert lm.prompts[0].startswith("<user>: Problem:") and "- Precalculus (trigonometry" in lm.prompts[0]
    assert categorizer.categorize_many(queries[:1]) == got[:1] and calls == [2]  # cached


def test_a_code_task_is_asked_with_its_own_text_and_the_code_categories():
    q = CategoryQuery("def count_vowels(s):\n    \"\"\"Count the vowels in a string.\"\"\"", "code", "humaneval")
    assert "Task:\ndef count_vowels" in category_prompt(q) and "- regex/parsing" in category_prompt(q)


def _bank(entries: list[dict]) -> MemoryBank:
    manifest = BankManifest(name="t", version=1, sha256="0" * 64, n_entries=len(entries), sources=[],
                            summarizer="", config={})
    return MemoryBank(manifest, tuple(entry_from_dict(e) for e in entries))


def _entry(i: int, category: str, enforce: str) -> dict:
    return {"id": f"e-{i}", "category": category, "subcategory": "general", "enforce": enforce,
            "avoid": "skipping the check", "preferred_model": "m", "unpreferred_model": "w",
            "source_problem_id": f"p{i}", "source_benchmark": "gsm8k_train", "summarizer": "s"}


def test_the_hook_retrieves_from_the_category_the_model_names(tmp_path):
    """Under retrieval.categorizer=llm the query's category is the model's: a word problem the model
    files under Geometry gets the Geometry lesson, and the logged doc says Geometry."""
    import datasets

    from memcollab_eval.evaluation.tasks import MemorySetup, task_config

    bank = _bank([_entry(1, "Geometry", "drawing the loaves before counting the loaves sold"),
                  _entry(2, "Prealgebra", "counting the loaves sold in each part of the day")])
    lm = scripted(tmp_path, [], default="Geometry")
    categorizer = LMCategorizer(lm_generate(lm), "double")
    retrieval = RetrievalConfig(model_filter=False, min_score=0.0, categorizer="llm")
    setup = MemorySetup(bank, retrieval, "m", categorizer=categorizer)
    task = task_config("gsm8k", data_dir=None, setup=setup, evaluated=frozenset({0}))
    docs = datasets.Dataset.from_list([{"question": WORD_PROBLEM, "answer": "#### 140"},
                                       {"question": WORD_PROBLEM + " (unscored)", "answer": "#### 1"}])
    out = task["process_docs"](docs)
    assert categorizer.stats.asked == 1  # the scored doc only
    assert out[0]["memcollab_category"] == "Geometry"
    assert [r["id"] for r in out[0]["memcollab_retrieved"]] == ["e-1"]
    assert out[1]["memcollab_category"] == "Prealgebra"  # not asked: the keyword rules


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="retrieval.categorizer must be one of"):
        RetrievalConfig(categorizer="oracle")
    with pytest.raises(ValueError, match="retrieval.categorizer_model is set"):
        RetrievalConfig(categorizer_model="qwen25_coder_05b")
    assert RetrievalConfig(categorizer="llm", categorizer_model="qwen25_coder_05b").categorizer == "llm"


def test_evaluate_with_the_llm_categorizer_records_it_and_warns_on_a_keyword_bank(tmp_path):
    """The scripted target categorizes (the bank was tagged by the keyword rules, so preflight warns);
    the run record says which categorizer ran and how many tasks it was asked about."""
    from test_config import compose_eval

    from memcollab_eval.evaluation.job import evaluate, preflight

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([["Which one of these subjects", "Prealgebra"]]))
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "retrieval.categorizer=llm", "limit=2",
                        "benchmarks=[gsm8k]", f"output_dir={tmp_path}", f"+target.model_args.rules={rules}"])
    warnings = preflight(cfg)
    assert any("tagged by the keyword rules" in w and "retrieval.categorizer=llm" in w for w in warnings)
    (row,) = evaluate(cfg, tmp_path)
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["categorizer"] == {"name": "llm:scripted:v2", "asked": 2, "unparsed": 0}
    assert row.n == 2


def test_build_with_the_llm_categorizer_tags_unlabeled_problems_and_resumes(tmp_path):
    """categorizer=llm at build time: GSM8K and MBPP pool problems take the categorizer model's
    category (MATH rows keep their subject label), the answers are cached in the work directory,
    and a re-run asks the model nothing."""
    from test_build import write_doubles

    from memcollab_eval.bank.store import load_bank

    if not (pool_dir() / "gsm8k" / "train.jsonl").exists():
        pytest.skip("offline data not found")
    paths = write_doubles(tmp_path)
    categorizer = tmp_path / "categorizer.yaml"
    (tmp_path / "cat_rules.json").write_text(json.dumps([["Which one of these subjects", "Number Theory"],
                                                         ["Which one of these categories", "regex/parsing"]]))
    categorizer.write_text(json.dumps({"identity": "categorizer_double", "model": "memcollab_scripted",
                                       "model_args": {"rules": str(tmp_path / "cat_rules.json")}}))
    work, out = tmp_path / "work", tmp_path / "bank"
    cmd = build_cmd(paths, work, out) + ["categorizer=llm", f"categorizer_model={categorizer}"]
    cache_file = work / "categories.categorizer_double.v2.jsonl"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = load_bank(out).manifest.config["stats"]["categorizer"]
    assert stats["name"] == "llm:categorizer_double:v2"
    assert stats["answers_kept"] == stats["asked_this_invocation"] == 4  # 2 GSM8K + 2 MBPP; MATH rows are labeled
    answers = cache_file.read_bytes()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # a re-run asks nothing
    assert proc.returncode == 0 and "is up to date (" in proc.stdout, proc.stderr[-3000:]
    assert cache_file.read_bytes() == answers
    cache = [json.loads(x) for x in answers.decode().splitlines()]
    assert sorted(r["category"] for r in cache) == ["Number Theory"] * 2 + ["regex/parsing"] * 2
    bank = load_bank(out)
    by_source = {(e.source_benchmark, e.category) for e in bank.entries}
    assert by_source and all(
        cat == {"gsm8k_train": "Number Theory", "mbpp_train": "regex/parsing"}[src]
        for src, cat in by_source if src != "math_train")
    assert bank.manifest.config["build"]["categorizer"] == "llm"


def test_build_refuses_a_bad_categorizer(tmp_path):
    from test_build import write_doubles

    paths = write_doubles(tmp_path)
    for arg, message in (("categorizer=oracle", "categorizer 'oracle' is not one of"),
                         ("categorizer_model=x", "categorizer_model is set but categorizer is 'keywords'")):
        proc = subprocess.run(build_cmd(paths, tmp_path / "w", tmp_path / "b") + [arg], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr + proc.stdout, proc.stderr[-1500:]

