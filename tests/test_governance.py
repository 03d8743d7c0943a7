"""Issue 18: governance and lifecycle fields of bank entries, and the screen that decides what one run may
retrieve, in every ranker and ablation mode (the evaluate job end to end: tests/test_access_evaluate.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from memcollab_eval.bank.governance import Access, access_for, screen
from memcollab_eval.bank.store import (
    BankError,
    MemoryEntry,
    load_bank,
    parse_entries,
    save_bank,
    serialize_entries,
)
from memcollab_eval.categorize import Category
from memcollab_eval.hydra_app import PACKAGE_BANKS
from memcollab_eval.retrieve import RetrievalConfig, Retriever

BASE = {"id": "e1", "enforce": "checking the units of every quantity", "avoid": "adding minutes to hours",
        "category": "Prealgebra", "subcategory": "units", "preferred_model": "big", "unpreferred_model": "small",
        "source_benchmark": "gsm8k", "source_problem_id": "gsm8k/train/1"}


def line_error(**fields) -> str:
    data = (json.dumps(BASE) + "\n" + json.dumps({**BASE, "id": "e2", **fields}) + "\n").encode()
    with pytest.raises(BankError) as exc:
        parse_entries(data, source="bank/entries.jsonl")
    return str(exc.value)


@pytest.mark.parametrize(("fields", "says"), [
    ({"scopes": "alice"}, "field 'scopes' must be a list"),
    ({"scopes": []}, "field 'scopes' is an empty list"),
    ({"scopes": ["two words"]}, "field 'scopes' scope 'two words' is not a name"),
    ({"scopes": ["a", "a"]}, "field 'scopes' lists a name twice"),
    ({"scopes": [3]}, "field 'scopes' scope 3 is not a name"),
    ({"policy": ["no-extrenal-models"]}, "field 'policy' tag 'no-extrenal-models' is not a known policy"),
    ({"policy": "internal"}, "field 'policy' must be a list of policy tags"),
    ({"policy": ["internal", "internal"]}, "field 'policy' lists a tag twice"),
    ({"source": "build-7"}, "field 'source' must be an object"),
    ({"source": {}}, "field 'source' is empty"),
    ({"source": {"builder": "x"}}, "field 'source' unknown key 'builder'"),
    ({"source": {"models": []}}, "field 'source' key 'models' must be a non-empty list"),
    ({"source": {"split": ""}}, "field 'source' key 'split' must be a non-empty string"),
    ({"valid_from": "yesterday"}, "field 'valid_from' 'yesterday' is not an ISO 8601 date"),
    ({"valid_until": 20260101}, "field 'valid_until' must be an ISO 8601 date or date-time string"),
    ({"valid_from": "2026-02-01", "valid_until": "2026-01-01"}, "field 'valid_until' (2026-01-01) must be after"),
    ({"status": "archived"}, "field 'status' must be one of active, retired"),
    ({"retired_why": "bad lesson"}, "field 'retired_why' is set but field 'status' is not 'retired'"),
    ({"retired_why": "", "status": "retired"}, "field 'retired_why' must be a non-empty string"),
    ({"supersedes": "e2"}, "field 'supersedes' names the entry itself"),
    ({"supersedes": 7}, "field 'supersedes' must be a non-empty string"),
])
def test_every_governance_field_is_validated_with_file_line_and_field(fields, says):
    message = line_error(**fields)
    assert message.startswith("bank/entries.jsonl line 2: ")
    assert says in message


def test_valid_fields_load_and_round_trip(tmp_path):
    governed = {**BASE, "source": {"build": "demo_cpu", "models": ["big", "small"], "split": "train"},
                "scopes": ["alice", "math-team"], "policy": ["no-external-models"], "valid_from": "2026-01-01",
                "valid_until": "2027-01-01T00:00:00Z", "status": "active"}
    bank = save_bank(tmp_path / "b", [governed], name="b")
    entry = load_bank(tmp_path / "b").entries[0]
    assert entry.scopes == ("alice", "math-team") and entry.policy == ("no-external-models",)
    assert json.loads((tmp_path / "b" / "entries.jsonl").read_text()) == {**governed, "summarizer": "",
                                                                           "created_at": ""}
    assert bank.entries[0] == entry


@pytest.mark.parametrize("name", sorted(p.name for p in PACKAGE_BANKS.iterdir() if (p / "manifest.json").is_file()))
def test_banks_without_the_fields_keep_their_bytes(name):
    """Every shipped bank reads back byte for byte: version 1 from the top-level files, and each later
    version (demo_v3 has one, written by `bank retire`) from its own folder."""
    bank = load_bank(PACKAGE_BANKS / name, version=1)
    assert serialize_entries(bank.entries) == (PACKAGE_BANKS / name / "entries.jsonl").read_bytes()
    assert bank.manifest.to_dict() == json.loads((PACKAGE_BANKS / name / "manifest.json").read_text())
    assert bank.path == bank.root == PACKAGE_BANKS / name  # version 1 is read from the top-level files
    newest = load_bank(PACKAGE_BANKS / name)
    for version in range(2, newest.manifest.version + 1):
        later = load_bank(PACKAGE_BANKS / name, version=version)
        assert later.path == PACKAGE_BANKS / name / f"v{version}"
        assert serialize_entries(later.entries) == (later.path / "entries.jsonl").read_bytes()


def entry(i: str, **fields) -> MemoryEntry:
    return MemoryEntry(**{**BASE, "id": i, **fields})


NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def test_screen_gives_one_reason_per_removed_entry():
    entries = [entry("open"), entry("alice", scopes=("alice",)), entry("team", scopes=("math-team",)),
               entry("ext", policy=("no-external-models",)), entry("int", policy=("internal",)),
               entry("old", status="retired", retired_why="wrong"), entry("replaced"),
               entry("new", supersedes="replaced"), entry("later", valid_from="2026-07-01"),
               entry("gone", valid_until="2026-06-01")]  # exclusive end: gone at that instant
    anon = screen(entries, Access(as_of=NOW))
    assert {entries[i].id: r for i, r in anon.removed.items()} == {
        "alice": "scope", "team": "scope", "int": "policy", "old": "retired", "replaced": "superseded",
        "later": "not_yet_valid", "gone": "expired"}
    bob = screen(entries, access_for("bob", {"bob": ["math-team"]}, as_of=NOW))
    assert [entries[i].id for i in bob.kept] == ["open", "team", "ext", "int", "new"]
    external = screen(entries, access_for("alice", external_target=True, as_of=NOW))
    assert {entries[i].id for i, r in external.removed.items() if r == "policy"} == {"ext", "int"}
    assert external.counts()["policy"] == 2 and sum(external.counts().values()) == len(external.removed)
    assert screen(entries, Access(as_of=datetime(2026, 7, 2, tzinfo=timezone.utc))).removed.get(8) is None


def test_as_of_and_principal_are_validated():
    with pytest.raises(ValueError, match="retrieval.principal"):
        RetrievalConfig(principal="two words")
    with pytest.raises(ValueError, match="retrieval.as_of"):
        RetrievalConfig(as_of="soon")
    assert RetrievalConfig(principal="alice", as_of="2026-01-01").principal == "alice"


# ---- the screen in every ranker and ablation mode ----------------------------------------------

TOPICS = ["units of time and minutes", "discount on the price of items", "average of a list of scores",
          "probability of drawing a red ball", "area of a circle with a radius"]


def two_principal_bank(tmp_path: Path):
    """Per topic one entry for alice, one for bob's group, one for everyone; models vary so that the
    model filter matters."""
    rows = []
    for t, topic in enumerate(TOPICS):
        for who, scopes in (("alice", ["alice"]), ("bob", ["code-team"]), ("all", None)):
            rows.append({**BASE, "id": f"{who}-{t}", "enforce": f"checking the {topic} twice",
                         "avoid": f"guessing the {topic}", "preferred_model": "big" if t % 2 else "other",
                         **({"scopes": scopes} if scopes else {})})
    return save_bank(tmp_path / "shared", rows, name="shared")


class RecordingChooser:
    """The LLM selector's stand-in: records every shortlist it is shown and picks all of them."""

    def __init__(self):
        self.shown: list[str] = []

    def choose(self, problems, candidates, k):
        self.shown += [e.id for c in candidates for e in c]
        return [list(range(len(c)))[:k] for c in candidates]


