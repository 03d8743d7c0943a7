"""Regenerate the golden leaderboard fixture runs: ``python tests/data/runs/make_runs.py``.

Why scripted: tests must know the right per-problem outcomes without a model. Each run is a
real run of the scripted test double through the real entry points (``python -m memcollab_eval``
for the Hydra runs, lm-eval's own CLI for the ``lm_eval_cli`` run), fed a script of answers
(the reference answer or a wrong one, in lm-eval's request order: task by task, document by
document), so that every problem's ``acc`` equals the OUTCOMES tables below. The runs are then
trimmed (long document fields, responses and lm-eval's environment dump removed) to keep the
fixtures small; nothing the leaderboard reads is changed. The script checks the outcomes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DATA = Path(os.environ.get("MEMCOLLAB_DATA_DIR", REPO.parent / "shared" / "data"))
LIMIT = 4
BENCHES = ("math500", "gsm8k", "mbpp", "humaneval")
FILES = {"math500": "math500/test.jsonl", "gsm8k": "gsm8k/test.jsonl", "mbpp": "mbpp/test.jsonl",
         "humaneval": "humaneval/HumanEval.jsonl"}
NOMEM = {"math500": [1, 0, 0, 1], "gsm8k": [1, 1, 0, 0], "mbpp": [0, 1, 0, 0], "humaneval": [1, 0, 0, 0]}
# run name -> (CLI overrides, memory-variant outcomes or None for bank=none)
RUNS = {
    "none": (["+bank=none"], None),
    "demo": (["+bank=demo"], {"math500": [1, 1, 0, 1], "gsm8k": [1, 0, 1, 1], "mbpp": [0, 1, 1, 1],
                              "humaneval": [0, 0, 0, 0]}),
    "demo_nofilter": (["+bank=demo", "retrieval=no_model_filter"],
                      {"math500": [1, 0, 0, 0], "gsm8k": [1, 1, 0, 0], "mbpp": [1, 1, 0, 0],
                       "humaneval": [1, 1, 0, 0]}),
}
CLI_GSM8K = {"nomemory": [0, 1, 0, 0], "memcollab": [1, 1, 0, 0]}
WRONG_MATH = "I am not sure. The answer is $\\boxed{-12345}$."
WRONG_CODE = "```python\ndef unrelated_helper():\n    return None\n```"


def docs(bench: str) -> list[dict]:
    with open(DATA / FILES[bench], encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(LIMIT), f, strict=False)]


def answer(bench: str, doc: dict, correct: bool) -> str:
    if bench in ("math500", "gsm8k"):
        gold = doc["answer"] if bench == "math500" else doc["answer"].split("####")[-1].strip()
        return f"Reasoning.\nThe answer is $\\boxed{{{gold}}}$." if correct else WRONG_MATH
    if not correct:
        return WRONG_CODE
    code = doc["code"] if bench == "mbpp" else doc["prompt"] + doc["canonical_solution"]
    return f"```python\n{code}\n```"


def script(plan: list[tuple[str, list[int]]], path: Path) -> None:
    items = [answer(b, d, bool(ok)) for b, outcomes in plan for d, ok in zip(docs(b), outcomes, strict=False)]
    path.write_text(json.dumps(items))


def trim_run(results_dir: Path) -> None:
    for res in results_dir.glob("results_*.json"):
        data = json.loads(res.read_text())
        data["pretty_env_info"] = "(trimmed)"
        for cfg in data.get("configs", {}).values():
            cfg.pop("fewshot_config", None)
        res.write_text(json.dumps(data))
    for path in results_dir.glob("samples_*.jsonl"):
        out = []
        for line in path.read_text().splitlines():
            s = json.loads(line)
            doc = {k: v for k, v in s["doc"].items() if k.startswith("memcollab_") and k != "memcollab_prompt"}
            doc["memcollab_verdict"]["detail"] = doc["memcollab_verdict"]["detail"][:80]
            keep = {k: s[k] for k in ("doc_id", "target", "filter", "metrics", "acc", "no_answer", "memory_injected")}
            out.append(json.dumps({**keep, "doc": doc}))
        path.write_text("\n".join(out) + "\n")


def check(results_dir: Path, expected: dict[str, list[int]]) -> None:
    for task, outcomes in expected.items():
        (path,) = results_dir.glob(f"samples_{task}_*.jsonl")
        got = [int(json.loads(line)["acc"]) for line in path.read_text().splitlines()]
        assert got == outcomes, (path, got, outcomes)


def hydra_runs(tmp: Path) -> None:
    for name, (overrides, mem) in RUNS.items():
        plan = [(f"{b}", o) for b in BENCHES for o in ([NOMEM[b]] + ([mem[b]] if mem else []))]
        script_path = tmp / f"{name}.json"
        script([(b, o) for b, o in plan], script_path)
        subprocess.run([sys.executable, "-m", "memcollab_eval", "+target=scripted", *overrides,
                        "target.identity=qwen25_coder_05b", f"data_dir={DATA}", f"limit={LIMIT}",
                        f"output_dir={HERE}", f"+target.model_args.script={script_path}"],
                       check=True, cwd=tmp, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        run = max((HERE / "qwen25_coder_05b").glob("*/*/.hydra"), key=lambda p: p.stat().st_mtime).parent
        (run / ".hydra" / "hydra.yaml").unlink()
        (run / "cli.log").unlink(missing_ok=True)
        (results_dir,) = {p.parent for p in run.rglob("results_*.json")}
        expected = {f"{b}_nomemory": NOMEM[b] for b in BENCHES}
        expected.update({f"{b}_memcollab": mem[b] for b in BENCHES} if mem else {})
        check(results_dir, expected)
        trim_run(results_dir)


def lm_eval_cli_run(tmp: Path) -> None:
    """The YAML tasks through lm-eval's own CLI (no Hydra): a local-data copy of tasks/."""
    tasks = tmp / "tasks"
    tasks.mkdir()
    shutil.copy(REPO / "tasks" / "memcollab_hooks.py", tasks)
    for name in ("gsm8k_nomemory", "gsm8k_memcollab"):
        text = (REPO / "tasks" / f"{name}.yaml").read_text()
        text = re.sub(r"dataset_path: .*\ndataset_name: .*\n",
                      f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {DATA / FILES['gsm8k']}\n", text)
        (tasks / f"{name}.yaml").write_text(text)
    script_path = tmp / "cli.json"
    script([("gsm8k", CLI_GSM8K["nomemory"]), ("gsm8k", CLI_GSM8K["memcollab"])], script_path)
    out = HERE / "lm_eval_cli"
    code = "import memcollab_eval.models.scripted; from lm_eval.__main__ import cli_evaluate; cli_evaluate()"
    subprocess.run([sys.executable, "-c", code, "--model", "memcollab_scripted",
                    "--model_args", f"pretrained=scripted-double,script={script_path}",
                    "--include_path", str(tasks), "--tasks", "gsm8k_nomemory,gsm8k_memcollab",
                    "--limit", str(LIMIT), "--log_samples", "--apply_chat_template", "--output_path", str(out)],
                   check=True, cwd=tmp,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "MEMCOLLAB_BANK": str(REPO / "memcollab_eval" / "banks" / "demo_handmade"),
                        "MEMCOLLAB_TARGET": "qwen25_coder_15b"})
    (results_dir,) = {p.parent for p in out.rglob("results_*.json")}
    check(results_dir, {f"gsm8k_{k}": v for k, v in CLI_GSM8K.items()})
    trim_run(results_dir)


def main() -> None:
    for old in ("qwen25_coder_05b", "lm_eval_cli"):
        shutil.rmtree(HERE / old, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        hydra_runs(Path(tmp))
        lm_eval_cli_run(Path(tmp))


if __name__ == "__main__":
    main()
