"""report.html and the run summary: per problem the memory, the retrieval record (or why it
abstained), responses, verdicts and flips; the one-sentence headline; the logged retrieved
entries as a JSON list in either form; the page as Chromium shows it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from browser import probe, screenshot

from memcollab_eval.adapters import get_spec
from memcollab_eval.bank.store import MemoryEntry, load_bank, save_bank
from memcollab_eval.evaluation import report
from memcollab_eval.evaluation.report import collect, reach, render_report
from memcollab_eval.evaluation.summary import BenchmarkRow, MemoryReach, headline, model_record, summarize
from memcollab_eval.evaluation.tasks import RETRIEVED_FEATURE, MemorySetup, ProcessDocs, problem_features
from memcollab_eval.retrieve import RetrievalConfig
from memcollab_eval.sample_fields import (
    RETRIEVED_KEYS,
    ProblemFields,
    RetrievedRef,
    SampleFieldError,
    retrieved_ids,
    retrieved_refs,
)

RUNS = Path(__file__).resolve().parent / "data" / "runs" / "qwen25_coder_05b"
PACKAGE_BANKS = Path(__file__).resolve().parent.parent / "memcollab_eval" / "banks"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "outputs" / "screenshots"  # git-ignored: look at them


def golden_demo_run() -> Path:
    """The committed demo run with the default retrieval (its samples log ids and scores as JSON text)."""
    (run,) = [p for p in (RUNS / "demo").iterdir() if "model_filter: true" in (p / ".hydra" / "config.yaml").read_text()]
    return run


@pytest.fixture(scope="module")
def golden_problems():
    bank = load_bank(PACKAGE_BANKS / "demo_handmade")
    return collect(golden_demo_run(), bank=bank, retrieval=RetrievalConfig(), target="qwen25_coder_05b")


# ---- the logged retrieved entries ---------------------------------------------------------------

def test_retrieved_entries_read_in_both_forms():
    old = json.dumps([{"id": "demo-009", "score": 0.2368}, {"id": "demo-010", "score": 0.05}])
    new = [RetrievedRef("demo-009", 0.2368, "enforce a; avoid b", "m1", "m2", "gsm8k", "gsm8k/train/1").to_doc()]
    assert retrieved_ids(old) == ["demo-009", "demo-010"] and retrieved_ids(new) == ["demo-009"]
    assert retrieved_refs(old)[0] == RetrievedRef("demo-009", 0.2368)  # no text: older runs logged ids only
    assert retrieved_refs(new)[0].text == "enforce a; avoid b" and retrieved_refs(new)[0].source_problem_id
    assert retrieved_ids("") == retrieved_ids(None) == retrieved_ids([]) == retrieved_ids("[]") == []
    for bad in ("{not json", json.dumps({"id": "x"}), [{"score": 1.0}], [{"id": "x", "score": "high"}]):
        with pytest.raises(SampleFieldError, match="memcollab_retrieved"):
            retrieved_refs(bad)


def test_retrieved_entries_have_one_dataset_schema_on_every_row_even_all_empty():
    """lm-eval builds a datasets.Dataset from the docs: with memory on some rows, none on others
    (abstentions), and none anywhere (the no-memory twin), the column keeps one type."""
    bank = load_bank(PACKAGE_BANKS / "demo_handmade")
    spec = get_spec("gsm8k")
    rows = [{"question": "A shop sells 3 apples for $2. How much do 12 apples cost in total money?", "answer": "#### 8"},
            {"question": "zzzz qqqq", "answer": "#### 1"}]
    source = datasets.Dataset.from_list(rows)
    setup = MemorySetup(bank, RetrievalConfig(), "qwen25_coder_05b")
    with_memory = ProcessDocs(spec, setup)(source)
    plain = ProcessDocs(spec, None)(source)
    mixed = ProcessDocs(spec, setup)(datasets.Dataset.from_list(rows[1:]))  # abstains on every row
    for ds in (with_memory, plain, mixed):
        assert ds.features["memcollab_retrieved"] == RETRIEVED_FEATURE
    got = with_memory[0]["memcollab_retrieved"]
    assert got and isinstance(got, list) and set(got[0]) == set(RETRIEVED_KEYS)
    assert got[0]["text"] in with_memory[0]["memcollab_memory"] and got[0]["preferred_model"]
    assert with_memory[1]["memcollab_retrieved"] == [] and with_memory[1]["memcollab_abstained"]
    assert plain[0]["memcollab_retrieved"] == [] and mixed[0]["memcollab_retrieved"] == []
    merged = datasets.concatenate_datasets([with_memory, plain, mixed])  # one schema: they concatenate
    assert len(merged) == 5
    fields = ProblemFields("i", "p", "", "c", "s", (), False, "math", "", "").to_doc()
    assert set(problem_features()) == set(fields)


# ---- reading a run ---------------------------------------------------------------------------

def test_golden_run_old_string_form_with_texts_from_the_bank(golden_problems):
    problems = golden_problems
    assert len(problems) == 16 and {p.benchmark for p in problems} == {"math500", "gsm8k", "mbpp", "humaneval"}
    got = reach(problems)
    # the outcomes tests/data/runs/make_runs.py scripted (no memory vs demo)
    assert {b: (r.prompts, r.reached, r.fixed, r.broken) for b, r in got.items()} == {
        "math500": (4, 3, 1, 0), "gsm8k": (4, 4, 2, 1), "mbpp": (4, 3, 1, 0), "humaneval": (4, 4, 0, 1)}
    assert sum(r.flipped_without_memory for r in got.values()) == 1  # scripted: mbpp/13 flips with no memory
    reached = [p for p in problems if p.reached]
    assert all(p.retrieved and all(r.text.startswith("enforce ") and r.preferred_model for r in p.retrieved)
               for p in reached)  # the run logged ids only: texts and sources come from the bank
    abstained = [p for p in problems if p.abstained]
    assert len(abstained) == 2 and all("below min_score 0.05" in p.reason for p in abstained)
    assert all("candidate entries of this category" in p.reason_detail for p in abstained)


def _entry(i: int, category: str, model: str, enforce: str) -> MemoryEntry:
    return MemoryEntry(id=f"e{i}", enforce=enforce, avoid="guessing", category=category, subcategory="",
                       preferred_model=model, unpreferred_model="weak", source_benchmark="gsm8k",
                       source_problem_id=f"gsm8k/train/{i}")


def _sample(pid: str, acc: float, *, memory: str = "", retrieved: object = (), category: str = "Algebra",
            question: str = "solve the linear equation for x", response: str = "The answer is 1.") -> str:
    doc = {"question": question, "answer": "#### 1", "memcollab_id": pid, "memcollab_prompt": question,
           "memcollab_memory": memory, "memcollab_category": category, "memcollab_subcategory": "",
           "memcollab_retrieved": list(retrieved), "memcollab_abstained": not memory,
           "memcollab_verdict": {"status": "pass" if acc else "fail", "extracted": "1", "detail": "d"}}
    return json.dumps({"doc_id": 0, "doc": doc, "arguments": {"gen_args_0": {"arg_0": f"<user>: {memory}{question}"}},
                       "resps": [[response]], "filtered_resps": [response], "acc": acc})


def write_run(run: Path, plain: list[str], mem: list[str]) -> Path:
    folder = run / "model"
    folder.mkdir(parents=True)
    (folder / "samples_gsm8k_nomemory_2026-01-01T00-00-00.jsonl").write_text("\n".join(plain) + "\n")
    (folder / "samples_gsm8k_memcollab_2026-01-01T00-00-00.jsonl").write_text("\n".join(mem) + "\n")
    return run


def test_every_reason_retrieval_abstains_is_named(tmp_path):
    bank = save_bank(tmp_path / "bank", [_entry(1, "Algebra", "target", "isolating the linear variable"),
                                         _entry(2, "Geometry", "other", "drawing the figure")], name="t")
    memory = "Lessons:\n- enforce isolating the linear variable; avoid guessing\n\n"
    ref = RetrievedRef("e1", 0.61, "enforce isolating the linear variable; avoid guessing", "target", "weak",
                       "gsm8k", "gsm8k/train/1").to_doc()
    run = write_run(tmp_path / "run",
                    [_sample("p1", 0.0), _sample("p2", 1.0), _sample("p3", 1.0), _sample("p4", 0.0)],
                    [_sample("p1", 1.0, memory=memory, retrieved=[ref]),             # fixed by memory
                     _sample("p2", 1.0, category="Geometry"),                        # no Geometry entry for target
                     _sample("p3", 0.0, question="count the red marbles in a bag"),  # only weak matches: broken
                     _sample("p4", 0.0, category="Number Theory")])                  # no entry of the category
    problems = collect(run, bank=bank, retrieval=RetrievalConfig(), target="target")
    by = {p.id: p for p in problems}
    assert by["p1"].reached and by["p1"].flip == "fixed" and by["p1"].retrieved[0].text.startswith("enforce")
    assert by["p2"].reason == "had no entry of their category for target"
    assert "the bank has 1 entries of that category (from pairs of other, weak)" in by["p2"].reason_detail
    assert by["p3"].reason.startswith("had candidates that all scored below min_score 0.05")
    assert "shares no indexed word" in by["p3"].reason_detail and by["p3"].flip == "broken"
    assert "categories it has for target: Algebra (1)" in by["p4"].reason_detail
    nobody = collect(run, bank=bank, retrieval=RetrievalConfig(), target="my_model")
    assert {p.reason for p in nobody if p.abstained} == {"found no entry involving my_model in the bank"}
    assert "retrieval=no_model_filter" in nobody[1].reason_detail
    assert {p.reason for p in collect(run, bank=bank, retrieval=RetrievalConfig(top_k=0), target="target")
            if p.abstained} == {"were skipped by retrieval.top_k=0"}
    # p1's memory came from this bank: with a threshold above its score the explanation says the run differs
    strict = collect(run, bank=bank, retrieval=RetrievalConfig(min_score=0.0), target="target")
    assert {p.id: p.reason for p in strict}["p3"] == "for a reason this bank cannot reproduce"

    r = reach(problems)["gsm8k"]
    assert (r.prompts, r.reached, r.fixed, r.broken, r.flipped_without_memory) == (4, 1, 1, 0, 1)
    rows = summarize({"results": {"gsm8k_nomemory": {"acc,none": 0.5}, "gsm8k_memcollab": {"acc,none": 0.5,
                                                                                          "memory_injected,none": 0.25}},
                      "n-samples": {"gsm8k_nomemory": {"effective": 4}}}, ["gsm8k"], reach(problems))
    sentence = headline(rows)
    assert sentence.startswith("Memory reached 1 of the 4 prompts (retrieval abstained on 3: 2 had no entry of "
                               "their category for target; 1 had candidates that all scored below min_score 0.05)")
    assert "with it 1 problem was fixed and 0 broken" in sentence
    assert "1 problem without memory flipped as well" in sentence

    page = render_report(rows, {"target": "target", "backend": "memcollab_scripted", "bank": "t"}, problems)
    assert "<mark>Lessons:\n- enforce isolating the linear variable; avoid guessing\n\n</mark>" in page
    assert page.count("class='problem") == 4 and "class='problem flip fixed reached'" in page
    assert "<script" not in page and "http" not in page  # self-contained: no script, no external asset


def test_headline_when_memory_reached_nothing_or_there_is_no_bank():
    base = dict(benchmark="gsm8k", n=5, acc_nomemory=0.2, no_answer_nomemory=0.0)
    none_reached = BenchmarkRow(**base, acc_memory=0.2, abstain_rate=1.0, no_answer_memory=0.0,
                                reach=MemoryReach(5, 0, {"had no entry of their category for q": 5}))
    assert headline([none_reached]) == ("Memory reached none of the 5 prompts (retrieval abstained on all: 5 had no "
                                        "entry of their category for q); so the with-memory column measures nothing "
                                        "about the bank.")
    assert headline([BenchmarkRow(**base, acc_memory=None, abstain_rate=None, no_answer_memory=None)]).startswith(
        "No bank")
    unlogged = BenchmarkRow(**base, acc_memory=0.4, abstain_rate=0.6, no_answer_memory=0.0)
    assert headline([unlogged]).startswith("Memory reached 2 of 5 prompts; the samples were not logged")


def test_a_response_cannot_inject_markup(tmp_path):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    run = write_run(tmp_path / "run", [_sample("p1", 0.0, response=hostile)], [_sample("p1", 0.0, response=hostile)])
    page = render_report([], {}, collect(run, bank=None, retrieval=None, target="t"))
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_model_record_hashes_a_local_model_file(tmp_path):
    from test_config import compose_eval

    cfg = compose_eval(["+target=scripted", "+bank=none"])
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)

    class Backend:
        model_path, model_name = model, str(model)

        def generate_until(self, requests):  # pragma: no cover - only its presence matters
            return []

    class Cache:  # as lm-eval's CachingLM wraps a backend
        lm = Backend()

        def generate_until(self, requests):  # pragma: no cover
            return []

    got = model_record(cfg, Cache())
    import hashlib
    assert got["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest() and got["path"] == str(model)
    assert got["sha256_source"] == "hashed at the end of the run"
    assert model_record(cfg, object())["sha256"] is None  # a server or a test double: no file to hash


def test_report_command_remakes_the_page_of_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(golden_demo_run(), run)
    assert report.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Memory reached 14 of the 16 prompts") and (run / "report.html").is_file()
    assert report.main([str(tmp_path / "nothing")]) == 2


# ---- the page in a real browser -----------------------------------------------------------------

def test_report_in_headless_chromium(tmp_path, golden_problems):
    run = tmp_path / "run"
    shutil.copytree(golden_demo_run(), run)
    assert report.main([str(run)]) == 0
    page = run / "report.html"
    everything = probe(page)
    assert len(everything["problems"]) == 16 and everything["sections"] == 4 and not everything["overflow"]
    flips = probe(page, fragment="#flips")
    expected = [p.id for p in golden_problems if p.flip]
    assert flips["problems"] == expected and len(expected) == 7  # 4 fixed + 2 broken + 1 without memory
    assert probe(page, fragment="#broken")["problems"] == [p.id for p in golden_problems if p.flip == "broken"]
    assert len(probe(page, fragment="#abstained")["problems"]) == 2
    assert not probe(page, width=700)["overflow"]  # a narrow window wraps, it does not scroll sideways
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, fragment in (("report", ""), ("report_flips", "#flips")):
        screenshot(page, SCREENSHOTS / f"{name}.png", fragment=fragment)