MODES = {
    "tfidf": {}, "bm25": {"ranker": "bm25"}, "no_model_filter": {"model_filter": False},
    "no_category": {"use_categories": False}, "full_bank": {"use_categories": False, "model_filter": False},
    "llm_selector": {"selector": "llm", "use_categories": False, "model_filter": False, "min_score": 0.0},
    "top_k_10_min_0": {"top_k": 10, "min_score": 0.0},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_mode_retrieves_another_principals_entry(tmp_path, mode):
    bank = two_principal_bank(tmp_path)
    principals = {"alice": [], "bob": ["code-team"]}
    cat = Category("Prealgebra", "units")
    for who, other in (("alice", "bob"), ("bob", "alice")):
        chooser = RecordingChooser()
        r = Retriever(bank, RetrievalConfig(principal=who, **MODES[mode]), "big", chooser=chooser,
                      access=access_for(who, principals))
        got = [x.entry.id for topic in TOPICS for x in r.retrieve(f"a problem about the {topic}", category=cat)]
        assert got, f"{mode}: {who} retrieved nothing, the test would pass vacuously"
        assert not [i for i in got + chooser.shown if i.startswith(other)], (mode, who, got)
        assert any(i.startswith(who) for i in got)
        assert r.filtered(cat).counts["scope"] == sum(1 for e in bank.entries if e.id.startswith(other)
                                                      and (not r.config.model_filter or "big" in
                                                           (e.preferred_model, e.unpreferred_model)))


def test_the_embedding_ranker_is_screened_too(tmp_path):
    from memcollab_eval.embedding import MINILM, encoder_problems

    if encoder_problems(MINILM.name):
        pytest.skip(encoder_problems(MINILM.name)[0])
    bank = two_principal_bank(tmp_path)
    r = Retriever(bank, RetrievalConfig(ranker="embedding", use_categories=False, model_filter=False, min_score=-1.0,
                                        top_k=20, principal="alice"), "big")
    got = [x.entry.id for x in r.retrieve("minutes and hours", category=None)]
    assert len(got) == 10 and not [i for i in got if i.startswith("bob")]


def test_an_ungoverned_bank_retrieves_as_before(tmp_path):
    rows = [{**BASE, "id": f"e{t}", "enforce": f"checking the {topic}"} for t, topic in enumerate(TOPICS)]
    bank = save_bank(tmp_path / "plain", rows, name="plain")
    plain = Retriever(bank, RetrievalConfig(), "big")
    assert not plain.governed and plain.screen.removed == {}
    cat = Category("Prealgebra", "units")
    assert plain.retrieve("a discount on the price", category=cat) == \
        Retriever(bank, RetrievalConfig(principal="alice"), "big").retrieve("a discount on the price", category=cat)


def test_lifecycle_removals_are_named_per_problem(tmp_path):
    rows = [{**BASE, "id": "live"}, {**BASE, "id": "retired", "status": "retired", "retired_why": "harmful"},
            {**BASE, "id": "expired", "valid_until": "2020-01-01"}, {**BASE, "id": "v1"},
            {**BASE, "id": "v2", "supersedes": "v1", "enforce": "checking units and totals"}]
    bank = save_bank(tmp_path / "life", rows, name="life")
    r = Retriever(bank, RetrievalConfig(min_score=0.0, top_k=10), "big")
    cat = Category("Prealgebra", "units")
    assert {x.entry.id for x in r.retrieve("units of minutes", category=cat)} == {"live", "v2"}
    seen = r.filtered(cat)
    assert seen.counts == {"scope": 0, "policy": 0, "retired": 1, "superseded": 1, "not_yet_valid": 0,
                           "expired": 1}
    assert set(seen.lifecycle_ids) == {"retired", "expired", "v1"}
    assert r.governed


def test_a_retired_entry_is_retrievable_again_in_its_older_version(tmp_path):
    from memcollab_eval.bank.versions import Retirement, retire

    rows = [{**BASE, "id": f"e{t}", "enforce": f"checking the {topic}"} for t, topic in enumerate(TOPICS)]
    save_bank(tmp_path / "b", rows, name="b")
    retire(tmp_path / "b", [Retirement("e0", "misleads")])
    cfg = RetrievalConfig(min_score=0.0, top_k=10)
    cat = Category("Prealgebra", "units")
    newest = {x.entry.id for x in Retriever(load_bank(tmp_path / "b"), cfg, "big").retrieve("time", category=cat)}
    pinned = {x.entry.id for x in Retriever(load_bank(tmp_path / "b", version=1), cfg, "big").retrieve(
        "time", category=cat)}
    assert "e0" in pinned and "e0" not in newest and replace(cfg) == cfg
