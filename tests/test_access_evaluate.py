"""Issue 18's access guarantee through the whole evaluate job (lm-eval, the scripted test double): a bank
with entries for two principals, and no prompt of one principal's run holds the other's entries, in every
ranker and ablation mode; a target marked external never sees no-external-models entries; retired entries
never reach a prompt and the per-sample record says why they were skipped; the run records the principal
and how many candidates the access filter removed, and the bank version it read."""

from __future__ import annotations

import json

import pytest
from conftest import data_dir
from test_config import compose_eval
from test_evaluate_scripted import ANSWER, load_samples

from memcollab_eval.bank.store import load_bank, save_bank
from memcollab_eval.bank.versions import Retirement, retire
from memcollab_eval.embedding import MINILM, encoder_problems
from memcollab_eval.hydra_app import PACKAGE_BANKS

PRINCIPALS = {"alice": [], "bob": ["code-team"]}  # bob reads through his group
MODES = {  # retrieval config group or overrides -> needs the packaged encoder
    "default": ([], False), "bm25": (["retrieval.ranker=bm25"], False),
    "no_model_filter": (["retrieval=no_model_filter"], False), "no_category": (["retrieval=no_category"], False),
    "embedding_full_bank": (["retrieval=embedding_full_bank"], True), "prompting": (["retrieval=prompting"], True),
}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """The first 6 GSM8K test problems as a data directory: the job prepares retrieval for every problem
    of the split (embedding all 1,319 took minutes per run here), and 3 are evaluated."""
    if not (data_dir() / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"offline data not found under {data_dir()}")
    root = tmp_path_factory.mktemp("data")
    (root / "gsm8k").mkdir()
    lines = (data_dir() / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "gsm8k" / "test.jsonl").write_text("".join(lines[:6]), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def shared_bank(tmp_path_factory):
    """Each hand-made lesson three times: alice's copy, the code team's copy (each with its own wording,
    so a prompt shows whose it is), and a retired copy; plus copies only internal targets may see."""
    rows = []
    for e in load_bank(PACKAGE_BANKS / "demo_handmade").entries:
        d = e.to_dict()
        rows.append({**d, "id": f"alice-{e.id}", "avoid": f"{e.avoid} (as alice noted)", "scopes": ["alice"]})
        rows.append({**d, "id": f"bob-{e.id}", "avoid": f"{e.avoid} (as the code team noted)",
                     "scopes": ["code-team"]})
        rows.append({**d, "id": f"local-{e.id}", "avoid": f"{e.avoid} (kept on our own servers)",
                     "policy": ["no-external-models"]})
        rows.append({**d, "id": f"old-{e.id}", "avoid": f"{e.avoid} (an old wording)"})
    root = tmp_path_factory.mktemp("shared") / "shared"
    save_bank(root, rows, name="shared")
    retire(root, [Retirement(r["id"], "reworded") for r in rows if r["id"].startswith("old-")])
    return load_bank(root)


@pytest.fixture(scope="module")
def run(small_data):
    return lambda *args: evaluate_as(small_data, *args)


def evaluate_as(data, tmp_path, bank, principal, *extra):
    from memcollab_eval.evaluation.job import evaluate

    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b",
                        f"data_dir={data}", "limit=3", "benchmarks=[gsm8k]", f"output_dir={tmp_path}",
                        f"retrieval.principal={principal}", *extra])
    cfg.bank.name, cfg.bank.path = "shared", str(bank.root)
    cfg.access.principals = {k: list(v) for k, v in PRINCIPALS.items()}
    cfg.target.model_args["default"] = ANSWER
    evaluate(cfg, tmp_path)
    return json.loads((tmp_path / "summary.json").read_text())


