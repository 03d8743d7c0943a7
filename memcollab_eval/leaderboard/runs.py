"""Reading finished runs for the leaderboard.

Reads lm-eval's own results/samples files (so runs of ``lm_eval --include_path tasks`` work
too), plus ``.hydra/config.yaml`` when the run came from our CLI, and builds per target one
table: rows = memory sources, columns = benchmarks. Per-problem samples give bootstrap CIs and
*paired* deltas against the no-memory row. Runs are only combined when everything except
target / bank / retrieval matches (limit, seed, lm-eval version, per-benchmark problem set,
prompt protocol, single-turn or agent mode, max_gen_toks, model backend, batched or sequential decoding):
otherwise a result
could move because the problems or the protocol changed, not the memory, so such runs go to
separate tables under a loud WARNING. When a (target, memory source, benchmark) was run more than once the latest run
is used and the others are named in the notes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from memcollab_eval.agent.transcript import TranscriptError, decode_transcript
from memcollab_eval.config import BENCHMARK_NAMES
from memcollab_eval.leaderboard.records import UNKNOWN, LeaderboardError, Run, Sample, TaskResult
from memcollab_eval.retrieve import RetrievalConfig
from memcollab_eval.sample_fields import SampleFieldError, sample_acc
from memcollab_eval.sample_fields import SampleFields as F
from memcollab_eval.subsets import describe

_TASK = re.compile(rf"^({'|'.join(BENCHMARK_NAMES)})_(nomemory|memcollab)$")

def find_results(paths: Sequence[str | Path]) -> list[Path]:
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise LeaderboardError(f"{p} does not exist")
        for f in ([p] if p.is_file() else sorted(p.rglob("results_*.json"))):
            found[f.resolve()] = None
    return list(found)


def hydra_config(results_dir: Path) -> tuple[Path, dict] | None:
    for d in (results_dir, results_dir.parent):
        if (cfg := d / ".hydra" / "config.yaml").is_file():
            return d, yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    return None


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _read_samples(path: Path) -> tuple[Sample, ...]:
    """Per-problem records (fields: :mod:`memcollab_eval.sample_fields`). The memory tokens and turns are optional
    (doc or top level): real token counts replace the chars/4 estimate when present."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            s = json.loads(line) if line.strip() else None
        except json.JSONDecodeError as exc:
            raise LeaderboardError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from None
        if s is None:
            continue
        doc = s.get("doc") or {}
        try:  # a record without its score must not count as a failure: the row would drop silently
            acc = sample_acc(s)
        except SampleFieldError as exc:
            raise LeaderboardError(f"{path} line {lineno}: {exc}") from None
        tokens, turns, abst = (doc.get(k, s.get(k)) for k in (F.MEMORY_TOKENS, F.TURNS, F.ABSTAINED))
        out.append(Sample(str(doc.get(F.ID, f"doc_id:{s.get('doc_id')}")), acc,
                          None if abst is None else bool(abst), len(doc.get(F.MEMORY) or ""),
                          None if tokens is None else int(tokens), None if turns is None else float(turns),
                          F.EPISODE in doc, _protocol_version(doc, s)))
    return tuple(out)


def _protocol_version(doc: dict, sample: dict) -> int | None:
    """The agent protocol version of a logged episode: the doc says it since version 4; before,
    only the transcript in the response did."""
    episode = doc.get(F.EPISODE)
    if not isinstance(episode, dict):
        return None
    if episode.get("protocol_version") is not None:
        return int(episode["protocol_version"])
    response = (sample.get("filtered_resps") or [None])[0]
    try:
        transcript = decode_transcript(response) if isinstance(response, str) else None
    except TranscriptError:
        return None
    version = None if transcript is None else transcript.data.get("protocol_version")
    return None if version is None else int(version)


def _identity(data: dict, hydra: dict | None) -> tuple[str, str, str]:
    """(target, origin, bank): the Hydra config, else our task metadata, else lm-eval's model args."""
    if hydra:
        target, bank = hydra.get("target") or {}, hydra.get("bank") or {}
        return str(target.get("identity", UNKNOWN)), "hydra", str(bank.get("name", UNKNOWN))
    for cfg in data.get("configs", {}).values():
        meta = (cfg.get("metadata") or {}).get("memcollab")
        if isinstance(meta, dict) and meta.get("target"):
            return str(meta["target"]), "metadata", str(meta.get("bank", UNKNOWN))
    conf = data.get("config") or {}
    args = conf.get("model_args")
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    for key in ("pretrained", "model", "model_path", "path", "model_name"):
        if isinstance(args, dict) and args.get(key):
            return str(args[key]), "model_args", UNKNOWN
    return (str(conf["model"]), "model_args", UNKNOWN) if conf.get("model") else (UNKNOWN, UNKNOWN, UNKNOWN)


def _source(bank: str, hydra: dict | None) -> str:
    """Row name of a memory variant: the bank, plus the retrieval settings that are not default."""
    if not hydra:
        return f"bank {bank}" if bank == UNKNOWN else bank
    raw = dict(hydra.get("retrieval") or {})
    default = RetrievalConfig()
    try:  # min_score null means the ranker's own threshold: compare with that ranker's default
        own = RetrievalConfig(**{k: raw[k] for k in ("ranker", "encoder") if raw.get(k) is not None})
    except (TypeError, ValueError):
        own = default
    diffs = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(raw.items())
             if v is not None and getattr(own if k == "min_score" else default, k, v) != v]
    return f"{bank} [{', '.join(diffs)}]" if diffs else bank


