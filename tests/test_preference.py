"""Pluggable preference signals for bank construction (issue 18): ``preference=verifier`` (the default,
bank bytes as before), ``preference=judge`` (a judge model's rubric scores, recorded and resumable) and
``preference=labels`` (human preferences from a JSONL file, validated by file, line and field), on the
open-ended ``concepts`` task and on the math/code fixture pool, with scripted doubles; one real judge run
with SmolLM2-135M (the CI model)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURE_POOLS, pool_dir, require_smollm2
from test_build import LEGACY_GATES, build_cmd, write_doubles

from memcollab_eval.construct.judge import agreement, judge_prompt, parse_score
from memcollab_eval.construct.labels import LabelsError, check_problems, read_labels
from memcollab_eval.construct.open_task import CONCEPTS_ROWS, concept_rows, task_spec
from memcollab_eval.construct.pools import build_pool
from memcollab_eval.construct.preference import apply_ablation, judge_pairs

# sha256 of entries.jsonl from test_build's tiny scripted build, made by main at 86f0f23 (before
# preference signals existed): the default preference=verifier must keep the bank's bytes
LEGACY_TINY_ENTRIES_SHA256 = "30c33e626186a53e9576cede6a82a05234ddd23b40ebf3459fe379a43156581f"

JUDGED_LESSONS = {
    "math question": "DIFFERENCE: the unpreferred answer gave no reason; the preferred one explained the reason for "
                     "each step\nenforce explaining the reason for each step of an argument; avoid stating a rule "
                     "without the reason it holds",
    "programming question": "DIFFERENCE: the unpreferred answer gave no reason; the preferred one explained why the "
                            "code behaves as it does\nenforce explaining why the code behaves as it does on the "
                            "smallest inputs; avoid describing behaviour without the reason for it",
}


def run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEMCOLLAB_DATA_DIR"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def write_target(path: Path, identity: str, **model_args) -> str:
    path.write_text(json.dumps({"identity": identity, "model": "memcollab_scripted", "model_args": model_args}))
    return str(path)


def judged_summarizer(tmp: Path) -> str:
    (tmp / "judged_summarizer_rules.json").write_text(json.dumps([[k, v] for k, v in JUDGED_LESSONS.items()]))
    return write_target(tmp / "judged_summarizer.yaml", "summarizer_double",
                        rules=str(tmp / "judged_summarizer_rules.json"))


# ---- units --------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, score", [
    ("SCORE: 4", 4), ("**Score:** 5\nThe answer is right.", 5), ("score = 2/5", 2), ("3", 3), ("4/5\n", 4),
    ("The answer has 3 steps and is good.", None), ("SCORE: 7", None), ("SCORE: 10", None), ("", None),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_judge_pairs_prefer_the_best_score_with_ties_to_the_stronger_source():
    keys = [("p", "a", 0), ("p", "b", 0), ("p", "c", 0)]
    pairs, skipped = judge_pairs(["p"], {keys[0]: 3, keys[1]: 5, keys[2]: 2}, [keys], 1)
    assert [(x.preferred[1], x.unpreferred[1], x.scores, x.signal) for x in pairs] == \
        [("b", "a", (5, 3), "judge"), ("b", "c", (5, 2), "judge")]
    pairs, _ = judge_pairs(["p"], {keys[0]: 4, keys[1]: 4, keys[2]: 1}, [keys], 1)
    assert [(x.preferred[1], x.unpreferred[1]) for x in pairs] == [("a", "c")]  # a tie goes to a (stronger)
    pairs, skipped = judge_pairs(["p"], {keys[0]: 4, keys[1]: 3}, [keys], 2)
    assert pairs == [] and skipped[0].reason == "judge scores within the margin (2) of each other"
    pairs, skipped = judge_pairs(["p"], {keys[0]: 4}, [keys], 1)  # b and c: the judge named no score
    assert pairs == [] and skipped[0].reason == "fewer than two judged trajectories (2 judge replies named no score)"
    reversed_ = apply_ablation(judge_pairs(["p"], {keys[0]: 5, keys[1]: 1}, [keys[:2]], 1)[0], "reversed", 0)
    assert [(x.preferred[1], x.scores) for x in reversed_] == [("b", (1, 5))]


def test_agreement_figures():
    passed = {("p", "a", 0): True, ("p", "b", 0): False, ("q", "a", 0): True, ("q", "b", 0): False,
              ("r", "a", 0): False, ("r", "b", 0): False}
    scores = {("p", "a", 0): 5, ("p", "b", 0): 2, ("q", "a", 0): 3, ("q", "b", 0): 3, ("r", "a", 0): 4,
              ("r", "b", 0): None}
    a = agreement(scores, passed, 4)
    assert (a["trajectories"], a["unparsed"], a["verifier_passed"], a["verifier_failed"]) == (5, 1, 2, 3)
    # judge passes: p/a (right), q/a (wrong: 3 < 4), r/a (wrong: verifier failed it); fails p/b, q/b (right)
    assert a["accuracy"] == 0.6 and a["judge_pass_rate_on_verifier_pass"] == 0.5
    assert a["judge_fail_rate_on_verifier_fail"] == 0.667 and a["balanced_accuracy"] == 0.583
    assert (a["pairs"], a["pairs_judge_agrees"], a["pairs_judge_ties"], a["pairs_judge_reverses"]) == (2, 1, 1, 0)
    assert a["pairwise_agreement"] == 0.5


def test_the_concepts_task_ships_36_categorized_questions_with_key_points():
    rows = concept_rows()
    assert len(rows) == CONCEPTS_ROWS and len({pid for pid, _, _ in rows}) == CONCEPTS_ROWS
    assert {b for _, b, _ in rows} == {"concepts_math", "concepts_code"}
    assert all(len(r["key_points"]) >= 2 for _, _, r in rows)
    pool = build_pool({"concepts": None}, None, 1234)  # no data_dir: the questions ship in the package
    assert len(pool) == CONCEPTS_ROWS
    math = [p for p in pool if p.benchmark == "concepts_math"]
    assert {p.category for p in math} == {r["subject"] for _, _, r in rows if r["domain"] == "math"}
    spec = task_spec("concepts_code")
    prompt = judge_prompt(domain="programming", problem=spec.text(pool[0].doc), answer="x",
                          reference=spec.reference(pool[0].doc), version="v1")
    assert "KEY POINTS A GOOD ANSWER COVERS:\n- " in prompt and prompt.rstrip().endswith("SCORE: <a number from 1 to 5>")
    assert "KEY POINTS" not in judge_prompt(domain="math", problem="1+1?", answer="2", version="v1")


# ---- labels validation -----------------------------------------------------------------------

IDENTITIES = {"strong.yaml": "strong_model", "weak.yaml": "weak_model"}


def test_labels_accept_source_names_identities_and_samples(tmp_path):
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps({"problem_id": "p", "preferred": "weak_model", "unpreferred": "strong.yaml",
                             "annotator": "x"}) + "\n\n" +
                 json.dumps({"problem_id": "q", "preferred": "strong.yaml#1", "unpreferred": "strong_model#0"}) + "\n")
    labels = read_labels(f, IDENTITIES, samples=2)
    assert [(x.preferred, x.unpreferred, x.where) for x in labels] == [
        (("p", "weak.yaml", 0), ("p", "strong.yaml", 0), f"{f}:1"),
        (("q", "strong.yaml", 1), ("q", "strong.yaml", 0), f"{f}:3")]
    check_problems(labels, ["p", "q"])
    with pytest.raises(LabelsError, match=rf"{f}:3: field 'problem_id': 'q' is not a problem of this build's pool"):
        check_problems(labels, ["p"])


def test_every_bad_label_line_is_reported_with_file_line_and_field(tmp_path):
    f = tmp_path / "labels.jsonl"
    lines = [
        '{"problem_id": "p", "preferred": "strong_model", "unpreferred": "weak_model"}',  # 1 ok
        '{"problem_id": "p", "preferred": "strong_model"',  # 2 torn
        '["p", "strong_model", "weak_model"]',  # 3 not an object
        '{"problem_id": "p", "preferred": "strong_model"}',  # 4 missing
        '{"problem_id": 7, "preferred": "strong_model", "unpreferred": "weak_model"}',  # 5 type
        '{"problem_id": "p", "preferred": "nobody", "unpreferred": "weak_model"}',  # 6 unknown model
        '{"problem_id": "p", "preferred": "strong_model#3", "unpreferred": "weak_model"}',  # 7 sample
        '{"problem_id": "p", "preferred": "weak_model", "unpreferred": "weak.yaml"}',  # 8 same trajectory
        '{"problem_id": "p", "preferred": "strong.yaml", "unpreferred": "weak_model"}',  # 9 repeats line 1
        '{"problem_id": "p", "preferred": "weak_model", "unpreferred": "strong_model"}',  # 10 contradicts 1
    ]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelsError) as err:
        read_labels(f, IDENTITIES)
    message = str(err.value)
    assert message.startswith(f"9 problem(s) in the labels file {f}:")
    for expected in [
        f"{f}:2: not valid JSON", f"{f}:3: expected a JSON object",
        f"{f}:4: field 'unpreferred': missing", f"{f}:5: field 'problem_id': expected a non-empty string, got 7",
        f"{f}:6: field 'preferred': 'nobody' is not a source model of this build",
        f"{f}:7: field 'preferred': sample '3' of 'strong_model' does not exist",
        f"{f}:8: field 'unpreferred': the same trajectory as 'preferred'",
        f"{f}:9: field 'problem_id': repeats the label of line 1",
        f"{f}:10: field 'preferred': contradicts line 1"]:
        assert expected in message, (expected, message)
    assert f"{f}:1:" not in message
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(LabelsError, match="no labels"):
        read_labels(tmp_path / "empty.jsonl", IDENTITIES)
    with pytest.raises(LabelsError, match="is not a file"):
        read_labels(tmp_path / "absent.jsonl", IDENTITIES)


# ---- builds ------------------------------------------------------------------------------------

def concept_doubles(tmp: Path, *, judge_delay: float = 0.0, judge_reply_poor: str = "SCORE: 1") -> dict[str, str]:
    """Sources that answer the open-ended questions well (their key points) and badly ("I do not
    know."), a judge double that scores the bad answer low and any other 5, and a summarizer."""
    rules = [[r["question"], "Here is why: " + "; ".join(r["key_points"]) + "."] for _, _, r in concept_rows()]
    (tmp / "good_rules.json").write_text(json.dumps(rules))
    (tmp / "judge_rules.json").write_text(json.dumps([["ANSWER:\nI do not know.", judge_reply_poor]]))
    return {
        "good": write_target(tmp / "good.yaml", "good_model", rules=str(tmp / "good_rules.json")),
        "poor": write_target(tmp / "poor.yaml", "poor_model", default="I do not know."),
        "judge": write_target(tmp / "judge.yaml", "judge_double", rules=str(tmp / "judge_rules.json"),
                              default="SCORE: 5", delay=judge_delay),
        "summarizer": judged_summarizer(tmp),
    }


def concepts_cmd(paths: dict[str, str], work: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "memcollab_eval.build", f"sources=[{paths['good']},{paths['poor']}]",
            f"summarizer={paths['summarizer']}", "pool=concepts", "pool.concepts=4", "bank.name=concepts_judged",
            f"work_dir={work}", f"bank.out_dir={out}", "preference=judge", f"preference.judge={paths['judge']}",
            "preference.judge_batch_size=1", "distill_samples=1", "gates.resolve=false", "gates.validate=false",
            *extra]


@pytest.fixture(scope="module")
def concepts_built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("concepts")
    paths = concept_doubles(tmp)
    proc = run(concepts_cmd(paths, tmp / "work", tmp / "bank"), tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, paths


def test_judge_build_on_the_open_ended_task_records_scores_in_records_manifest_and_entries(concepts_built):
    from memcollab_eval.bank.store import load_bank

    tmp, paths = concepts_built
    bank = load_bank(tmp / "bank")
    judged = [json.loads(x) for x in (tmp / "work" / "judgments.jsonl").read_text().splitlines()]
    assert len(judged) == 8 and {r["judge"] for r in judged} == {paths["judge"]}
    assert {(r["model"], r["score"]) for r in judged} == {(paths["good"], 5), (paths["poor"], 1)}
    assert all(r["rubric_version"] == "v1" and r["status"] == "ok" and r["reply"] for r in judged)
    assert not (tmp / "work" / "verdicts.jsonl").exists()  # open-ended: no verifier ran
    assert set(bank.manifest.config["stats"]["pass_rate_by_model"].values()) == {None}
    report = bank.manifest.config["stats"]["preference"]
    assert report["signal"] == "judge" and report["judge"] == "judge_double" and report["rubric_version"] == "v1"
    assert report["judged"] == 8 and report["unparsed"] == 0 and report["open_ended_trajectories"] == 8
    assert report["score_histogram"] == {"1": 4, "2": 0, "3": 0, "4": 0, "5": 4, "unparsed": 0}
    assert report["mean_score_by_model"] == {"good_model": 5.0, "poor_model": 1.0}
    assert report["agreement_with_verifier"]["trajectories"] == 0  # nothing here has a verdict
    assert bank.manifest.config["build"]["preference"]["name"] == "judge"
    assert bank.entries and {(e.preferred_model, e.unpreferred_model) for e in bank.entries} == \
        {("good_model", "poor_model")}
    for e in bank.entries:
        assert e.evidence["preference"] == {"signal": "judge", "judge": "judge_double", "rubric_version": "v1",
                                            "preferred_score": 5, "unpreferred_score": 1}
        assert e.source_benchmark == "concepts" and e.source_problem_id.startswith("concepts/")
    distill = [json.loads(x) for x in (tmp / "work" / "distill.jsonl").read_text().splitlines()]
    assert all(d["pair"].endswith(f"@judge={paths['judge']}/v1") for d in distill)


def test_a_rerun_judges_nothing_again(concepts_built):
    tmp, paths = concepts_built
    before = {f: (tmp / "work" / f).read_bytes() for f in ("trajectories.jsonl", "judgments.jsonl", "distill.jsonl")}
    proc = run(concepts_cmd(paths, tmp / "work", tmp / "bank"), tmp)
    assert proc.returncode == 0 and "is up to date" in proc.stdout, proc.stderr[-2000:]
    assert {f: (tmp / "work" / f).read_bytes() for f in before} == before


def test_kill_9_during_the_judge_stage_resumes_and_gives_the_same_bank(concepts_built, tmp_path):
    tmp, _ = concepts_built
    paths = concept_doubles(tmp_path, judge_delay=0.4)
    work, out = tmp_path / "work", tmp_path / "bank"
    env = {k: v for k, v in os.environ.items() if k != "MEMCOLLAB_DATA_DIR"}
    proc = subprocess.Popen(concepts_cmd(paths, work, out), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    judged = work / "judgments.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not judged.exists() or len(judged.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the build finished before it could be killed"
    done_before = judged.read_text().splitlines()
    with open(judged, "a") as f:
        f.write('{"problem_id": "torn')
    rerun = run(concepts_cmd(paths, work, out), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = judged.read_text().splitlines()
    assert len(after) == 8 and after[:len(done_before)] == done_before and len(done_before) >= 3
    assert (out / "entries.jsonl").read_bytes() == (tmp / "bank" / "entries.jsonl").read_bytes()


def test_a_judge_that_names_no_score_makes_no_pair(tmp_path):
    from memcollab_eval.bank.store import load_bank

    paths = concept_doubles(tmp_path)
    paths["judge"] = write_target(tmp_path / "mute.yaml", "mute_judge", default="Both answers look fine to me.")
    proc = run(concepts_cmd(paths, tmp_path / "work", tmp_path / "bank"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bank = load_bank(tmp_path / "bank")
    report = bank.manifest.config["stats"]["preference"]
    assert len(bank.entries) == 0 and report["unparsed"] == 8 and report["score_histogram"]["unparsed"] == 8
    skipped = [json.loads(x) for x in (tmp_path / "work" / "no_pairs.concepts_judged.jsonl").read_text().splitlines()]
    assert {s["reason"] for s in skipped} == {"fewer than two judged trajectories (2 judge replies named no score)"}


def math_judge_cmd(paths: dict[str, str], judge: str, work: Path, out: Path) -> list[str]:
    base = build_cmd(paths, work, out)[:-len(LEGACY_GATES)]
    return [*base, "preference=judge", f"preference.judge={judge}", "distill_prompt_version=v3", "distill_samples=1",
            "gates.difference_lint=false", "gates.resolve=false", "gates.validate=false"]


@pytest.mark.parametrize("honest", [True, False])
def test_judge_on_verified_problems_reports_its_agreement_with_the_verifier(tmp_path, honest):
    """On the math/code fixture pool the strong double passes every problem and the weak one none.
    An honest judge (weak answer 1, others 5) agrees with the verifier on every pair and the strong
    model is preferred; a reversed judge disagrees on every pair, and the weak model is preferred."""
    from memcollab_eval.bank.store import load_bank

    if pool_dir() != FIXTURE_POOLS:
        pytest.skip("the figures below are those of the committed fixture pool")
    paths = write_doubles(tmp_path)
    paths["summarizer"] = judged_summarizer(tmp_path)
    (tmp_path / "judge_rules.json").write_text(json.dumps([["\\boxed{-7}", "SCORE: 1" if honest else "SCORE: 5"]]))
    judge = write_target(tmp_path / "judge.yaml", "judge_double", rules=str(tmp_path / "judge_rules.json"),
                         default="SCORE: 5" if honest else "SCORE: 1")
    proc = run(math_judge_cmd(paths, judge, tmp_path / "work", tmp_path / "bank"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bank = load_bank(tmp_path / "bank")
    a = bank.manifest.config["stats"]["preference"]["agreement_with_verifier"]
    assert (a["trajectories"], a["verifier_passed"], a["verifier_failed"], a["pairs"]) == (12, 6, 6, 6)
    assert a["pairwise_agreement"] == (1.0 if honest else 0.0) and a["accuracy"] == (1.0 if honest else 0.0)
    winner = "strong_model" if honest else "weak_model"
    assert bank.entries and {e.preferred_model for e in bank.entries} == {winner}
    assert all(e.evidence["preference"]["preferred_score"] == 5 for e in bank.entries)


def test_the_default_verifier_signal_keeps_the_bank_bytes(tmp_path):
    if pool_dir() != FIXTURE_POOLS:
        pytest.skip("the golden hash is that of the committed fixture pool")
    paths = write_doubles(tmp_path)
    for extra in ([], ["preference=verifier"]):
        out = tmp_path / f"bank{len(extra)}"
        proc = run(build_cmd(paths, tmp_path / f"work{len(extra)}", out) + extra, tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = (out / "entries.jsonl").read_bytes()
        assert hashlib.sha256(data).hexdigest() == LEGACY_TINY_ENTRIES_SHA256
        manifest = json.loads((out / "manifest.json").read_text())
        assert "preference" not in manifest["config"]["stats"]
        assert manifest["config"]["build"]["preference"]["name"] == "verifier"


def test_human_labels_decide_the_pairs(tmp_path):
    """One label prefers the weak (verifier-failed) double on one problem: that is the only pair,
    whatever the verifier says; the entry names its label file and line."""
    from memcollab_eval.bank.store import load_bank

    paths = write_doubles(tmp_path)
    paths["summarizer"] = judged_summarizer(tmp_path)
    problems = build_pool({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, str(pool_dir()), 1234)
    target = next(p for p in problems if p.benchmark == "gsm8k")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"problem_id": target.id, "preferred": "weak_model",
                                  "unpreferred": paths["strong"], "annotator": "test"}) + "\n")
    cmd = [*build_cmd(paths, tmp_path / "work", tmp_path / "bank")[:-len(LEGACY_GATES)], "preference=labels",
           f"preference.labels={labels}", "distill_prompt_version=v3", "distill_samples=1",
           "gates.difference_lint=false", "gates.resolve=false", "gates.validate=false"]
    proc = run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bank = load_bank(tmp_path / "bank")
    assert len(bank.entries) >= 1
    assert {(e.source_problem_id, e.preferred_model, e.unpreferred_model) for e in bank.entries} == \
        {(target.id, "weak_model", "strong_model")}
    assert all(e.evidence["preference"] == {"signal": "labels", "file": "labels.jsonl", "line": 1}
               for e in bank.entries)
    report = bank.manifest.config["stats"]["preference"]
    assert report["labels"] == 1 and report["pairs"] == 1
    assert report["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    # a label outside the pool: exit 2, file, line and field
    labels.write_text(labels.read_text() + json.dumps({"problem_id": "gsm8k/train/nope", "preferred": "weak_model",
                                                       "unpreferred": "strong_model"}) + "\n")
    proc = run(cmd, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{labels}:2: field 'problem_id': 'gsm8k/train/nope' is not a problem of this build's pool" in proc.stderr


def test_a_bad_labels_file_stops_the_build_before_any_model_runs(tmp_path):
    paths = write_doubles(tmp_path)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"problem_id": "p", "preferred": "strong_model", "unpreferred": "somebody"}\n')
    cmd = [*build_cmd(paths, tmp_path / "work", tmp_path / "bank")[:-len(LEGACY_GATES)], "preference=labels",
           f"preference.labels={labels}", "distill_prompt_version=v3"]
    proc = run(cmd, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{labels}:1: field 'unpreferred': 'somebody' is not a source model of this build" in proc.stderr
    assert not (tmp_path / "work" / "trajectories.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["pool=concepts"], "open-ended questions, which have no verifier: use preference=judge"),
    (["pool=concepts", "preference=judge"], "gates.resolve and gates.validate score answers with the verifiers"),
    (["preference=judge", "preference.judge=null"], "preference=judge needs a judge model"),
    (["preference=judge", "preference.rubric_version=v9"], "preference.rubric_version 'v9' is not one of ['v1']"),
    (["preference=judge", "preference.min_margin=0"], "preference.min_margin must lie between 1 and 4"),
    (["preference=judge", "distill_prompt_version=v2"], "exist for distill_prompt_version ['v3'], not 'v2'"),
    (["preference=labels"], "preference=labels needs the file"),
    (["preference=oracle"], "unknown preference 'oracle'"),
    (["preference=judge", "preference.judge=nope"], "unknown judge model 'nope'"),
])
def test_preference_config_errors(args, message, tmp_path):
    proc = run([sys.executable, "-m", "memcollab_eval.build", *args, f"data_dir={tmp_path}", f"work_dir={tmp_path}/w"],
               tmp_path, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_real_judge_through_lm_eval_registry(tmp_path):
    """SmolLM2-135M (the CI model) judges two open-ended questions' answers through lm-eval's registry:
    the build completes and every trajectory has its judge record, with the reply it gave."""
    from memcollab_eval.bank.store import load_bank

    require_smollm2()
    paths = concept_doubles(tmp_path)
    (tmp_path / "smol.yaml").write_text(json.dumps({
        "identity": "smollm2_135m", "model": "llama_cpp", "requires": ["llama_cpp"],
        "model_args": {"model": "smollm2_135m", "n_ctx": 2048, "n_threads": 1, "seed": 7}}))
    paths["judge"] = str(tmp_path / "smol.yaml")
    proc = run(concepts_cmd(paths, tmp_path / "work", tmp_path / "bank", "pool.concepts=2",
                            "preference.judge_batch_size=4", "preference.judge_max_gen_toks=12"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    judged = [json.loads(x) for x in (tmp_path / "work" / "judgments.jsonl").read_text().splitlines()]
    assert len(judged) == 4 and all(r["reply"].strip() and r["completion_tokens"] for r in judged)
    assert all((r["status"] == "ok") == (r["score"] is not None) for r in judged)
    report = load_bank(tmp_path / "bank").manifest.config["stats"]["preference"]
    assert report["judge"] == "smollm2_135m" and report["judged"] == 4
    assert report["unparsed"] == sum(r["score"] is None for r in judged)