def memory_samples(run_dir):
    return [s for b in ("gsm8k",) for s in load_samples(run_dir, f"{b}_memcollab")]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_prompt_of_one_principal_holds_the_others_entries(tmp_path, shared_bank, run, mode):
    overrides, needs_encoder = MODES[mode]
    if needs_encoder and encoder_problems(MINILM.name):
        pytest.skip(encoder_problems(MINILM.name)[0])
    if mode == "prompting":  # the double, as the selecting model, takes the first three of each shortlist
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps([["Answer with the numbers of the helpful lessons", "1, 2, 3"]]))
        overrides = [*overrides, f"+target.model_args.rules={rules}"]
    texts = {e.id: e.render() for e in shared_bank.entries}
    for who, other in (("alice", "bob"), ("bob", "alice")):
        run_dir = tmp_path / who
        summary = run(run_dir, shared_bank, who, *overrides)
        theirs = [t for i, t in texts.items() if i.startswith((f"{other}-", "old-"))]
        own_reached = 0
        for s in memory_samples(run_dir):
            prompt = s["arguments"]["gen_args_0"]["arg_0"]
            assert not [t for t in theirs if t in prompt], (mode, who, s["doc"]["memcollab_id"])
            ids = [r["id"] for r in s["doc"]["memcollab_retrieved"]]
            assert not [i for i in ids if i.startswith((f"{other}-", "old-"))]
            own_reached += sum(i.startswith(f"{who}-") and texts[i] in prompt for i in ids)
            screened = s["doc"]["memcollab_filtered"]
            assert screened["scope"] > 0 and screened["retired"] > 0
            assert all(i.startswith("old-") for i in screened["lifecycle_ids"]) and screened["lifecycle_ids"]
        assert own_reached, f"{mode}: no prompt of {who}'s run held one of {who}'s entries: the test proves nothing"
        access = summary["access"]
        assert access["principal"] == who and access["groups"] == PRINCIPALS[who]
        assert access["entries_removed"]["scope"] == sum(i.startswith(f"{other}-") for i in texts)
        assert access["entries_removed"]["retired"] == sum(i.startswith("old-") for i in texts)
        assert access["access_filter_removed"] > 0 and access["problems_counted"] == 3
        assert summary["retrieval"]["principal"] == who
        assert summary["bank_record"]["version"] == 2 and summary["bank_record"]["version_path"].endswith("/v2")


def test_an_external_target_never_sees_no_external_models_entries(tmp_path, shared_bank, run):
    local = {e.id: e.render() for e in shared_bank.entries if e.id.startswith("local-")}
    inside = run(tmp_path / "inside", shared_bank, "alice")
    outside = run(tmp_path / "outside", shared_bank, "alice", "target.external=true")
    assert any(t in s["arguments"]["gen_args_0"]["arg_0"] for s in memory_samples(tmp_path / "inside")
               for t in local.values()), "the local entries never reached even the internal run"
    for s in memory_samples(tmp_path / "outside"):
        prompt = s["arguments"]["gen_args_0"]["arg_0"]
        assert not [t for t in local.values() if t in prompt]
        assert s["doc"]["memcollab_filtered"]["policy"] > 0
    assert inside["access"]["entries_removed"]["policy"] == 0
    assert outside["access"]["external_target"] is True
    assert outside["access"]["entries_removed"]["policy"] == len(local)


def test_a_pinned_version_brings_the_retired_entries_back(tmp_path, shared_bank, run):
    summary = run(tmp_path, shared_bank, "alice", "+bank.version=1")
    assert summary["bank_record"]["version"] == 1 and summary["bank_record"]["pinned_version"] == 1
    got = [r["id"] for s in memory_samples(tmp_path) for r in s["doc"]["memcollab_retrieved"]]
    assert any(i.startswith("old-") for i in got)
    assert summary["access"]["entries_removed"]["retired"] == 0


def test_preflight_warns_when_the_screen_removes_every_entry(tmp_path):
    from memcollab_eval.evaluation.job import memory_warnings

    rows = [{**e.to_dict(), "scopes": ["alice"]} for e in load_bank(PACKAGE_BANKS / "demo_handmade").entries]
    bank = save_bank(tmp_path / "b", rows, name="b")
    cfg = compose_eval(["+target=scripted", "+bank=demo_handmade", "target.identity=qwen25_coder_05b",
                        "retrieval.principal=bob"])
    warning = memory_warnings(cfg, bank)
    assert len(warning) == 1 and "removed by the access and lifecycle screen for principal 'bob' (40 scope)" in \
        warning[0]
    cfg.retrieval.principal = "alice"
    assert ["not in access.principals" in w for w in memory_warnings(cfg, bank)] == [True]
    cfg.access.principals = {"alice": []}
    assert memory_warnings(cfg, bank) == []


def test_the_lm_eval_cli_path_reads_the_principal_from_the_environment(tmp_path, monkeypatch):
    from memcollab_eval.evaluation import tasks

    rows = [{**e.to_dict(), "scopes": ["code-team"]} for e in load_bank(PACKAGE_BANKS / "demo_handmade").entries]
    save_bank(tmp_path / "b", rows, name="b")
    monkeypatch.setenv(tasks.ENV_BANK, str(tmp_path / "b"))
    monkeypatch.setenv(tasks.ENV_TARGET, "qwen25_coder_05b")
    monkeypatch.setenv(tasks.ENV_PRINCIPAL, "bob")
    monkeypatch.setenv(tasks.ENV_GROUPS, "code-team")
    monkeypatch.setenv(tasks.ENV_EXTERNAL, "1")
    tasks._setup_from_env.cache_clear()
    try:
        setup = tasks._setup_from_env()
    finally:
        tasks._setup_from_env.cache_clear()
    assert setup.access.principal == "bob" and setup.access.groups == {"code-team"}
    assert setup.access.external_target and setup.retrieval.principal == "bob"