def run_record(run_dir: Path) -> dict[str, Any]:
    """A run's ``summary.json`` record (the evaluate job writes it when a run finishes); {} when the
    run has none or it cannot be read, as for runs of plain lm-eval."""
    try:
        record = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def decoding(run_dir: Path, backend: str) -> str | None:
    """How a llama_cpp run decoded: ``n_parallel=N`` from its ``summary.json``.

    Why a setting: batched greedy output depends on what else is in the batch, so a row decoded
    8 at a time and one decoded alone can differ for reasons that are not the memory. A llama_cpp
    run whose summary names no ``n_parallel`` predates batched decoding: it decoded one request at
    a time. Other backends (and runs without a summary) get no value and are not split by it.
    """
    record = run_record(run_dir) if backend == "llama_cpp" else {}
    if not record:
        return None
    model = record.get("model")
    info = (model.get("backend_info") if isinstance(model, dict) else None) or {}
    return f"n_parallel={_num(info.get('n_parallel', 1))}"


def load_run(results_file: Path) -> Run | None:
    """One run from its lm-eval results file; None when it holds none of our tasks."""
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LeaderboardError(f"{results_file}: not a readable lm-eval results file ({exc})") from None
    stamp = results_file.stem[len("results_"):]
    found = hydra_config(results_file.parent)
    run_dir, hydra = found if found else (results_file.parent, None)
    target, origin, bank = _identity(data, hydra)
    conf = data.get("config") or {}
    limit = _num(conf.get("limit", (hydra or {}).get("limit")))
    if hydra and (hydra.get("limits") or hydra.get("subset", "first") != "first"):  # chosen indices, no lm-eval limit
        limit = describe(hydra.get("limit"), dict(hydra.get("limits") or {}), str(hydra.get("subset", "first")))
    settings = {
        "limit": limit,
        "seed": _num(conf.get("random_seed", (hydra or {}).get("seed"))),
        # not lm-eval's commit: git_hash is that of the working directory (this project, when run from a
        # checkout); it changes with every commit, so it is reported in the notes instead of splitting tables
        "lm_eval_version": str(data.get("lm_eval_version", "?")),
        "backend": str((hydra or {}).get("target", {}).get("model") or conf.get("model") or "?"),
    }
    if (how := decoding(run_dir, settings["backend"])) is not None:
        settings["decoding"] = how
    tasks = []
    for task, res in (data.get("results") or {}).items():
        m = _TASK.match(task)
        if not m or "acc,none" not in res:
            continue
        bench, with_memory = m.group(1), m.group(2) == "memcollab"
        sample_file = results_file.parent / f"samples_{task}_{stamp}.jsonl"
        samples = _read_samples(sample_file) if sample_file.is_file() else ()
        injected = res.get("memory_injected,none")
        tasks.append(TaskResult(
            bench, with_memory, float(res["acc,none"]),
            int(((data.get("n-samples") or {}).get(task) or {}).get("effective", len(samples))),
            None if (injected is None or not with_memory) else 1.0 - float(injected), samples))
        tcfg = (data.get("configs") or {}).get(task, {})
        gen = dict(tcfg.get("generation_kwargs") or {})
        if not with_memory or f"protocol[{bench}]" not in settings:
            settings[f"max_gen_toks[{bench}]"] = _num(gen.pop("max_gen_toks", "?"))
            settings[f"protocol[{bench}]"] = _short_hash({
                "doc_to_text": tcfg.get("doc_to_text"), "output_type": tcfg.get("output_type"),
                "num_fewshot": tcfg.get("num_fewshot"), "repeats": tcfg.get("repeats"), "gen": gen,
                "version": (data.get("versions") or {}).get(task), "chat_template": data.get("chat_template") is not None,
                "system_instruction": data.get("system_instruction_sha")})
            ids = sorted({s.id for s in samples})
            settings[f"dataset[{bench}]"] = _short_hash(ids) if ids else f"n={tasks[-1].n} (no samples)"
    if not tasks:
        return None
    # Single-turn vs agent runs are never comparable; read from the samples, so lm-eval-only runs
    # and runs from before the protocol option existed are classified too.
    settings["mode"] = "agent" if any(s.agent for t in tasks for s in t.samples) else "single-turn"
    versions = sorted({s.agent_protocol for t in tasks for s in t.samples if s.agent_protocol is not None})
    if versions:  # episodes of different protocol versions are scored by different rules
        settings["agent_protocol"] = ",".join(f"v{v}" for v in versions)
    if hydra and "protocol" in hydra:
        settings["protocol_config"] = _short_hash(hydra["protocol"])
    return Run(run_dir, results_file, float(data.get("date") or results_file.stat().st_mtime), target, origin, bank,
               _source(bank, hydra), settings, tuple(tasks), commit=str(data.get("git_hash") or ""))
