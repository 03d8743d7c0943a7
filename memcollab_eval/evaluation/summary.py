"""The run's summary: accuracy with vs without memory per benchmark, what memory reached, and a
record of the run precise enough to cite (``summary.md`` and ``summary.json``).

Why a record: a number in a table is only worth citing when a reader can tell exactly what
produced it. So beside the table the summary names the target and its backend, the bank by
name, version, sha256 and entry count, the model file by sha256 (when there is a file), the
seed, the problem selection, the sampling settings each request asked for (and what the backend
filled in), the wall time and the decoding speed.

Why a sentence: with a small bank, retrieval abstains on most problems, and a table whose
with-memory column equals the no-memory one does not say that memory never reached the
prompts. :func:`headline` says it in words: how many prompts got memory, why the others did not,
and what it changed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from memcollab_eval.bank.store import BankError, MemoryBank, load_bank
from memcollab_eval.config import EvalConf
from memcollab_eval.models.embedded import EMBEDDED_MODELS
from memcollab_eval.models.file_integrity import marker_matches, sha256_file
from memcollab_eval.models.llamacpp_sampling import sampler_args
from memcollab_eval.subsets import describe

__all__ = ["BenchmarkRow", "MemoryReach", "format_record", "format_table", "headline", "rows_from_summary",
           "run_record", "summarize", "write_summary"]


@dataclass(frozen=True)
class MemoryReach:
    """What memory did on one benchmark, read from the logged samples of the twins.

    ``abstained`` counts the memory-twin prompts that got no memory, by reason (a phrase that reads
    after a count: "3 had no entry of their category for ..."). ``fixed`` / ``broken`` count the
    flips against the no-memory twin among the prompts that got memory; ``flipped_without_memory``
    those among the prompts that did not (with greedy decoding there should be none).
    """

    prompts: int
    reached: int
    abstained: dict[str, int] = field(default_factory=dict)
    fixed: int = 0
    broken: int = 0
    flipped_without_memory: int = 0


@dataclass(frozen=True)
class BenchmarkRow:
    benchmark: str
    n: int
    acc_nomemory: float
    acc_memory: float | None
    abstain_rate: float | None
    no_answer_nomemory: float
    no_answer_memory: float | None
    turns_nomemory: float = float("nan")
    turns_memory: float | None = None
    reach: MemoryReach | None = None  # None: no memory twin, or its samples were not logged

    @property
    def delta(self) -> float | None:
        return None if self.acc_memory is None else self.acc_memory - self.acc_nomemory


def summarize(results: dict, benchmarks: Sequence[str],
              reach: Mapping[str, MemoryReach] | None = None) -> list[BenchmarkRow]:
    """One row per benchmark from lm-eval's aggregated results (plus, per benchmark, what memory
    reached, read from the samples by :mod:`memcollab_eval.evaluation.report`)."""
    rows = []
    for benchmark in benchmarks:
        plain = results["results"].get(f"{benchmark}_nomemory", {})
        mem = results["results"].get(f"{benchmark}_memcollab")
        n = results.get("n-samples", {}).get(f"{benchmark}_nomemory", {}).get("effective", 0)
        rows.append(BenchmarkRow(
            benchmark=benchmark, n=n, acc_nomemory=plain.get("acc,none", float("nan")),
            acc_memory=None if mem is None else mem.get("acc,none"),
            abstain_rate=None if mem is None else 1.0 - mem.get("memory_injected,none", 0.0),
            no_answer_nomemory=plain.get("no_answer,none", float("nan")),
            no_answer_memory=None if mem is None else mem.get("no_answer,none"),
            turns_nomemory=plain.get("turns,none", float("nan")),
            turns_memory=None if mem is None else mem.get("turns,none"),
            reach=None if mem is None or reach is None else reach.get(benchmark),
        ))
    return rows


def rows_from_summary(data: Mapping[str, Any]) -> list[BenchmarkRow]:
    """The rows of a written ``summary.json`` (what the report reads when it is made again later)."""
    names = {f.name for f in fields(BenchmarkRow)}
    rows = []
    for raw in data.get("rows") or []:
        values = {k: (float("nan") if v is None and k in ("acc_nomemory", "no_answer_nomemory", "turns_nomemory")
                      else v) for k, v in raw.items() if k in names}
        reach = values.pop("reach", None)
        rows.append(BenchmarkRow(**values, reach=None if reach is None else MemoryReach(**reach)))
    return rows


def format_table(rows: Sequence[BenchmarkRow]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    def turns(x: float | None) -> str:
        return "-" if x is None or x != x else f"{x:.2f}"

    def reached(r: BenchmarkRow) -> str:
        if r.reach is None:
            return "-"
        return f"{r.reach.reached} of {r.reach.prompts} ({r.reach.fixed} fixed, {r.reach.broken} broken)"

    lines = ["| benchmark | n | acc no memory | acc with memory | delta | retrieval abstained | memory reached "
             "| no answer (no mem / mem) | turns (no mem / mem) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        delta = "-" if r.delta is None else f"{100 * r.delta:+.1f}"
        lines.append(f"| {r.benchmark} | {r.n} | {pct(r.acc_nomemory)} | {pct(r.acc_memory)} | {delta} | "
                     f"{pct(r.abstain_rate)} | {reached(r)} | {pct(r.no_answer_nomemory)} / {pct(r.no_answer_memory)} | "
                     f"{turns(r.turns_nomemory)} / {turns(r.turns_memory)} |")
    return "\n".join(lines)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def headline(rows: Sequence[BenchmarkRow]) -> str:
    """One sentence: how many prompts got memory, why the others did not, and what it changed."""
    mem = [r for r in rows if r.acc_memory is not None]
    if not mem:
        return "No bank (bank=none): every prompt ran without memory, so there is nothing to compare."
    if any(r.reach is None for r in mem):
        n = sum(r.n for r in mem)
        reached = sum(round(r.n * (1.0 - (r.abstain_rate or 0.0))) for r in mem)
        return (f"Memory reached {reached} of {n} prompts; the samples were not logged (log_samples=false), so "
                "why retrieval abstained and which problems flipped are not known.")
    prompts, reached = sum(r.reach.prompts for r in mem), sum(r.reach.reached for r in mem)  # type: ignore[union-attr]
    reasons: Counter[str] = Counter()
    for r in mem:
        reasons.update(r.reach.abstained)  # type: ignore[union-attr]
    fixed, broken = sum(r.reach.fixed for r in mem), sum(r.reach.broken for r in mem)  # type: ignore[union-attr]
    noise = sum(r.reach.flipped_without_memory for r in mem)  # type: ignore[union-attr]
    text = f"memory reached {'none' if reached == 0 else reached} of the {prompts} prompts"
    abstained = prompts - reached
    if abstained:
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        text += f" (retrieval abstained on {'all' if reached == 0 else abstained}: {why})"
    if reached == 0:
        text += "; so the with-memory column measures nothing about the bank"
    else:
        text += (f"; with it {_plural(fixed, 'problem was', 'problems were')} fixed and {broken} broken "
                 f"(against the no-memory twin)")
    if noise:
        text += (f"; {_plural(noise, 'problem', 'problems')} without memory flipped as well, so the twins were "
                 "not decoded alike")
    return text[0].upper() + text[1:] + "."


# ---- the run record ------------------------------------------------------------------------

def _innermost(lm: Any) -> Any:
    """The backend under the wrappers (lm-eval's CachingLM ``.lm``, the agent's ``.inner``)."""
    seen: set[int] = set()
    while id(lm) not in seen:
        seen.add(id(lm))
        inner = getattr(lm, "inner", None) or getattr(lm, "lm", None)
        if inner is None or not hasattr(inner, "generate_until"):
            break
        lm = inner
    return lm


def model_record(cfg: EvalConf, lm: Any) -> dict[str, Any]:
    """The model as a reader can check it: its name, the file and its sha256 when there is a local
    file (an embedded GGUF: its pinned hash, which the loader verified; another file: hashed here),
    and what the backend reports about itself."""
    inner = _innermost(lm)
    args = dict(cfg.target.model_args)
    name = str(args.get("model") or args.get("pretrained") or args.get("model_path") or cfg.target.model)
    out: dict[str, Any] = {"name": name, "path": None, "sha256": None, "sha256_source": None}
    path = getattr(inner, "model_path", None)
    if path is not None and Path(path).is_file():
        path = Path(path)
        out["path"] = str(path)
        known = EMBEDDED_MODELS.get(str(getattr(inner, "model_name", name)))
        if known is not None and path.name == known.filename and marker_matches(path, known.sha256):
            out["sha256"], out["sha256_source"] = known.sha256, f"pinned for the embedded model {known.title}, " \
                                                                 "verified when it was assembled"
        else:
            out["sha256"], out["sha256_source"] = sha256_file(path), "hashed at the end of the run"
    else:
        out["sha256_source"] = f"no local model file (backend {cfg.target.model}): the name is all there is to cite"
    info = getattr(inner, "get_model_info", None)
    if callable(info):
        try:
            out["backend_info"] = {k: v for k, v in info().items() if k not in ("model_path", "model_sha256")}
        except Exception:  # noqa: BLE001  - a backend's self-description must not fail the run at its end
            pass
    return out


def bank_record(cfg: EvalConf, bank: MemoryBank | None = None) -> dict[str, Any] | None:
    """The bank the run retrieved from: ``bank`` as the run loaded it (read again when not given,
    which can differ if a new version was written during the run)."""
    if cfg.bank.path is None:
        return None
    out: dict[str, Any] = {"name": cfg.bank.name, "path": str(cfg.bank.path)}
    if bank is None:
        try:
            bank = load_bank(cfg.bank.path, version=cfg.bank.version)
        except BankError as exc:  # it loaded for the run; a bank changed since is worth saying, not failing
            return {**out, "error": str(exc)}
    m = bank.manifest
    retired = sum(1 for e in bank.entries if e.status == "retired")
    # "entries" counts what the version file holds; "live" what retrieval could return (retired ones are history)
    return {**out, "manifest_name": m.name, "version": m.version, "sha256": m.sha256, "entries": len(bank.entries),
            "live_entries": len(bank.entries) - retired, "retired_entries": retired,
            "sources": list(m.sources), "summarizer": m.summarizer, "parent": m.parent,
            # which version directory was read, and whether the config pinned it (null: the newest)
            "version_path": str(bank.path), "pinned_version": cfg.bank.version,
            **({"parent_sha256": m.parent_sha256} if m.parent_sha256 else {})}


def _entries_text(bank: Mapping[str, Any]) -> str:
    """"3 entries, 1 retired": a retired entry stays in the version file but is never retrieved."""
    retired = bank.get("retired_entries") or 0
    return f"{bank['entries']} entries" + (f", {retired} retired" if retired else "")


def sampling_record(cfg: EvalConf, lm: Any, results: Mapping[str, Any]) -> dict[str, Any]:
    """What each benchmark's requests asked for (lm-eval's generation_kwargs) and, for the llama.cpp
    backend, the sampler settings it fills in for everything a request leaves out."""
    configs = results.get("configs") or {}
    asked = {b: dict((configs.get(f"{b}_nomemory") or {}).get("generation_kwargs") or {}) for b in cfg.benchmarks}
    out: dict[str, Any] = {"generation_kwargs": asked, "backend_defaults": None}
    inner = _innermost(lm)
    if cfg.target.model == "llama_cpp" and asked:
        first = dict(next(iter(asked.values())))
        for key in ("until", "max_gen_toks", "max_length"):
            first.pop(key, None)
        args, _ = sampler_args(first, default_seed=int(getattr(inner, "seed", cfg.seed)))
        args["seed"] = f"{args['seed']} + the request's number"
        out["backend_defaults"] = args
    return out


def generation_record(usage: Sequence[Mapping[str, Any]] | None, wall_seconds: float) -> dict[str, Any]:
    """Requests, tokens and speed. ``tokens_per_second`` is completion tokens over the run's wall time
    (loading and scoring included); ``tokens_per_second_per_request`` is one sequence's decoding speed
    (requests decoded together overlap, so it is not the throughput)."""
    out: dict[str, Any] = {"requests": len(usage) if usage is not None else None, "completion_tokens": None,
                           "prompt_tokens": None, "tokens_per_second": None, "tokens_per_second_per_request": None,
                           "truncation_rate": None}
    if not usage:
        return out
    out["truncation_rate"] = sum(bool(u.get("truncated")) for u in usage) / len(usage)
    if all("completion_tokens" in u for u in usage):
        completion = sum(int(u["completion_tokens"]) for u in usage)
        seconds = sum(float(u.get("seconds") or 0.0) for u in usage)
        out["completion_tokens"] = completion
        out["prompt_tokens"] = sum(int(u.get("prompt_tokens") or 0) for u in usage)
        out["tokens_per_second"] = round(completion / wall_seconds, 2) if wall_seconds > 0 else None
        out["tokens_per_second_per_request"] = round(completion / seconds, 2) if seconds > 0 else None
    return out


def run_record(cfg: EvalConf, lm: Any, results: Mapping[str, Any], usage: Sequence[Mapping[str, Any]] | None,
               wall_seconds: float, bank: MemoryBank | None = None) -> dict[str, Any]:
    """Everything ``summary.json`` says about how the numbers were made."""
    retrieval = cfg.retrieval_config()
    return {
        "target": cfg.target.identity, "backend": cfg.target.model,
        "model_args": {k: v for k, v in dict(cfg.target.model_args).items()},
        "apply_chat_template": cfg.target.apply_chat_template,
        "bank": cfg.bank.name, "bank_record": bank_record(cfg, bank), "model": model_record(cfg, lm),
        "retrieval": asdict(retrieval) if cfg.bank.path is not None else None,
        "seed": cfg.seed, "limit": cfg.limit, "limits": dict(cfg.limits), "subset": cfg.subset,
        "problems": describe(cfg.limit, dict(cfg.limits), cfg.subset), "benchmarks": list(cfg.benchmarks),
        "protocol": cfg.protocol, "agent": dict(cfg.agent.__dict__) if cfg.protocol == "agent" else None,
        "sampling": sampling_record(cfg, lm, results),
        "wall_seconds": round(wall_seconds, 2), "generation": generation_record(usage, wall_seconds),
        "lm_eval_version": results.get("lm_eval_version"), "git_hash": results.get("git_hash"),
        "date": results.get("date"),
    }


def format_record(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The record as (label, value) lines, in the order a reader checks them."""
    def num(x: Any, unit: str = "") -> str:
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x}{unit}"

    bank = record.get("bank_record")
    if bank is None:
        bank_text = f"{record.get('bank')} (no memory)"
    elif "error" in bank:
        bank_text = f"{bank['name']} at {bank['path']}: {bank['error']}"
    else:
        bank_text = (f"{bank['name']} (manifest {bank['manifest_name']!r}, version {bank['version']}, "
                     f"{_entries_text(bank)}, sha256 {bank['sha256']}) at {bank['path']}")
    model = record.get("model") or {}
    model_text = str(model.get("name"))
    if model.get("sha256"):
        model_text += f", sha256 {model['sha256']} ({model.get('sha256_source')})"
    elif model.get("sha256_source"):
        model_text += f" ({model['sha256_source']})"
    gen = record.get("generation") or {}
    sampling = record.get("sampling") or {}
    asked = sampling.get("generation_kwargs") or {}
    asked_text = "; ".join(f"{b}: {json.dumps(k, sort_keys=True)}" for b, k in asked.items()) or "-"
    lines = [
        ("target", f"{record.get('target')} (backend {record.get('backend')})"),
        ("model", model_text),
        ("bank", bank_text),
        ("retrieval", "-" if record.get("retrieval") is None else
         ", ".join(f"{k}={v}" for k, v in record["retrieval"].items())),
        ("problems", f"{record.get('problems')} per benchmark ({', '.join(record.get('benchmarks') or [])}); "
                     f"limit={record.get('limit')}, subset={record.get('subset')}, seed={record.get('seed')}"),
        ("protocol", str(record.get("protocol")) + (f" {record['agent']}" if record.get("agent") else "")),
        ("sampling asked", asked_text),
        ("backend sampling", "-" if not sampling.get("backend_defaults") else
         json.dumps(sampling["backend_defaults"], sort_keys=True)),
        ("wall time", num(record.get("wall_seconds"), " s")),
        ("generation", f"{num(gen.get('requests'))} requests, {num(gen.get('completion_tokens'))} completion tokens, "
                       f"{num(gen.get('tokens_per_second'))} tok/s over the wall time, "
                       f"{num(gen.get('tokens_per_second_per_request'))} tok/s per request"),
        ("lm-eval", f"{record.get('lm_eval_version')} (commit of the working directory: {record.get('git_hash')})"),
    ]
    return lines


def write_summary(run_dir: Path, cfg: EvalConf, rows: Sequence[BenchmarkRow], record: Mapping[str, Any]) -> None:
    gen = record.get("generation") or {}
    sentence = headline(rows)
    summary = {
        **record,
        "headline": sentence,
        "rows": [{**{f.name: getattr(r, f.name) for f in fields(r)}, "reach": None if r.reach is None else
                  asdict(r.reach), "delta": r.delta} for r in rows],
        # kept under their old names for readers of earlier summaries
        "generation_requests": gen.get("requests"), "truncation_rate": gen.get("truncation_rate"),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    text = [format_table(rows), "", sentence]
    if gen.get("truncation_rate") is not None:
        what = "model calls (one per turn)" if cfg.protocol == "agent" else "generations"
        text += ["", f"{what} stopped by the token limit: {100 * gen['truncation_rate']:.1f}% of {gen['requests']}"]
    text += ["", "## Run record", ""] + [f"- **{label}**: {value}" for label, value in format_record(record)]
    text += ["", "Per problem (prompt with the memory marked, retrieved entries, responses, verdicts, flips): "
                 "report.html"]
    (run_dir / "summary.md").write_text("\n".join(text) + "\n")
