"""Bank building: preference rule, distillation parsing, the abstraction gate, leakage,
and an offline end-to-end build with scripted test doubles (including kill -9 and resume)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import data_dir, pool_dir

from memcollab_eval.construct.distill import parse_lessons
from memcollab_eval.construct.entry_lint import lint_entry
from memcollab_eval.construct.pools import PoolError, PoolProblem, build_pool, check_leakage
from memcollab_eval.construct.preference import apply_ablation, memcollab_pairs, self_contrast_pairs

MODELS = ["strong", "weak"]


@pytest.mark.parametrize(
    "strong, weak, preferred, unpreferred, reason",
    [
        (True, False, "strong", "weak", None),
        (False, True, "weak", "strong", None),
        (False, False, None, None, "all models failed"),
        (True, True, None, None, "all models passed"),
    ],
)
def test_preference_rule_table(strong, weak, preferred, unpreferred, reason):
    passed = {("p", "strong", 0): strong, ("p", "weak", 0): weak}
    pairs, skipped = memcollab_pairs(["p"], passed, MODELS)
    if reason:
        assert pairs == [] and skipped[0].reason == reason
    else:
        assert [(p.preferred[1], p.unpreferred[1]) for p in pairs] == [(preferred, unpreferred)]


def test_preferred_is_paired_with_every_failure_and_ablations_flip_sides():
    models = ["a", "b", "c"]
    passed = {("p", "a", 0): False, ("p", "b", 0): True, ("p", "c", 0): False}
    pairs, _ = memcollab_pairs(["p"], passed, models)
    assert [(p.preferred[1], p.unpreferred[1]) for p in pairs] == [("b", "a"), ("b", "c")]
    assert [(p.preferred[1], p.unpreferred[1]) for p in apply_ablation(pairs, "reversed", 0)] == [("a", "b"), ("c", "b")]
    randomised = apply_ablation(pairs * 20, "random", 0)
    assert {p.preferred[1] for p in randomised} == {"a", "b", "c"}
    assert apply_ablation(pairs * 20, "random", 0) == randomised  # seeded


def test_self_contrast_pairs_own_pass_with_own_fail():
    passed = {("p", "m", 0): False, ("p", "m", 1): True, ("q", "m", 0): True, ("q", "m", 1): True}
    pairs, skipped = self_contrast_pairs(["p", "q"], passed, "m", 2)
    assert [(p.preferred, p.unpreferred) for p in pairs] == [(("p", "m", 1), ("p", "m", 0))]
    assert skipped[0].reason == "all samples passed"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("enforce checking units before adding; avoid mixing minutes and hours", 1),
        ("1. enforce reading the question twice; avoid answering a different quantity\n"
         "- Enforce handling empty input; Avoid indexing an empty list.", 2),
        ("**enforce** testing edge cases; **avoid** assuming non-empty input", 1),
        ("The lesson: be careful with units.", 0),
        ("enforce something without the second half", 0),
        ("", 0),
    ],
)
def test_parse_lessons(reply, expected):
    assert len(parse_lessons(reply)) == expected


def test_a_lesson_repeating_a_prompt_example_is_rejected():
    from memcollab_eval.construct.distill import prompt_examples

    examples = prompt_examples()
    assert len(examples) >= 2
    enforce, avoid = examples[0][len("enforce "):].split("; avoid ")
    result = lint_entry(enforce, avoid, problem="Add two numbers.", trajectories=[], examples=examples)
    assert (result.ok, result.reason) == (False, "copied_example")
    half = lint_entry("considering every case the task allows", examples[1].split("; avoid ")[1], problem="x",
                      trajectories=[], examples=examples)
    assert (half.ok, half.reason) == (False, "copied_example")
    own = lint_entry("isolating the unknown before dividing both sides", "dividing only one side of an equation",
                     problem="Solve for x.", trajectories=[], examples=examples)
    assert own.ok


@pytest.mark.parametrize(
    "enforce, avoid, reason",
    [
        ("computing $20 - $10 before the final step", "forgetting the hat cost", "number"),
        ("tracking what Josh spends in each shop", "mixing up the buyers", "proper_name"),
        ("working out how much more the hat cost than the scarf", "comparing the two things someone buys",
         "problem_specific"),
        ("calling min_jumps on each prefix", "recomputing subproblems", "code_identifier"),
        ("checking the answer equals seventeen halves", "stopping early", None),
        ("re-reading which quantity the question asks for", "reporting an intermediate total", None),
    ],
)
def test_abstraction_gate(enforce, avoid, reason):
    problem = "Josh buys a hat for $20 and a scarf for $10. How much more did the hat cost?"
    result = lint_entry(enforce, avoid, problem=problem, trajectories=["def min_jumps(arr): ..."], gold="10")
    assert result.ok == (reason is None), result
    if reason:
        assert result.reason == reason


def test_pool_excludes_evaluation_problems_and_refuses_leaks(tmp_path):
    src = data_dir()
    if not (src / "gsm8k" / "test.jsonl").exists():
        pytest.skip("offline data not found")
    for rel in ("math500/test.jsonl", "gsm8k/test.jsonl", "mbpp/test.jsonl", "humaneval/HumanEval.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((src / rel).read_bytes())
    leaked = json.loads((src / "gsm8k/test.jsonl").read_text().splitlines()[5])
    leaked["question"] = "  " + leaked["question"].replace(" ", "  ") + " "
    clean = json.loads((pool_dir() / "gsm8k/train.jsonl").read_text().splitlines()[0])
    (tmp_path / "gsm8k/train.jsonl").write_text(json.dumps(leaked) + "\n" + json.dumps(clean) + "\n")
    excluded: dict = {}
    pool = build_pool({"gsm8k_train": None}, str(tmp_path), 0, excluded)
    assert [p.doc["question"] for p in pool] == [clean["question"]]
    assert len(excluded["gsm8k_train"]) == 1
    leaking = PoolProblem("gsm8k/train/x", "gsm8k", "gsm8k_train", "Prealgebra", "money", leaked)
    with pytest.raises(PoolError, match="shares problems with evaluation sets: gsm8k/train/x == gsm8k:"):
        check_leakage([*pool, leaking], str(tmp_path))


# ---- end-to-end with scripted test doubles -------------------------------------------

def oracle_rules(problems) -> list[list[str]]:
    """Scripted-double rules that answer each given problem with its reference solution."""
    from memcollab_eval.adapters import get_spec

    rules = []
    for p in problems:
        key = get_spec(p.benchmark).text(p.doc)[:80]
        if p.benchmark == "mbpp":
            rules.append([key, f"```python\n{p.doc['code']}\n```"])
        else:
            answer = p.doc["answer"] if p.benchmark == "math500" else p.doc["answer"].split("####")[-1].strip()
            rules.append([key, f"So the answer is $\\boxed{{{answer}}}$."])
    return rules


def write_doubles(tmp: Path, delay: float = 0.0) -> dict[str, str]:
    """A strong double that answers every tiny-pool problem correctly, a weak one that never
    does, and a summarizer double: returns the target config paths."""
    from memcollab_eval.adapters import get_spec

    problems = build_pool({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, str(pool_dir()), 1234)
    (tmp / "strong_rules.json").write_text(json.dumps(oracle_rules(problems)))
    summary_rules = [
        ["PROBLEM:\n" + get_spec(problems[0].benchmark).text(problems[0].doc)[:60], "No lessons here, sorry."],
        ["programming problem", "enforce checking the function on the smallest inputs the task allows; "
                                "avoid code that only handles the sizes shown in the examples"],
        ["math problem", "enforce re-reading which quantity the question asks for before answering; "
                         "avoid reporting an intermediate result as the final answer\n"
                         "enforce keeping every quantity in one unit; avoid combining values measured in different units"],
    ]
    (tmp / "summarizer_rules.json").write_text(json.dumps(summary_rules))
    configs = {
        "strong": {"identity": "strong_model", "model": "memcollab_scripted",
                   "model_args": {"rules": str(tmp / "strong_rules.json"), "default": "no idea", "delay": delay}},
        "weak": {"identity": "weak_model", "model": "memcollab_scripted",
                 "model_args": {"default": "The answer is $\\boxed{-7}$.", "delay": delay}},
        "summarizer": {"identity": "summarizer_double", "model": "memcollab_scripted",
                       "model_args": {"rules": str(tmp / "summarizer_rules.json")}},
    }
    paths = {}
    for name, conf in configs.items():
        paths[name] = str(tmp / f"{name}.yaml")
        Path(paths[name]).write_text(json.dumps(conf))  # JSON is valid YAML
    return paths


def build_cmd(paths: dict[str, str], work: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "memcollab_eval.build", f"sources=[{paths['strong']},{paths['weak']}]",
            f"summarizer={paths['summarizer']}", "pool=tiny", "bank.name=tiny_test", f"work_dir={work}",
            f"bank.out_dir={out}", f"data_dir={pool_dir()}", "batch_size=1", *LEGACY_GATES]


# the gates of banks built before evidence gating (conf/build.yaml turns the evidence gates on)
LEGACY_GATES = ["distill_prompt_version=v2", "distill_samples=1", "gates.difference_lint=false",
                "gates.restate_lint=false", "gates.resolve=false", "gates.validate=false",
                "gates.validate_unit=category", "gates.validate_per_category=3"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (pool_dir() / "gsm8k" / "train.jsonl").exists():
        pytest.skip("offline data not found")
    tmp = tmp_path_factory.mktemp("build")
    paths = write_doubles(tmp)
    proc = subprocess.run(build_cmd(paths, tmp / "work", tmp / "bank"), capture_output=True, text=True,
                          timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, paths


def test_end_to_end_build_writes_a_valid_bank(built):
    from memcollab_eval.bank.store import load_bank

    tmp, _ = built
    bank = load_bank(tmp / "bank")
    stats = bank.manifest.config["stats"]
    assert stats["pool_problems"] == 6
    assert stats["pass_rate_by_model"] == {str(tmp / "strong.yaml"): 1.0, str(tmp / "weak.yaml"): 0.0}
    assert stats["rejected"].get("malformed") == 1  # the reply with no lesson, retried once, then skipped
    assert stats["rejected"].get("near_duplicate", 0) > 0
    assert {e.preferred_model for e in bank.entries} == {"strong_model"}
    assert {e.unpreferred_model for e in bank.entries} == {"weak_model"}
    assert all(e.summarizer == "summarizer_double" and e.source_problem_id for e in bank.entries)
    assert {e.source_benchmark for e in bank.entries} <= {"math_train", "gsm8k_train", "mbpp_train"}
    assert bank.manifest.sources == ["strong_model", "weak_model"]
    distill = [json.loads(x) for x in (tmp / "work" / "distill.jsonl").read_text().splitlines()]
    assert sum(len(d["replies"]) == 2 for d in distill) == 1


def test_rerun_regenerates_nothing(built):
    tmp, paths = built
    work = tmp / "work"
    before = {f: (work / f).read_bytes() for f in ("trajectories.jsonl", "verdicts.jsonl", "distill.jsonl")}
    manifest = (tmp / "bank" / "manifest.json").read_bytes()
    proc = subprocess.run(build_cmd(paths, work, tmp / "bank"), capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {f: (work / f).read_bytes() for f in before} == before
    # the bank is left alone: its manifest keeps the real build's wall time and date, not the replay's
    assert (tmp / "bank" / "manifest.json").read_bytes() == manifest
    assert "is up to date (" in proc.stdout and "left as it was" in proc.stdout


def test_self_memory_build_reuses_a_greedy_work_directory_and_self_contrast_is_refused(built, tmp_path):
    """Greedy builds key trajectories alike, so a self-memory bank of the strong model reuses the
    cross-model build's trajectories; a sampled (self-contrast) build may not share them."""
    from memcollab_eval.bank.store import load_bank

    tmp, paths = built
    work = tmp_path / "work"
    work.mkdir()
    for f in ("pool.jsonl", "pool.meta.json", "trajectories.jsonl", "verdicts.jsonl", "distill.jsonl"):
        (work / f).write_bytes((tmp / "work" / f).read_bytes())
    trajs = [json.loads(x) for x in (work / "trajectories.jsonl").read_text().splitlines()]
    for t in trajs:  # make the other model's records visible in the cost figures, were they counted
        t["seconds"] = 100.0 if t["model"] == paths["weak"] else 1.0
    (work / "trajectories.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trajs))
    before = (work / "trajectories.jsonl").read_bytes()
    own = [f"sources=[{paths['strong']}]", f"summarizer={paths['summarizer']}", "pool=tiny", f"work_dir={work}",
           f"data_dir={pool_dir()}", "batch_size=1", *LEGACY_GATES]
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.build", *own, "method=self",
                           "bank.name=self_test", f"bank.out_dir={tmp_path / 'self'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "trajectories.jsonl").read_bytes() == before  # nothing regenerated
    bank = load_bank(tmp_path / "self")
    assert bank.entries and {e.unpreferred_model for e in bank.entries} == {"none"}
    stats = bank.manifest.config["stats"]  # the weak model's records in the shared directory are not counted
    assert stats["pairs_distilled"] == 6 and stats["pass_rate_by_model"] == {paths["strong"]: 1.0}
    assert stats["seconds"]["generation"] == 6.0  # six problems of the strong model, 1 s each
    # each bank in a shared directory keeps its own skip reasons: the weak model's self bank skips
    # every problem, and the strong model's record (nothing skipped) is left as it was
    weak = [f"sources=[{paths['weak']}]", *own[1:], "method=self", "bank.name=self_weak",
            f"bank.out_dir={tmp_path / 'self_weak'}"]
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.build", *weak],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "no_pairs.self_test.jsonl").read_text() == ""
    weak_skips = [json.loads(x) for x in (work / "no_pairs.self_weak.jsonl").read_text().splitlines()]
    assert len(weak_skips) == 6 and {s["reason"] for s in weak_skips} == {"the model failed"}
    assert not (work / "trajectories.meta.json").exists()
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.build", *own, "method=self_contrast",
                           "bank.name=sc_test", f"bank.out_dir={tmp_path / 'sc'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and "holds trajectories made with" in proc.stderr
    assert '"temperature": 0.7' in proc.stderr and not (tmp_path / "sc").exists()


def test_a_second_build_in_a_busy_work_directory_is_refused(built, tmp_path):
    import fcntl

    tmp, paths = built
    work = tmp_path / "work"
    work.mkdir()
    with open(work / ".build.lock", "w") as held:
        held.write("pid 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.run(build_cmd(paths, work, tmp_path / "bank"), capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"another build is running in {work} (pid 4242)" in proc.stderr
    assert not (work / "trajectories.jsonl").exists() and not (tmp_path / "bank").exists()


def test_kill_9_and_resume_gives_the_same_bank(built, tmp_path):
    tmp, _ = built
    paths = write_doubles(tmp_path, delay=0.3)
    work, out = tmp_path / "work", tmp_path / "bank"
    proc = subprocess.Popen(build_cmd(paths, work, out), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    traj = work / "trajectories.jsonl"
    while time.time() < deadline and (not traj.exists() or len(traj.read_text().splitlines()) < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the build finished before it could be killed"
    done_before = len(traj.read_text().splitlines())
    with open(traj, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"problem_id": "torn')
    rerun = subprocess.run(build_cmd(paths, work, out), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(traj.read_text().splitlines()) == 12 and done_before >= 5
    assert (out / "entries.jsonl").read_bytes() == (tmp / "bank" / "entries.jsonl").read_bytes()


def test_corrupted_stage_line_is_reported_with_file_and_line(built, tmp_path):
    tmp, paths = built
    work = tmp_path / "work"
    work.mkdir()
    for f in ("pool.jsonl", "pool.meta.json", "trajectories.jsonl"):
        (work / f).write_bytes((tmp / "work" / f).read_bytes())
    lines = (work / "trajectories.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"problem_id": "x", "model": "m", "sample_idx": 0})
    (work / "trajectories.jsonl").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(build_cmd(paths, work, tmp_path / "bank"), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{work / 'trajectories.jsonl'}:3: missing field 'text'" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["sources=[nope,qwen25_coder_05b]"], "unknown source model 'nope'"),
        (["pool=nope"], "unknown pool 'nope'"),
        (["sources=[qwen25_coder_05b]"], "needs at least two source models"),
        (["method=self"], "built from exactly one model"),
        (["gates.validate_rule=bayes"], "gates.validate_rule 'bayes' is not one of ['net', 'sign_test']"),
        (["gates.validate_alpha=1.5"], "gates.validate_alpha must lie between 0 and 1"),
        (["stop_after=bank"], "stop_after 'bank' is not one of ['pool', 'trajectories', 'verify', 'distill', 'evidence']"),
        (["work_order=backwards"], "work_order 'backwards' is not one of ['forward', 'reverse']"),
    ],
)
def test_build_config_errors(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "memcollab_eval.build", *args, f"data_dir={tmp_path}",
                           f"work_dir={tmp_path}/w"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_heldout_validation_drops_categories_whose_memory_hurts(built, tmp_path):
    """A target that answers correctly without memory and wrongly with it: every category
    group breaks problems, so validation drops it; a target memory cannot hurt keeps all."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct import validate
    from memcollab_eval.retrieve import MEMORY_HEADER

    tmp, paths = built
    bank = load_bank(tmp / "bank")
    pool = [json.loads(x) for x in (tmp / "work" / "pool.jsonl").read_text().splitlines()]
    from memcollab_eval.construct.pools import PoolProblem

    heldout = validate.heldout_problems({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2},
                                        [PoolProblem.from_dict(p) for p in pool], str(pool_dir()), 1234,
                                        {e.category for e in bank.entries}, 3)
    # the memory rule comes first, so it wins whenever memory is in the prompt
    rules = [[MEMORY_HEADER, "The answer is $\\boxed{-7}$."]] + oracle_rules(p for ps in heldout.values() for p in ps)
    (tmp_path / "fragile_rules.json").write_text(json.dumps(rules))
    fragile = tmp_path / "fragile.yaml"
    fragile.write_text(json.dumps({"identity": "fragile", "model": "memcollab_scripted",
                                   "model_args": {"rules": str(tmp_path / "fragile_rules.json")}}))
    for target, expect_kept in ((str(fragile), 0), (paths["strong"], len(bank.entries))):
        work = tmp_path / f"work-{Path(target).stem}"
        work.mkdir()
        for f in ("pool.jsonl", "pool.meta.json", "pool.excluded.json", "trajectories.jsonl",
                  "trajectories.meta.json", "verdicts.jsonl", "distill.jsonl"):
            if (tmp / "work" / f).exists():
                (work / f).write_bytes((tmp / "work" / f).read_bytes())
        out = tmp_path / f"bank-{Path(target).stem}"
        cmd = build_cmd(paths, work, out) + ["gates.validate=true", f"gates.validate_target={target}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        validated = load_bank(out)
        groups = validated.manifest.config["stats"]["validation"]["groups"]
        assert len(validated.entries) == expect_kept, groups
        assert sum(g["problems"] for g in groups.values()) > 0
        if expect_kept == 0:
            assert all(g["broken"] > 0 and not g["kept"] for g in groups.values() if g["problems"])


# ---- issue 17: parsing variants, the DIFFERENCE lint and the evidence gates ----------------

@pytest.mark.parametrize(
    "reply, expected",
    [
        ("enforce checking units before adding. avoid mixing minutes and hours", [("checking units before adding",
                                                                                 "mixing minutes and hours")]),
        ("Enforce: reading what is asked; Avoid: answering another quantity", [("reading what is asked",
                                                                               "answering another quantity")]),
        ("enforce testing the empty case - avoid assuming a non-empty list", [("testing the empty case",
                                                                              "assuming a non-empty list")]),
        ("enforce a; avoid b; avoid c", []),
        # the two-line Markdown layout Qwen2.5-Coder-1.5B wrote for a v3 prompt (demo_v3 build, a training pair)
        ("### Lesson:\n- **Enforce:** subtracting what leaves from the running total.\n"
         "- **Avoid:** adding what leaves to the running total.", [("subtracting what leaves from the running total",
                                                                   "adding what leaves to the running total")]),
        ("Enforce: checking the last index", []),  # half a lesson is not completed by guessing
        ("- Avoid: b\n- Enforce: a", []),  # the halves in the wrong order are not a lesson
    ],
)
def test_parse_lessons_accepts_harmless_variants(reply, expected):
    assert [(x.enforce, x.avoid) for x in parse_lessons(reply)] == expected


def test_a_difference_heading_with_its_text_on_the_next_line_is_read():
    reply = ("### DIFFERENCE:\nThe unpreferred solution added the outgoing amount instead of subtracting it.\n\n"
             "**Lesson:**\n\n- **Enforce:** subtracting outgoing amounts\n- **Avoid:** adding outgoing amounts")
    (lesson,) = parse_lessons(reply)
    assert lesson.difference == "The unpreferred solution added the outgoing amount instead of subtracting it."
    assert (lesson.enforce, lesson.avoid) == ("subtracting outgoing amounts", "adding outgoing amounts")


def test_the_difference_line_is_kept_and_the_lesson_must_be_about_it():
    from memcollab_eval.construct.entry_lint import about_difference

    reply = ("DIFFERENCE: the unpreferred loop stopped one element early; the preferred one reached the end\n"
             "enforce running the loop bounds through the last element; avoid ranges that stop early")
    lesson = parse_lessons(reply)[0]
    assert lesson.difference.startswith("the unpreferred loop stopped")
    assert about_difference(lesson.enforce, lesson.avoid, lesson.difference).ok
    off = about_difference("re-reading what the question asks", "answering a different quantity", lesson.difference)
    assert (off.ok, off.reason) == (False, "not_about_difference")
    assert about_difference("x things", "y things", "none").reason == "no_difference"


@pytest.mark.parametrize(("enforce", "avoid", "restated"), [
    # written by the 1.5B summarizer in two committed banks: both halves say the same thing
    ("multiply the number of days by the number of hours worked per day",
     "multiplying the number of days by the number of hours worked per day", True),
    ("dividing the total by the number of groups", "dividing the total by the number of groups", True),
    # real contrasts that share most of their words
    ("checking for factors up to the square root of n", "checking for factors greater than the square root", False),
    ("starting from the first element of the list", "starting from the last element", False),
    ("subtracting the same number from both sides", "subtracting the same number from different sides", False),
    ("using the correct unit for each rate", "using the same unit for different rates", False),
])
def test_a_lesson_whose_avoid_half_repeats_its_enforce_half_is_rejected(enforce, avoid, restated):
    from memcollab_eval.construct.entry_lint import restates_itself

    result = restates_itself(enforce, avoid)
    assert result.ok is not restated
    assert result.reason == ("restates_enforce" if restated else "")


def test_the_restate_gate_runs_in_the_build(built, tmp_path):
    """gates.restate_lint (on in conf/build.yaml) drops a lesson that forbids what it asks, and the
    manifest counts it; the legacy gates keep it, as the committed banks were built."""
    from memcollab_eval.bank.store import load_bank

    tmp, paths = built
    rules = json.loads(Path(tmp / "summarizer_rules.json").read_text())
    rules[-1][1] = "enforce adding each group once to the total; avoid adding each group once to the total\n" + \
        rules[-1][1].split("\n")[0]
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    summarizer = tmp_path / "summarizer.yaml"
    summarizer.write_text(json.dumps({"identity": "summarizer_double", "model": "memcollab_scripted",
                                      "model_args": {"rules": str(tmp_path / "rules.json")}}))
    counts = {}
    for gate in ("false", "true"):
        work, out = tmp_path / f"work-{gate}", tmp_path / f"bank-{gate}"
        _copy_pool(tmp, work)
        cmd = build_cmd({**paths, "summarizer": str(summarizer)}, work, out) + [f"gates.restate_lint={gate}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        bank = load_bank(out)
        counts[gate] = (sum(e.enforce == e.avoid for e in bank.entries),
                        bank.manifest.config["stats"]["rejected"].get("restates_enforce", 0))
    assert counts["false"][0] >= 1 and counts["false"][1] == 0
    assert counts["true"][0] == 0 and counts["true"][1] >= 1


def _copy_pool(built_tmp: Path, work: Path) -> None:
    work.mkdir()
    for f in ("pool.jsonl", "pool.meta.json", "pool.excluded.json"):
        if (built_tmp / "work" / f).exists():
            (work / f).write_bytes((built_tmp / "work" / f).read_bytes())


def _pool(built_tmp: Path):
    from memcollab_eval.construct.pools import PoolProblem

    return [PoolProblem.from_dict(json.loads(x)) for x in (built_tmp / "work" / "pool.jsonl").read_text().splitlines()]


def _memory_only_double(tmp: Path, name: str, problems) -> str:
    """A double that answers a problem right only when memory precedes its prompt (the memory block
    and the prompt are joined by a blank line), and wrong otherwise."""
    from memcollab_eval.adapters import get_spec

    rules = [["\n\n" + get_spec(p.benchmark).prompt(p.doc), answer]
             for p, (_, answer) in zip(problems, oracle_rules(problems), strict=True)]
    (tmp / f"{name}_rules.json").write_text(json.dumps(rules))
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps({"identity": f"{name}_model", "model": "memcollab_scripted",
                                "model_args": {"rules": str(tmp / f"{name}_rules.json"),
                                               "default": "The answer is $\\boxed{-7}$."}}))
    return str(path)


def _legacy_without(*keys: str) -> list[str]:
    return [a for a in LEGACY_GATES if a.split("=")[0] not in keys]


def test_resolve_gate_admits_only_lessons_that_fix_their_own_problem(built, tmp_path):
    """The unpreferred model re-solves the lesson's source problem with the lesson in its prompt:
    a learner that succeeds with memory gets every lesson admitted, with the evidence in the
    bank; the weak double, which never succeeds, gets none."""
    from memcollab_eval.bank.store import load_bank

    tmp, paths = built
    learner = _memory_only_double(tmp_path, "learner", _pool(tmp))
    runs = {}
    for name, source in (("learner", learner), ("weak", paths["weak"])):
        work, out = tmp_path / f"work-{name}", tmp_path / f"bank-{name}"
        _copy_pool(tmp, work)
        cmd = build_cmd({**paths, "weak": source}, work, out)[:-len(LEGACY_GATES)] + \
            _legacy_without("gates.resolve") + ["gates.resolve=true"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = load_bank(out)
    admitted = runs["learner"]
    report = admitted.manifest.config["stats"]["evidence"]["resolve"]
    assert len(admitted.entries) > 0 and report["tried"] == report["admitted"] == len(admitted.entries)
    for e in admitted.entries:
        assert e.evidence["resolve"]["model"] == "learner_model" and e.evidence["resolve"]["passed"] == 1
        assert e.evidence["resolve"]["problem_id"] == e.source_problem_id
    refused = runs["weak"]
    stats = refused.manifest.config["stats"]
    assert len(refused.entries) == 0 and stats["rejected"]["failed_resolve"] == stats["evidence"]["resolve"]["tried"] > 0


def test_heldout_validation_per_lesson_records_fixed_and_broken_problems(built, tmp_path):
    """Per lesson: a target that is right only with memory is fixed on every held-out problem
    (admitted, the problem ids in its evidence); a target that memory breaks is refused."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct import validate
    from memcollab_eval.retrieve import MEMORY_HEADER

    tmp, paths = built
    bank = load_bank(tmp / "bank")
    heldout = validate.heldout_problems({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, _pool(tmp),
                                        str(pool_dir()), 1234, {e.category for e in bank.entries}, 2)
    problems = [p for ps in heldout.values() for p in ps]
    helped = _memory_only_double(tmp_path, "helped", problems)
    fragile_rules = [[MEMORY_HEADER, "The answer is $\\boxed{-7}$."]] + oracle_rules(problems)
    (tmp_path / "fragile_rules.json").write_text(json.dumps(fragile_rules))
    fragile = tmp_path / "fragile.yaml"
    fragile.write_text(json.dumps({"identity": "fragile", "model": "memcollab_scripted",
                                   "model_args": {"rules": str(tmp_path / "fragile_rules.json")}}))
    for target, expect_all in ((helped, True), (str(fragile), False)):
        work, out = tmp_path / f"work-{Path(target).stem}", tmp_path / f"bank-{Path(target).stem}"
        _copy_pool(tmp, work)
        for f in ("trajectories.jsonl", "trajectories.meta.json", "verdicts.jsonl", "distill.jsonl"):
            if (tmp / "work" / f).exists():
                (work / f).write_bytes((tmp / "work" / f).read_bytes())
        cmd = build_cmd(paths, work, out)[:-len(LEGACY_GATES)] + \
            _legacy_without("gates.validate", "gates.validate_unit", "gates.validate_per_category") + \
            ["gates.validate=true", "gates.validate_unit=lesson", "gates.validate_per_category=2",
             f"gates.validate_target={target}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = load_bank(out)
        report = result.manifest.config["stats"]["evidence"]["heldout"]
        assert report["tried"] == len(bank.entries) and sum(report["problems_per_category"].values()) > 0
        flips = report["flips"]  # the helped target: every try on a failing problem fixed; the fragile one: broken
        assert (flips["fix_rate"] == 1.0) if expect_all else (flips["fixed"] == 0), flips
        if expect_all:
            assert len(result.entries) == len(bank.entries)
            for e in result.entries:
                held = e.evidence["heldout"]
                assert held["fixed"] == held["problems"] and held["broken"] == [] and held["problems"]
        else:
            assert len(result.entries) == 0
            assert result.manifest.config["stats"]["rejected"]["failed_heldout"] == len(bank.entries)


def test_batched_build_hands_requests_over_together_and_never_mixes_with_sequential(built, tmp_path):
    """batch_size=4: trajectories, distillation (retries included) and the gates go to the backend a batch per
    call; with the deterministic doubles the bank is the same as the one-at-a-time build's, the work
    directory says it was batched, and continuing it one request at a time is refused, in one line."""
    tmp, paths = built
    cmd = [c if c != "batch_size=1" else "batch_size=4" for c in build_cmd(paths, tmp_path / "work", tmp_path / "bank")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "bank" / "entries.jsonl").read_bytes() == (tmp / "bank" / "entries.jsonl").read_bytes()
    meta = json.loads((tmp_path / "work" / "trajectories.meta.json").read_text())
    assert meta == {"batched": True, "protocol": "single_turn"}
    sequential = subprocess.run(build_cmd(paths, tmp_path / "work", tmp_path / "bank2"), capture_output=True,
                                text=True, timeout=300, cwd=tmp)
    assert sequential.returncode == 1, sequential.stderr[-2000:]
    assert "holds trajectories made with" in sequential.stderr and "set batch_size to match" in sequential.stderr
    assert "Traceback" not in sequential.stderr


def test_a_rebuild_never_replaces_the_base_of_later_versions(built, tmp_path):
    """`bank retire` made v2 from the built bank; a build with other entries into the same directory is
    refused with the path and the way out, the bank is left as it was, and the same build into another
    bank.out_dir writes from the work directory without generating again."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.bank.versions import Retirement, retire

    tmp, paths = built
    bank_dir, work = tmp_path / "bank", tmp_path / "work"
    shutil.copytree(tmp / "bank", bank_dir)
    shutil.copytree(tmp / "work", work, ignore=shutil.ignore_patterns(".build.lock"))
    retire(bank_dir, [Retirement(load_bank(bank_dir).entries[0].id, "test")])
    before = {p.relative_to(bank_dir): p.read_bytes() for p in bank_dir.rglob("*") if p.is_file()}
    stages = {f: (work / f).read_bytes() for f in ("trajectories.jsonl", "distill.jsonl")}
    same = subprocess.run(build_cmd(paths, work, bank_dir), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert same.returncode == 0 and "is up to date (" in same.stdout, same.stderr[-2000:]  # v1 is what it builds
    other_gates = ["bank.notes=rebuilt"]  # a different manifest: the bank there is not this build's
    proc = subprocess.run(build_cmd(paths, work, bank_dir) + other_gates, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    assert f"{bank_dir} holds later versions (v2)" in proc.stderr and "another bank.out_dir" in proc.stderr
    assert {p.relative_to(bank_dir): p.read_bytes() for p in bank_dir.rglob("*") if p.is_file()} == before
    proc = subprocess.run(build_cmd(paths, work, tmp_path / "rebuilt") + other_gates, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_bank(tmp_path / "rebuilt").manifest.notes == "rebuilt"
    assert {f: (work / f).read_bytes() for f in stages} == stages


def test_trajectories_made_in_another_work_dir_are_taken_not_generated_again(built, tmp_path):
    """One source per process: stop_after=trajectories in a work_dir of its own, then the main build takes
    those records (trajectories_from) and generates only the rest; a directory of another pool or other
    generation settings is refused with the file named."""
    from memcollab_eval.bank.store import load_bank

    tmp, paths = built
    side, main = tmp_path / "side", tmp_path / "main"
    _copy_pool(tmp, side)
    _copy_pool(tmp, main)

    def cmd(work: Path, out: Path, *extra: str, sources: str) -> list[str]:
        base = [a for a in build_cmd(paths, work, out) if not a.startswith("sources=")]
        return base + [f"sources=[{sources}]", *extra]

    proc = subprocess.run(cmd(side, tmp_path / "side_bank", "method=self", "stop_after=trajectories",
                              sources=paths["weak"]), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stopped after the trajectories stage" in proc.stdout and "no bank written" in proc.stdout
    assert not (tmp_path / "side_bank").exists() and not (side / "verdicts.jsonl").exists()
    side_records = {json.loads(x)["problem_id"]: json.loads(x) for x in (side / "trajectories.jsonl").read_text().splitlines()}
    assert len(side_records) == 6 and {r["model"] for r in side_records.values()} == {paths["weak"]}

    proc = subprocess.run(cmd(main, tmp_path / "bank", f"trajectories_from=[{side}]",
                              sources=f"{paths['strong']},{paths['weak']}"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine = [json.loads(x) for x in (main / "trajectories.jsonl").read_text().splitlines()]
    taken = [r for r in mine if r["model"] == paths["weak"]]
    assert taken == [side_records[r["problem_id"]] for r in taken] and len(taken) == 6  # the records, as made
    assert sum(r["model"] == paths["strong"] for r in mine) == 6  # the other source was generated here
    stats = load_bank(tmp_path / "bank").manifest.config["stats"]
    assert stats["trajectories_imported"] == 6
    assert stats["pass_rate_by_model"] == {paths["strong"]: 1.0, paths["weak"]: 0.0}
    # the same bank as a build that generated everything itself (the fixture's)
    assert load_bank(tmp_path / "bank").manifest.sha256 == load_bank(tmp / "bank").manifest.sha256

    other_pool = tmp_path / "other_pool"
    shutil.copytree(side, other_pool)
    lines = (other_pool / "pool.jsonl").read_text().splitlines()
    (other_pool / "pool.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    batched = tmp_path / "batched"
    shutil.copytree(side, batched)
    (batched / "trajectories.meta.json").write_text(json.dumps({"batched": True, "protocol": "single_turn"}))
    for src, message in ((other_pool, f"{other_pool / 'pool.jsonl'} is not the pool of this build"),
                         (batched, f"{batched / 'trajectories.meta.json'}: made with")):
        work = tmp_path / f"w-{src.name}"
        _copy_pool(tmp, work)
        proc = subprocess.run(cmd(work, tmp_path / f"b-{src.name}", f"trajectories_from=[{src}]",
                                  sources=f"{paths['strong']},{paths['weak']}"),
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
        assert not (work / "trajectories.jsonl").exists() or not (work / "trajectories.jsonl").read_text()


def test_sign_test_rule():
    from memcollab_eval.construct.evidence import HeldoutRule, sign_test_p

    assert sign_test_p(0, 0) == 1.0 and sign_test_p(1, 0) == 0.5 and sign_test_p(5, 0) == 1 / 32
    assert sign_test_p(6, 1) == 8 / 128 and sign_test_p(7, 1) == 9 / 256 and sign_test_p(1, 3) == 15 / 16
    net, sign = HeldoutRule("net", 1, 1), HeldoutRule("sign_test", alpha=0.05)
    assert net.admits(1, 0) and net.admits(3, 1) and not net.admits(3, 2) and not net.admits(1, 1)
    assert not sign.admits(1, 0) and not sign.admits(4, 0) and sign.admits(5, 0)
    assert not sign.admits(6, 1) and sign.admits(7, 1) and not sign.admits(0, 0)
    assert "p <= 0.05" in sign.text() and net.text() == "fixed - broken >= 1 and broken <= 1"


def test_heldout_sign_test_rule_reuses_the_outcomes_and_records_p(built, tmp_path):
    """gates.validate_rule=sign_test judges the same held-out outcomes by an exact sign test: 2 fixed and 0
    broken (p = 0.25) pass the count rule but not alpha 0.05; with alpha 0.3 they pass, and the evidence
    carries p. Changing the rule generates nothing again."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct import validate

    tmp, paths = built
    bank = load_bank(tmp / "bank")
    heldout = validate.heldout_problems({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, _pool(tmp),
                                        str(pool_dir()), 1234, {e.category for e in bank.entries}, 2)
    helped = _memory_only_double(tmp_path, "helped", [p for ps in heldout.values() for p in ps])
    work = tmp_path / "work"
    _copy_pool(tmp, work)
    for f in ("trajectories.jsonl", "trajectories.meta.json", "verdicts.jsonl", "distill.jsonl"):
        if (tmp / "work" / f).exists():
            (work / f).write_bytes((tmp / "work" / f).read_bytes())
    base = build_cmd(paths, work, tmp_path / "unused")[:-len(LEGACY_GATES)] + \
        _legacy_without("gates.validate", "gates.validate_unit", "gates.validate_per_category") + \
        ["gates.validate=true", "gates.validate_unit=lesson", "gates.validate_per_category=2",
         f"gates.validate_target={helped}"]
    results, outcomes = {}, []
    for name, rule in (("net", []), ("sign05", ["gates.validate_rule=sign_test"]),
                       ("sign30", ["gates.validate_rule=sign_test", "gates.validate_alpha=0.3"])):
        out = tmp_path / f"bank-{name}"
        cmd = [a if not a.startswith("bank.out_dir=") else f"bank.out_dir={out}" for a in base] + rule
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = load_bank(out)
        outcomes.append((work / "validation_lessons.jsonl").read_bytes())
    assert outcomes[0] == outcomes[1] == outcomes[2]
    n = len(bank.entries)
    assert len(results["net"].entries) == n and len(results["sign05"].entries) == 0
    assert results["sign05"].manifest.config["stats"]["rejected"]["failed_heldout"] == n
    assert len(results["sign30"].entries) == n
    for e in results["sign30"].entries:
        held = e.evidence["heldout"]
        assert len(held["fixed"]) == 2 and held["broken"] == [] and held["p_value"] == 0.25
        assert held["rule"] == "one-sided exact sign test on fixed vs broken, p <= 0.3"
    assert "p_value" not in results["net"].entries[0].evidence["heldout"]


def _imported(work: Path, log_name: str) -> int:
    from memcollab_eval.construct.imports import imported_total

    return imported_total(work, log_name)


def test_two_processes_share_one_source_by_meeting_in_the_middle(built, tmp_path):
    """The strong source's trajectories made by two processes at once: the main build forward, a side
    build in reverse (work_order=reverse), each taking the other's records before every batch. Both
    generate some, together they make each record about once, and the bank is the one-process bank."""
    from memcollab_eval.bank.store import load_bank

    tmp, _ = built
    paths = write_doubles(tmp_path, delay=3.0)
    side, main = tmp_path / "side", tmp_path / "main"
    _copy_pool(tmp, side)
    _copy_pool(tmp, main)
    side_cmd = [a for a in build_cmd(paths, side, tmp_path / "side_bank") if not a.startswith("sources=")]
    side_cmd += [f"sources=[{paths['strong']}]", "method=self", "stop_after=trajectories", "work_order=reverse",
                 f"trajectories_from=[{main}]"]
    side_proc = subprocess.Popen(side_cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (side / "trajectories.jsonl").exists():
        time.sleep(0.05)
    main_proc = subprocess.run(build_cmd(paths, main, tmp_path / "bank") + [f"trajectories_from=[{side}]"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    _, side_err = side_proc.communicate(timeout=300)
    assert side_proc.returncode == 0, side_err[-2000:]
    assert main_proc.returncode == 0, main_proc.stderr[-2000:]
    main_made = 6 - _imported(main, "trajectories.imports.jsonl")  # strong records the main build generated
    side_made = 6 - _imported(side, "trajectories.imports.jsonl")
    assert main_made >= 1 and side_made >= 1, (main_made, side_made)
    assert main_made + side_made <= 8  # at most one batch each made twice, where they met
    first = [json.loads(x)["problem_id"] for x in (side / "trajectories.jsonl").read_text().splitlines()][0]
    assert first == _pool(tmp)[-1].id  # the side process started at the end of the list
    assert load_bank(tmp_path / "bank").manifest.sha256 == load_bank(tmp / "bank").manifest.sha256


def test_summarizer_replies_made_in_another_work_dir_are_taken(built, tmp_path):
    """stop_after=distill in a side directory, then distill_from: the main build asks the summarizer nothing
    and writes the one-process bank. Replies made with other settings, or for another text of the
    pair, are not taken."""
    from memcollab_eval.bank.store import load_bank

    tmp, paths = built

    def with_trajectories(work: Path) -> None:
        _copy_pool(tmp, work)
        for f in ("trajectories.jsonl", "trajectories.meta.json"):
            if (tmp / "work" / f).exists():
                (work / f).write_bytes((tmp / "work" / f).read_bytes())

    side, main = tmp_path / "side", tmp_path / "main"
    with_trajectories(side)
    with_trajectories(main)
    proc = subprocess.run(build_cmd(paths, side, tmp_path / "side_bank") + ["stop_after=distill", "work_order=reverse"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "stopped after the distill stage" in proc.stdout, proc.stderr[-2000:]
    replies = (side / "distill.jsonl").read_text().splitlines()
    assert replies and not (tmp_path / "side_bank").exists()
    assert json.loads((side / "distill.meta.json").read_text())["summarizer"] == paths["summarizer"]

    proc = subprocess.run(build_cmd(paths, main, tmp_path / "bank") + [f"distill_from=[{side}]"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _imported(main, "distill.imports.jsonl") == len(replies)  # every reply taken, none asked for again
    assert (main / "distill.jsonl").read_text().splitlines() == replies
    bank = load_bank(tmp_path / "bank")
    assert bank.manifest.sha256 == load_bank(tmp / "bank").manifest.sha256
    assert bank.manifest.config["stats"]["distill_replies_imported"] == len(replies)

    # other settings: refused, with the file named
    other = tmp_path / "other"
    shutil.copytree(side, other)
    meta = json.loads((other / "distill.meta.json").read_text())
    (other / "distill.meta.json").write_text(json.dumps({**meta, "temperature": 0.3}))
    fresh = tmp_path / "fresh"
    with_trajectories(fresh)
    proc = subprocess.run(build_cmd(paths, fresh, tmp_path / "b2") + [f"distill_from=[{other}]"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and f"{other / 'distill.meta.json'}: made with" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr

    # another text of a pair's trajectory there: its replies are not taken, the rest are
    edited = tmp_path / "edited"
    shutil.copytree(side, edited)
    lines = [json.loads(x) for x in (edited / "trajectories.jsonl").read_text().splitlines()]
    weak = next(r for r in lines if r["model"] == paths["weak"])
    weak["text"] += " (edited)"
    (edited / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    fresh2 = tmp_path / "fresh2"
    with_trajectories(fresh2)
    proc = subprocess.run(build_cmd(paths, fresh2, tmp_path / "b3") + [f"distill_from=[{edited}]"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    taken = _imported(fresh2, "distill.imports.jsonl")
    assert taken == len(replies) - sum(weak["problem_id"] in json.loads(r)["pair"] for r in replies)
    assert load_bank(tmp_path / "b3").manifest.sha256 == load_bank(tmp / "bank").manifest.sha256


def test_gate_outcomes_made_in_another_work_dir_are_taken(built, tmp_path):
    """stop_after=evidence in a side directory (work_order=reverse), then evidence_from: the main build
    re-solves and validates nothing itself and writes the one-process bank, its manifest counting the
    outcomes taken. Outcomes of another held-out target are refused, with the file named."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct import validate

    tmp, paths = built
    bank = load_bank(tmp / "bank")
    heldout = validate.heldout_problems({"math_train": 2, "gsm8k_train": 2, "mbpp_train": 2}, _pool(tmp),
                                        str(pool_dir()), 1234, {e.category for e in bank.entries}, 2)
    learner = _memory_only_double(tmp_path, "learner", _pool(tmp) + [p for ps in heldout.values() for p in ps])
    gates = _legacy_without("gates.resolve", "gates.validate", "gates.validate_unit", "gates.validate_per_category") + \
        ["gates.resolve=true", "gates.validate=true", "gates.validate_unit=lesson", "gates.validate_per_category=2"]

    def cmd(work: Path, out: Path, *extra: str) -> list[str]:
        if not work.exists():
            _copy_pool(tmp, work)
        return build_cmd({**paths, "weak": learner}, work, out)[:-len(LEGACY_GATES)] + gates + list(extra)

    alone, side, main = tmp_path / "alone", tmp_path / "side", tmp_path / "main"
    proc = subprocess.run(cmd(alone, tmp_path / "bank-alone"), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = load_bank(tmp_path / "bank-alone")
    assert len(one.entries) > 0  # the learner is fixed by every lesson: something passes both gates

    proc = subprocess.run(cmd(side, tmp_path / "bank-side", "stop_after=evidence", "work_order=reverse"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "stopped after the evidence stage" in proc.stdout, proc.stderr[-2000:]
    assert f"evidence_from=[{side}]" in proc.stdout and not (tmp_path / "bank-side").exists()
    made = {f: (side / f).read_text().splitlines() for f in ("resolve.jsonl", "validation_lessons.jsonl")}
    assert all(made.values())

    proc = subprocess.run(cmd(main, tmp_path / "bank-main", f"evidence_from=[{side}]"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for f, lines in made.items():  # everything taken, nothing asked again
        assert sorted((main / f).read_text().splitlines()) == sorted(lines)
    result = load_bank(tmp_path / "bank-main")
    assert result.manifest.sha256 == one.manifest.sha256
    assert result.manifest.config["stats"]["evidence_outcomes_imported"] == sum(map(len, made.values()))

    other = tmp_path / "other"
    proc = subprocess.run(cmd(other, tmp_path / "bank-other", f"evidence_from=[{side}]",
                              f"gates.validate_target={paths['weak']}"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and f"{side / 'evidence.meta.json'}: made with" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_resolve_placebo_shows_a_learner_that_any_lesson_fixes(built, tmp_path):
    """gates.resolve_placebo: each source problem is also re-solved with another pair's lesson. The
    learner double passes whenever memory precedes its prompt, so re-solve admits every lesson, and the
    placebo passes just as often: the manifest shows no lesson-specific effect (p = 1)."""
    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct.evidence import lesson_key, placebo_lessons

    tmp, paths = built
    learner = _memory_only_double(tmp_path, "learner", _pool(tmp))
    work, out = tmp_path / "work", tmp_path / "bank"
    _copy_pool(tmp, work)
    cmd = build_cmd({**paths, "weak": learner}, work, out)[:-len(LEGACY_GATES)] + \
        _legacy_without("gates.resolve") + ["gates.resolve=true", "gates.resolve_placebo=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bank = load_bank(out)
    report = bank.manifest.config["stats"]["evidence"]["resolve"]
    placebo = report["placebo"]
    assert placebo["lessons"] > 0 and placebo["own_passed"] == placebo["placebo_passed"] == placebo["lessons"]
    assert placebo["own_only"] == placebo["placebo_only"] == 0 and placebo["p_value_own_better"] == 1.0
    # the placebo is another problem's lesson text on this lesson's problem, recorded beside the real outcomes
    entries = [e.to_dict() for e in bank.entries]
    controls = placebo_lessons(entries)
    records = [json.loads(x) for x in (work / "resolve.jsonl").read_text().splitlines()]
    keys = {r["key"] for r in records}
    for key, control in controls.items():
        own = next(e for e in entries if lesson_key(e) == key)
        assert control["source_problem_id"] == own["source_problem_id"]
        assert (control["enforce"], control["avoid"]) != (own["enforce"], own["avoid"])
        assert lesson_key(control) in keys


def test_the_gate_log_names_every_candidate_and_the_gate_that_stopped_it(built, tmp_path):
    """gates.<bank>.jsonl: one line per candidate lesson (and per reply that gave none), with the
    gate that stopped it; its counts are the manifest's rejections, and the admitted lines name
    exactly the bank's entries. With re-solve on the weak double every linted lesson stops there,
    its answer and the placebo's recorded."""
    from collections import Counter

    from memcollab_eval.bank.store import load_bank
    from memcollab_eval.construct.gate_log import read_gate_log

    tmp, paths = built
    log = read_gate_log(tmp / "work" / "gates.tiny_test.jsonl")
    bank = load_bank(tmp / "bank")
    stats = bank.manifest.config["stats"]
    gates = Counter(c.gate for c in log)
    assert {g: n for g, n in gates.items() if g != "admitted"} == {g: n for g, n in stats["rejected"].items() if n}
    assert sorted(c.bank_id for c in log if c.gate == "admitted") == sorted(e.id for e in bank.entries)
    by_id = {e.id: e for e in bank.entries}
    for c in log:
        if c.gate == "admitted":
            assert (c.enforce, c.avoid, c.source_problem_id) == (
                by_id[c.bank_id].enforce, by_id[c.bank_id].avoid, by_id[c.bank_id].source_problem_id)
    assert any(c.gate == "malformed" and not c.enforce for c in log)

    work, out = tmp_path / "work", tmp_path / "bank"
    _copy_pool(tmp, work)
    cmd = build_cmd(paths, work, out)[:-len(LEGACY_GATES)] + \
        _legacy_without("gates.resolve") + ["gates.resolve=true", "gates.resolve_placebo=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = read_gate_log(work / "gates.tiny_test.jsonl")
    resolved = [c for c in log if "resolve" in c.evidence]
    assert resolved and all(c.gate == "failed_resolve" and c.evidence["resolve"]["passed"] == 0 for c in resolved)
    placebos = [c.evidence["resolve"]["placebo_passed"] for c in resolved if "placebo_passed" in c.evidence["resolve"]]
    assert placebos and set(placebos) == {0}  # a lesson with no partner of its source or domain has no placebo
    assert len(resolved) == load_bank(out).manifest.config["stats"]["rejected"]["failed_resolve"]


def test_gate_report_summarizes_the_log(built, tmp_path):
    """scripts/gate_report.py: the counts per gate and the admitted lessons' text, from the log alone;
    a missing log is named."""
    from memcollab_eval.bank.store import load_bank

    tmp, _ = built
    script = Path(__file__).resolve().parents[1] / "scripts" / "gate_report.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp / "work" / "gates.tiny_test.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    bank = load_bank(tmp / "bank")
    stats = bank.manifest.config["stats"]
    assert f"| malformed | {stats['rejected']['malformed']} |" in proc.stdout
    assert f"| admitted | {len(bank.entries)} |" in proc.stdout and f"Admitted ({len(bank.entries)}):" in proc.stdout
    for e in bank.entries:
        assert f"`{e.id}`" in proc.stdout
    assert "No lesson reached held-out validation." in proc.stdout
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "gates.none.jsonl")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "gates.none.jsonl does not exist" in missing.stderr
