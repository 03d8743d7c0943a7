"""Bank building, stage by stage: pool -> trajectories -> verdicts [-> judgments] -> pairs -> distillation -> bank.

Each stage reads and writes JSONL in the work directory keyed by ``(problem_id, model,
sample_idx)`` (or by pair), so a build killed at any moment resumes where it stopped and
regenerates nothing; with greedy decoding and a fixed seed the final entries are the same
bytes as those of an uninterrupted build. Timings and token counts are stored per record,
so the manifest's construction cost does not depend on how often the build was resumed.

With ``protocol=agent`` each source model runs the agent protocol (multi-turn, code run in
the sandbox): the stored trajectory text is the episode transcript, the verifier scores its
final answer, and distillation and the abstraction gate read it as plain dialogue.

The preference signal is pluggable (``preference=``, construct/preference.py): the verifier's
verdicts (the default), a judge model's rubric scores (``judgments.jsonl``, resumable like the
other stages), or a file of human labels. Open-ended problems (``pool.concepts``) get no verdict.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from tqdm.auto import tqdm

from memcollab_eval.agent.agent_lm import AgentLM
from memcollab_eval.agent.task_fields import agent_fields
from memcollab_eval.agent.transcript import readable
from memcollab_eval.bank.store import (
    BankError,
    entry_from_dict,
    load_bank,
    save_bank,
    serialize_entries,
    sha256_bytes,
    version_dirs,
)
from memcollab_eval.categorize import predict_math_subject
from memcollab_eval.categorize_llm import PROMPT_VERSION as CATEGORIZE_PROMPT_VERSION
from memcollab_eval.categorize_llm import LMCategorizer, lm_generate
from memcollab_eval.construct import evidence, judge, validate
from memcollab_eval.construct.categories import PoolCategorizer
from memcollab_eval.construct.categories import cache_path as categories_cache
from memcollab_eval.construct.config import BuildConf
from memcollab_eval.construct.dedupe import drop_near_duplicates
from memcollab_eval.construct.distill import (
    difference_line,
    distill_prompt,
    parse_lessons,
    prompt_examples,
    retry_prompt,
)
from memcollab_eval.construct.entry_lint import about_difference, lint_entry, restates_itself
from memcollab_eval.construct.gate_log import Candidate, GateLog
from memcollab_eval.construct.imports import (
    DISTILL_IMPORT_LOG,
    EVIDENCE_IMPORT_LOG,
    check_distill_settings,
    check_evidence_settings,
    import_distill,
    import_evidence,
    import_trajectories,
    imported_total,
)
from memcollab_eval.construct.labels import Label, check_problems, labels_sha256, read_labels
from memcollab_eval.construct.open_task import is_open_ended, reference_text, task_spec
from memcollab_eval.construct.pools import PoolError, PoolProblem, build_pool
from memcollab_eval.construct.preference import (
    NoPair,
    Pair,
    apply_ablation,
    judge_pairs,
    judge_self_items,
    label_pairs,
    memcollab_pairs,
    self_contrast_pairs,
    self_memory_items,
)
from memcollab_eval.construct.records import DistillRecord, JudgeRecord, Key, Trajectory, VerdictRecord
from memcollab_eval.jsonl_store import append_records, read_records, write_atomic
from memcollab_eval.models.generation import Generation, build_lm, generate, generate_requests, load_target
from memcollab_eval.scoring import score_response

log = logging.getLogger(__name__)


class ModelCache:
    """Keeps one model in memory at a time: CPU machines cannot hold several."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.lm: Any = None

    def get(self, name: str) -> Any:
        if name != self.name:
            self.lm = None
            self.lm = build_lm(load_target(name))
            self.name = name
        return self.lm


def agent_generation(agent: AgentLM, prompt: str, fields: dict[str, Any], gen_kwargs: dict[str, Any]) -> Generation:
    """One agent episode outside a task: a :class:`Generation` whose text is the
    transcript and whose token counts add up the inner model's turns (None when it keeps none)."""
    usage_before = len(agent.usage or [])
    start = time.perf_counter()
    request = Instance(request_type="generate_until", doc=dict(fields), arguments=(prompt, dict(gen_kwargs)), idx=0)
    text = agent.generate_until([request], disable_tqdm=True)[0]
    seconds = time.perf_counter() - start
    turns = list(agent.usage or [])[usage_before:]

    def total(key: str) -> int | None:
        values = [u.get(key) for u in turns]
        return None if not values or any(v is None for v in values) else int(sum(values))

    return Generation(text=text, prompt_tokens=total("prompt_tokens"), completion_tokens=total("completion_tokens"),
                      truncated=any(bool(u.get("truncated")) for u in turns) if turns else None, seconds=seconds)


def stage_pool(cfg: BuildConf, work: Path) -> list[PoolProblem]:
    path = work / "pool.jsonl"
    wanted = {"sizes": cfg.pool_sizes(), "seed": cfg.seed}
    meta = work / "pool.meta.json"
    if path.exists() and meta.exists():
        if json.loads(meta.read_text()) != wanted:
            raise PoolError(f"{work} holds a build with another pool ({meta.read_text().strip()}); "
                            f"use another bank.name or work_dir, or delete {work}")
        return [PoolProblem.from_dict(r) for r in read_records(path, ("id", "benchmark", "doc"))]
    excluded: dict[str, list[str]] = {}
    problems = build_pool(cfg.pool_sizes(), cfg.data_dir, cfg.seed, excluded)
    if excluded:
        log.warning("excluded training problems that are also evaluation problems: %s", excluded)
    write_atomic(path, "".join(json.dumps(p.to_dict(), sort_keys=True) + "\n" for p in problems))
    write_atomic(work / "pool.excluded.json", json.dumps(excluded, sort_keys=True))
    write_atomic(meta, json.dumps(wanted, sort_keys=True))
    return problems


def generation_settings(cfg: BuildConf) -> dict[str, Any]:
    """What a stored trajectory depends on besides the problem, model and sample index."""
    wanted: dict[str, Any] = {"protocol": cfg.protocol}
    if cfg.protocol == "agent":
        wanted["agent"] = asdict(cfg.agent)
    if cfg.method.temperature > 0:
        wanted["temperature"] = cfg.method.temperature
    if cfg.max_gen_toks is not None:
        wanted["max_gen_toks"] = cfg.max_gen_toks
    if cfg.protocol == "single_turn" and cfg.batch_size > 1:
        # handed to the backend batch_size at a time: a batching backend (llama_cpp's n_parallel) decodes them
        # together, and greedy batched kernels can round differently from one-at-a-time decoding, so such
        # trajectories never silently join a directory of sequential ones (batch_size=1 continues those)
        wanted["batched"] = True
    return wanted


def check_generation_settings(cfg: BuildConf, work: Path) -> None:
    """Refuse to mix trajectories made with different settings in one work directory.

    Trajectories are keyed by (problem, model, sample index), so a self-memory build may
    share a work directory with a cross-model build of the same pool (both decode greedily:
    the trajectories are reused, only the pairs and distillation differ) but a sampled
    self-contrast build may not: its sample 0 would silently be the greedy one. Builds with
    non-default settings (agent protocol, sampling, a token limit) record them in
    ``trajectories.meta.json``; a directory with trajectories and no such file was made
    with the defaults (greedy, single-turn), so older work directories stay as they were."""
    meta = work / "trajectories.meta.json"
    wanted = generation_settings(cfg)
    have: dict[str, Any] = {"protocol": "single_turn"}
    if meta.exists():
        have = json.loads(meta.read_text())
    elif not (work / "trajectories.jsonl").exists() or not (work / "trajectories.jsonl").stat().st_size:
        have = wanted
    if have != wanted:
        hint = (" (batched: requests handed to the backend batch_size > 1 at a time; set batch_size to match)"
                if have.get("batched") != wanted.get("batched") else "")
        raise PoolError(f"{work} holds trajectories made with {json.dumps(have, sort_keys=True)}, not "
                        f"{json.dumps(wanted, sort_keys=True)}{hint}; use another bank.name or work_dir, or delete {work}")
    if wanted != {"protocol": "single_turn"} and not meta.exists():
        write_atomic(meta, json.dumps(wanted, sort_keys=True))


def in_work_order(cfg: BuildConf, items: list) -> list:
    """A generating stage's to-do list in this process's order (``work_order``): a second process
    taking it in reverse, and each taking the other's records before every batch, meets the first in
    the middle instead of making the same records twice."""
    return items[::-1] if cfg.work_order == "reverse" else items


def stage_trajectories(cfg: BuildConf, problems: list[PoolProblem], work: Path,
                       models: ModelCache) -> dict[Key, Trajectory]:
    path = work / "trajectories.jsonl"
    check_generation_settings(cfg, work)
    done = {t.key: t for t in map(Trajectory.from_json, read_records(path, Trajectory.REQUIRED))}
    ids = {p.id for p in problems}
    wanted = lambda k: k[0] in ids and k[1] in cfg.sources and k[2] < cfg.method.samples  # noqa: E731

    def take_others() -> None:
        """The records other processes made meanwhile (``trajectories_from``), before every batch."""
        if cfg.trajectories_from:
            for name, n in import_trajectories(work, cfg.trajectories_from, generation_settings(cfg), done,
                                               wanted).items():
                if n:
                    log.info("took %d trajectories from %s", n, name)

    for model in cfg.sources:
        take_others()
        keys = in_work_order(cfg, [(p, s) for p in problems for s in range(cfg.method.samples)])
        todo = [(p, s) for p, s in keys if (p.id, model, s) not in done]
        if not todo:
            continue
        lm = models.get(model)
        agent = None
        if cfg.protocol == "agent":
            agent = AgentLM(lm, cfg.agent_config())
        with tqdm(total=len(todo), desc=f"trajectories {model}", unit="problem") as bar:
            while todo:
                batch = todo[:cfg.batch_size]
                # each request carries its own seed, so one call per batch keeps per-sample seeds
                # exact and lets a batching backend decode the batch together
                requests = [(task_spec(p.benchmark).prompt(p.doc),
                             cfg.gen_kwargs(task_spec(p.benchmark).max_gen_toks, seed=cfg.seed + 1000 * s))
                            for p, s in batch]
                if agent is None:
                    gens = generate_requests(lm, requests)
                else:
                    gens = [agent_generation(agent, prompt, agent_fields(task_spec(p.benchmark), p.doc), kwargs)
                            for (p, _), (prompt, kwargs) in zip(batch, requests, strict=True)]
                records = [Trajectory(p.id, model, s, g.text, g.prompt_tokens, g.completion_tokens, g.truncated,
                                      round(g.seconds, 3)) for (p, s), g in zip(batch, gens, strict=True)]
                append_records(path, [t.to_json() for t in records])
                done.update({t.key: t for t in records})
                take_others()
                left = [(p, s) for p, s in todo if (p.id, model, s) not in done]
                bar.update(len(todo) - len(left))
                todo = left
    # a shared work directory also holds other builds' records: return this build's own
    return {k: r for k, r in done.items() if wanted(k)}


def stage_verify(cfg: BuildConf, problems: list[PoolProblem], trajs: dict[Key, Trajectory],
                 work: Path) -> dict[Key, VerdictRecord]:
    path = work / "verdicts.jsonl"
    done = {v.key: v for v in map(VerdictRecord.from_json, read_records(path, VerdictRecord.REQUIRED))}
    by_id = {p.id: p for p in problems}
    todo = [k for k in sorted(trajs) if k not in done and k[0] in by_id and not is_open_ended(by_id[k[0]].benchmark)]
    sandbox = cfg.sandbox_config()
    for k in tqdm(todo, desc="verify", unit="trajectory", disable=not todo):
        p = by_id[k[0]]
        v = score_response(task_spec(p.benchmark), p.doc, trajs[k].text, sandbox=sandbox)
        record = VerdictRecord(k[0], k[1], k[2], v.status, v.extracted, v.detail[:500], round(v.seconds, 3))
        append_records(path, [record.to_json()])
        done[k] = record
    # only the given trajectories' verdicts, as for trajectories; open-ended problems have none
    return {k: done[k] for k in trajs if k in done}


def stage_judge(cfg: BuildConf, problems: list[PoolProblem], trajs: dict[Key, Trajectory], work: Path,
                models: ModelCache) -> dict[Key, JudgeRecord]:
    """Score every trajectory of this build with the judge model against the rubric (``judgments.jsonl``);
    greedy, so a resumed or repeated build gets the same scores."""
    p = cfg.preference
    by_id = {x.id: x for x in problems}
    order = {x.id: i for i, x in enumerate(problems)}
    keys = sorted(trajs, key=lambda k: (order[k[0]], cfg.sources.index(k[1]), k[2]))
    todo = []
    for k in keys:
        problem = by_id[k[0]]
        spec = task_spec(problem.benchmark)
        todo.append((k, judge.judge_prompt(domain="math" if spec.domain == "math" else "programming",
                                           problem=spec.text(problem.doc), answer=readable(trajs[k].text),
                                           reference=reference_text(problem.benchmark, problem.doc),
                                           version=p.rubric_version)))
    kwargs = {"until": [], "max_gen_toks": p.judge_max_gen_toks, "do_sample": False, "temperature": 0.0}
    done = judge.judge_trajectories(todo, path=work / "judgments.jsonl", judge=str(p.judge), version=p.rubric_version,
                                    generate=lambda prompts, kw: generate(models.get(str(p.judge)), prompts, kw),
                                    gen_kwargs=kwargs, batch_size=p.judge_batch_size)
    return {k: done[k] for k in trajs}


def stage_pairs(cfg: BuildConf, problems: list[PoolProblem], verdicts: dict[Key, VerdictRecord],
                judgments: dict[Key, JudgeRecord] | None = None, labels: list[Label] | None = None,
                trajs: dict[Key, Trajectory] | None = None) -> tuple[list[Pair], list[NoPair]]:
    ids = [p.id for p in problems]
    kind = cfg.method.kind
    signal = cfg.preference.name
    if signal == "labels":
        assert labels is not None and trajs is not None
        pairs, skipped = label_pairs(ids, labels, set(trajs))
        return apply_ablation(pairs, cfg.method.ablation, cfg.seed), skipped
    if signal == "judge":
        assert judgments is not None
        scores = {k: r.score for k, r in judgments.items() if r.score is not None}
        if kind == "self":
            pairs, skipped = judge_self_items(ids, scores, cfg.sources[0], cfg.preference.pass_score)
        else:
            candidates = [[(pid, m, 0) for m in cfg.sources] if kind == "memcollab" else
                          [(pid, cfg.sources[0], s) for s in range(cfg.method.samples)] for pid in ids]
            candidates = [[k for k in keys if k in judgments] for keys in candidates]
            pairs, skipped = judge_pairs(ids, scores, candidates, cfg.preference.min_margin)
        return apply_ablation(pairs, cfg.method.ablation, cfg.seed), skipped
    passed = {k: v.passed for k, v in verdicts.items()}
    if kind == "memcollab":
        pairs, skipped = memcollab_pairs(ids, passed, cfg.sources)
    elif kind == "self_contrast":
        pairs, skipped = self_contrast_pairs(ids, passed, cfg.sources[0], cfg.method.samples)
    else:
        pairs, skipped = self_memory_items(ids, passed, cfg.sources[0])
    return apply_ablation(pairs, cfg.method.ablation, cfg.seed), skipped


def pair_id(pair: Pair, signal_tag: str = "") -> str:
    """The pair's key in ``distill.jsonl``. ``signal_tag`` (empty for the verifier, so earlier work
    directories resume) keeps a judged or labelled pair's replies apart from a verified pair's: the
    same two trajectories are distilled with another prompt."""
    side = lambda k: "none" if k is None else f"{k[1]}#{k[2]}"  # noqa: E731
    return f"{pair.problem_id}|{side(pair.preferred)}>{side(pair.unpreferred)}" + (f"@{signal_tag}" if signal_tag else "")


def signal_tag(cfg: BuildConf) -> str:
    p = cfg.preference
    if p.name == "judge":
        return f"judge={p.judge}/{p.rubric_version}"
    if p.name == "labels":
        return f"labels={labels_sha256(str(p.labels))[:16]}"
    return ""


def preference_why(pair: Pair) -> str | None:
    """What the judged distillation prompt says about why one side was preferred (None: verified)."""
    if pair.signal == "judge" and pair.scores is not None:
        low, high = judge.SCORE_RANGE
        if pair.scores[1] is None:
            return f"a judge model scored it {pair.scores[0]} on a scale from {low} to {high}"
        return (f"a judge model scored it {pair.scores[0]} and the other answer {pair.scores[1]}, "
                f"on a scale from {low} to {high}")
    if pair.signal == "labels":
        return "a human reader preferred it"
    return None


def distill_settings(cfg: BuildConf) -> dict[str, Any]:
    """What a summarizer reply depends on besides its pair, sample and prompt version
    (``distill.meta.json``); the trajectories it reads are compared text for text on import."""
    return {"summarizer": cfg.summarizer, "max_gen_toks": cfg.distill_max_gen_toks,
            "temperature": cfg.distill_temperature, "seed": cfg.seed, "batched": cfg.batch_size > 1}


def stage_distill(cfg: BuildConf, problems: list[PoolProblem], trajs: dict[Key, Trajectory],
                  verdicts: dict[Key, VerdictRecord], pairs: list[Pair], work: Path,
                  models: ModelCache) -> dict[str, list[DistillRecord]]:
    """``distill_samples`` candidate replies per pair: the first decoded as the build decodes,
    the others sampled (``distill_temperature``, seeded), so the gates have several lessons to
    choose from. Replies another process made for the same pairs (``distill_from``) are taken
    before every batch. Returns each pair's records in sample order."""
    path = work / "distill.jsonl"
    version = cfg.distill_prompt_version
    settings = distill_settings(cfg)
    check_distill_settings(work, settings)
    # a reply made with another prompt version is not reused: the prompt changed
    done = {(r.pair, r.sample): r for r in map(DistillRecord.from_json, read_records(path, DistillRecord.REQUIRED))
            if r.prompt_version == version}
    samples = range(cfg.distill_samples)
    tag = signal_tag(cfg)
    pair_keys = {pair_id(p, tag): tuple(k for k in (p.preferred, p.unpreferred) if k is not None) for p in pairs}

    def take_others() -> None:
        if cfg.distill_from:
            for name, n in import_distill(work, cfg.distill_from, settings, version, done, pair_keys, trajs).items():
                if n:
                    log.info("took %d summarizer replies from %s", n, name)

    take_others()
    every = in_work_order(cfg, [(p, s) for p in pairs for s in samples])
    todo = [(p, s) for p, s in every if (pair_id(p, tag), s) not in done]
    if todo:
        by_id = {p.id: p for p in problems}
        lm = models.get(cfg.summarizer)
        def request(pair: Pair, sample: int) -> tuple[str, dict[str, Any]]:
            spec = task_spec(by_id[pair.problem_id].benchmark)
            kwargs = cfg.gen_kwargs(cfg.distill_max_gen_toks, seed=cfg.seed + 7919 * sample,
                                    temperature=None if sample == 0 else cfg.distill_temperature)
            prompt = distill_prompt(
                domain="math" if spec.domain == "math" else "programming", problem=spec.text(by_id[pair.problem_id].doc),
                preferred=readable(trajs[pair.preferred].text),
                unpreferred=None if pair.unpreferred is None else readable(trajs[pair.unpreferred].text),
                unpreferred_status="fail" if pair.unpreferred is None or pair.signal != "verifier"
                else verdicts[pair.unpreferred].status,
                version=version, why=preference_why(pair))
            return prompt, kwargs

        with tqdm(total=len(todo), desc=f"distill with {cfg.summarizer}", unit="reply") as bar:
            while todo:  # one call per batch: a batching backend decodes it together
                batch = todo[:cfg.batch_size]
                requests = [request(pair, sample) for pair, sample in batch]
                replies = [[g] for g in generate_requests(lm, requests)]
                lessons = [parse_lessons(r[0].text) for r in replies]
                # one retry with a format reminder for the replies that gave no lesson, then give up on them
                again = [i for i, found in enumerate(lessons) if not found]
                retries = generate_requests(lm, [(retry_prompt(version, requests[i][0], replies[i][0].text),
                                                  requests[i][1]) for i in again])
                for i, retry in zip(again, retries, strict=True):
                    replies[i].append(retry)
                    lessons[i] = parse_lessons(retry.text, difference=difference_line(replies[i][0].text))
                records = []
                for (pair, sample), got, found in zip(batch, replies, lessons, strict=True):
                    record = DistillRecord(
                        pair_id(pair, tag), version, "ok" if found else "malformed", tuple(asdict(x) for x in found),
                        tuple(g.text for g in got), round(sum(g.seconds for g in got), 3),
                        sum(g.completion_tokens or 0 for g in got), sum(g.prompt_tokens or 0 for g in got), sample)
                    if not found:
                        log.warning("malformed summarizer reply for %s (skipped): %r", record.pair, got[0].text[:200])
                    records.append(record)
                    done[(record.pair, sample)] = record
                append_records(path, [r.to_json() for r in records])
                take_others()
                left = [(p, s) for p, s in todo if (pair_id(p, tag), s) not in done]
                bar.update(len(todo) - len(left))
                todo = left
    return {pair_id(p, tag): [done[(pair_id(p, tag), s)] for s in samples] for p in pairs}  # this build's pairs only


def assemble_entries(cfg: BuildConf, problems: list[PoolProblem], trajs: dict[Key, Trajectory], pairs: list[Pair],
                     distilled: dict[str, list[DistillRecord]], identities: dict[str, str],
                     log: GateLog | None = None) -> tuple[list[dict], Counter, dict[str, Pair]]:
    """Lint every lesson of every candidate reply, tag survivors (with model identities), drop
    near-duplicates; ids follow pool, pair and reply order. Also returns each entry's pair.
    ``log`` gets every candidate with the gate that stopped it (gate_log.py)."""
    by_id = {p.id: p for p in problems}
    rejected: Counter = Counter()
    candidates: list[tuple[dict, Pair, Candidate]] = []
    log = log if log is not None else GateLog()
    examples = prompt_examples(cfg.distill_prompt_version)
    tag = signal_tag(cfg)
    for pair in pairs:
        problem = by_id[pair.problem_id]
        spec = task_spec(problem.benchmark)
        sources = [readable(trajs[k].text) for k in (pair.preferred, pair.unpreferred) if k is not None]
        for record in distilled[pair_id(pair, tag)]:
            if record.status != "ok":
                rejected["malformed"] += 1
                log.add(Candidate(record.pair, record.sample, problem.id, problem.category, gate="malformed"))
                continue
            for lesson in record.lessons:
                candidate = log.add(Candidate(
                    record.pair, record.sample, problem.id, problem.category, lesson["enforce"], lesson["avoid"],
                    lesson.get("difference", ""),
                    evidence.lesson_key({"source_problem_id": problem.id, **lesson})))
                verdict = lint_entry(lesson["enforce"], lesson["avoid"], problem=spec.text(problem.doc),
                                     trajectories=sources, gold=spec.gold(problem.doc), examples=examples) \
                    if cfg.gates.lint else None
                if verdict is not None and not verdict.ok:
                    rejected[verdict.reason] += 1
                    candidate.gate = verdict.reason
                    continue
                if cfg.gates.restate_lint:
                    restated = restates_itself(lesson["enforce"], lesson["avoid"])
                    if not restated.ok:
                        rejected[restated.reason] += 1
                        candidate.gate = restated.reason
                        continue
                difference = lesson.get("difference", "")
                if cfg.gates.difference_lint:
                    about = about_difference(lesson["enforce"], lesson["avoid"], difference)
                    if not about.ok:
                        rejected[about.reason] += 1
                        candidate.gate = about.reason
                        continue
                entry = {
                    "enforce": lesson["enforce"], "avoid": lesson["avoid"], "category": problem.category,
                    "subcategory": problem.subcategory, "preferred_model": identities[pair.preferred[1]],
                    "unpreferred_model": "none" if pair.unpreferred is None else identities[pair.unpreferred[1]],
                    "source_benchmark": problem.source, "source_problem_id": problem.id,
                    "summarizer": identities[cfg.summarizer],
                    "created_at": ""}
                if cfg.keeps_difference() and difference:
                    entry["difference"] = difference
                chosen_by = preference_evidence(cfg, pair, identities)
                if chosen_by is not None:
                    entry["evidence"] = {"preference": chosen_by}
                candidates.append((entry, pair, candidate))
    kept, merged = drop_near_duplicates([e for e, _, _ in candidates], cfg.gates.near_duplicate_threshold)
    rejected["near_duplicate"] += merged
    survivors = {id(e) for e in kept}
    for entry, _, candidate in candidates:
        if id(entry) not in survivors:
            candidate.gate = "near_duplicate"
    pair_of_entry = {id(e): p for e, p, _ in candidates}
    entries = [{"id": f"{cfg.bank.name}-{i:04d}", **e} for i, e in enumerate(kept, start=1)]
    return entries, rejected, {e["id"]: pair_of_entry[id(k)] for e, k in zip(entries, kept, strict=True)}


def preference_evidence(cfg: BuildConf, pair: Pair, identities: dict[str, str]) -> dict[str, Any] | None:
    """What chose the pair's sides, for the entry's ``evidence`` (None for the verifier: those
    entries keep the bytes they always had)."""
    if pair.signal == "judge" and pair.scores is not None:
        return {"signal": "judge", "judge": identities[str(cfg.preference.judge)],
                "rubric_version": cfg.preference.rubric_version,
                "preferred_score": pair.scores[0], "unpreferred_score": pair.scores[1]}
    if pair.signal == "labels":
        name, _, line = pair.label.rpartition(":")
        return {"signal": "labels", "file": Path(name).name, "line": int(line)}
    return None


def preference_report(cfg: BuildConf, problems: list[PoolProblem], verdicts: dict[Key, VerdictRecord],
                      judgments: dict[Key, JudgeRecord] | None, labels: list[Label] | None,
                      pairs: list[Pair], identities: dict[str, str]) -> dict[str, Any] | None:
    """The manifest's record of a judge or labels signal (None for the verifier): for a judge, its
    score histogram, mean score per source model, cost, and its agreement with the verifier on the
    trajectories both scored (math and code problems; open-ended ones have no verdict)."""
    p = cfg.preference
    if p.name == "labels":
        assert labels is not None
        return {"signal": "labels", "file": str(p.labels), "sha256": labels_sha256(str(p.labels)),
                "labels": len(labels), "pairs": len(pairs)}
    if p.name != "judge":
        return None
    assert judgments is not None
    records = list(judgments.values())
    by_model: dict[str, list[int]] = {}
    for r in records:
        if r.score is not None:
            by_model.setdefault(identities[r.model], []).append(r.score)
    open_ids = {x.id for x in problems if is_open_ended(x.benchmark)}
    return {
        "signal": "judge", "judge": identities[str(p.judge)], "judge_config": p.judge,
        "rubric_version": p.rubric_version,
        "rubric_sha256": sha256_bytes(judge.rubric_template(p.rubric_version).encode("utf-8")),
        "min_margin": p.min_margin, "judged": len(records),
        "unparsed": sum(r.score is None for r in records), "score_histogram": judge.score_histogram(records),
        "mean_score_by_model": {m: round(sum(v) / len(v), 3) for m, v in sorted(by_model.items())},
        "open_ended_trajectories": sum(k[0] in open_ids for k in judgments),
        "agreement_with_verifier": judge.agreement({k: r.score for k, r in judgments.items()},
                                                   {k: v.passed for k, v in verdicts.items()}, p.pass_score),
        "seconds": round(sum(r.seconds for r in records), 1),
        "completion_tokens": sum(r.completion_tokens or 0 for r in records),
    }


def build_stats(cfg: BuildConf, problems: list[PoolProblem], trajs: dict[Key, Trajectory],
                verdicts: dict[Key, VerdictRecord], skipped: list[NoPair], distilled: dict[str, list[DistillRecord]],
                entries: list[dict], rejected: Counter) -> dict:
    n = len(problems)
    gen_s = sum(float(t.seconds or 0) for t in trajs.values())
    ver_s = sum(float(v.seconds or 0) for v in verdicts.values())
    replies = [r for records in distilled.values() for r in records]
    dis_s = sum(float(d.seconds or 0) for d in replies)
    tokens = sum(int(t.completion_tokens or 0) for t in trajs.values()) + \
        sum(int(d.completion_tokens or 0) + int(d.prompt_tokens or 0) for d in replies)
    math_pool = [p for p in problems if p.benchmark == "math500"]
    cat_acc = (sum(predict_math_subject(p.doc["problem"]) == p.category for p in math_pool) / len(math_pool)
               if math_pool else None)
    verified = Counter(k[1] for k in verdicts)  # open-ended problems have no verdict: no pass rate
    pass_rate = {m: sum(v.passed for k, v in verdicts.items() if k[1] == m) / verified[m] if verified[m] else None
                 for m in cfg.sources}
    coverage = Counter(f"{e['category']} | {e['preferred_model']} > {e['unpreferred_model']}" for e in entries)
    excluded_file = Path(cfg.work_dir) / "pool.excluded.json"
    excluded = json.loads(excluded_file.read_text()) if excluded_file.exists() else {}
    return {
        "pool_problems": n, "pool_by_source": dict(Counter(p.source for p in problems)),
        "excluded_as_evaluation_problems": excluded,
        "pass_rate_by_model": pass_rate, "no_pair_reasons": dict(Counter(s.reason for s in skipped)),
        "pairs_distilled": len(distilled), "entries": len(entries), "rejected": dict(rejected),
        "coverage": dict(sorted(coverage.items())),
        "seconds_per_problem": round((gen_s + ver_s + dis_s) / max(1, n), 2),
        "tokens_per_problem": round(tokens / max(1, n), 1),
        "seconds": {"generation": round(gen_s, 1), "verification": round(ver_s, 1), "distillation": round(dis_s, 1)},
        "categorizer_accuracy_math_pool_from_text": cat_acc, "prompt_version": cfg.distill_prompt_version,
    }


def pool_categorizer(cfg: BuildConf, work: Path, models: ModelCache) -> PoolCategorizer | None:
    """``categorizer=llm``: the categorizer model (loaded only when a problem must be asked) and its
    answers cached in the work directory (construct/categories.py); None under the keyword rules."""
    if cfg.categorizer != "llm":
        return None
    name = cfg.categorizer_target()
    target = load_target(name)

    def generate(prompts: list[str]) -> list[str]:
        return lm_generate(models.get(name), chat=target.apply_chat_template)(prompts)

    llm = LMCategorizer(generate, target.identity)
    return PoolCategorizer(llm, categories_cache(work, target.identity, CATEGORIZE_PROMPT_VERSION),
                           batch=4 * cfg.batch_size)


def stage_validate(cfg: BuildConf, problems: list[PoolProblem], entries: list[dict], work: Path,
                   models: ModelCache, retag: PoolCategorizer | None = None) -> tuple[list[dict], dict]:
    """The optional held-out gate (single-turn prompts): returns kept entries, renumbered."""

    categories = {e["category"] for e in entries}
    heldout = validate.heldout_problems(cfg.pool_sizes(), problems, cfg.data_dir, cfg.seed, categories,
                                        cfg.gates.validate_per_category, retag, cfg.categorizer_scan)
    lm = models.get(cfg.validation_target())
    results = validate.validate_groups(
        entries, heldout, lambda prompts, kw: [g.text for g in generate(lm, prompts, kw)], work,
        lambda spec: cfg.gen_kwargs(spec.max_gen_toks, seed=cfg.seed), cfg.sandbox_config())
    kept = [e for e in entries if results[e["category"]].keep]
    renumbered = [{**e, "id": f"{cfg.bank.name}-{i:04d}"} for i, e in enumerate(kept, start=1)]
    report = validate.summary(results)
    report["_dropped_entries"] = len(entries) - len(kept)
    return renumbered, report


def _generate_fn(lm: Any) -> evidence.GenerateFn:
    """Batch generation for the evidence gates: texts, seconds spent and completion tokens."""
    def run(prompts: list[str], kwargs: dict[str, Any]) -> tuple[list[str], float, int]:
        out = generate(lm, prompts, kwargs)
        return [g.text for g in out], sum(g.seconds for g in out), sum(g.completion_tokens or 0 for g in out)
    return run


def evidence_settings(cfg: BuildConf) -> dict[str, Any]:
    """What a gate outcome depends on besides its lesson, problem and model (``evidence.meta.json``):
    a held-out answer is recorded by problem and lesson only, so the target that gave it is here."""
    return {"validate_target": cfg.validation_target(), "seed": cfg.seed, "batched": cfg.batch_size > 1,
            "max_gen_toks": cfg.max_gen_toks, "temperature": cfg.method.temperature}


def stage_evidence(cfg: BuildConf, problems: list[PoolProblem], entries: list[dict], pair_of: dict[str, Pair],
                   work: Path, models: ModelCache, rejected: Counter,
                   retag: PoolCategorizer | None = None, log: GateLog | None = None) -> tuple[list[dict], dict]:
    """The evidence gates (construct/evidence.py): re-solve, then held-out validation per lesson.
    Returns the admitted entries (renumbered, each with its evidence) and the report for the manifest.
    Outcomes another process made meanwhile (``evidence_from``) are taken before every batch.
    ``log`` gets what each gate saw of each lesson, the placebo's answer included."""
    g = cfg.gates
    log = log if log is not None else GateLog()
    report: dict[str, Any] = {}
    admitted = list(entries)
    sandbox = cfg.sandbox_config()
    settings = evidence_settings(cfg)
    check_evidence_settings(work, settings)
    reverse = cfg.work_order == "reverse"

    # the outcomes of evidence_from, looked at before every batch
    take_others = partial(import_evidence, work, cfg.evidence_from, settings) if cfg.evidence_from else None
    if g.resolve:
        tried = [(e, pair_of[e["id"]].unpreferred[1]) for e in admitted if pair_of[e["id"]].unpreferred is not None]

        def resolve_kwargs(spec, sample: int) -> dict[str, Any]:
            return cfg.gen_kwargs(spec.max_gen_toks, seed=cfg.seed + 1000 * sample,
                                  temperature=None if sample == 0 else 0.7)

        def resolve(candidates: list[tuple[dict, str]]) -> dict[str, evidence.ResolveOutcome]:
            return evidence.resolve_lessons(candidates, {p.id: p for p in problems}, work,
                                            lambda model: _generate_fn(models.get(model)), resolve_kwargs,
                                            g.resolve_samples, sandbox, reverse=reverse, take_others=take_others)

        outcomes = resolve(tried)
        placebo = None
        placebo_passed: dict[str, int] = {}
        if g.resolve_placebo:
            placebos = evidence.placebo_lessons([e for e, _ in tried])
            model_of = {evidence.lesson_key(e): m for e, m in tried}
            control = resolve([(placebos[k], model_of[k]) for k in sorted(placebos)])
            placebo = {**evidence.placebo_report(outcomes, control, placebos),
                       "seconds": round(sum(o.seconds for o in control.values()), 1)}
            placebo_passed = {k: control[evidence.lesson_key(c)].passed for k, c in placebos.items()}
        kept = []
        for e in admitted:
            pair = pair_of[e["id"]]
            if pair.unpreferred is None:
                kept.append({**e, "evidence": {**(e.get("evidence") or {}),
                                               "resolve": {"skipped": "self-memory: no unpreferred trajectory"}}})
                continue
            o = outcomes[evidence.lesson_key(e)]
            seen = {"model": o.model, "passed": o.passed, "samples": o.samples}
            if o.key in placebo_passed:
                seen["placebo_passed"] = placebo_passed[o.key]
            log.record(o.key, "resolve", seen, o.admitted(g.resolve_min_pass))
            if o.admitted(g.resolve_min_pass):
                identity = load_target(o.model).identity
                kept.append({**e, "evidence": {**(e.get("evidence") or {}),
                                               "resolve": o.evidence(identity, g.resolve_min_pass)}})
            else:
                rejected["failed_resolve"] += 1
        report["resolve"] = {"tried": len(tried), "admitted": len(tried) - rejected["failed_resolve"],
                             "samples": g.resolve_samples, "min_pass": g.resolve_min_pass,
                             "seconds": round(sum(o.seconds for o in outcomes.values()), 1),
                             "completion_tokens": sum(o.tokens for o in outcomes.values())}
        if placebo is not None:
            report["resolve"]["placebo"] = placebo
        admitted = kept
    if g.validate and g.validate_unit == "lesson" and admitted:
        categories = {e["category"] for e in admitted}
        heldout = validate.heldout_problems(cfg.pool_sizes(), problems, cfg.data_dir, cfg.seed, categories,
                                            g.validate_per_category, retag, cfg.categorizer_scan)
        target = cfg.validation_target()
        identity = load_target(target).identity
        rule = g.heldout_rule()
        outcomes, seconds, tokens = evidence.validate_lessons(
            admitted, heldout, work, _generate_fn(models.get(target)),
            lambda spec: cfg.gen_kwargs(spec.max_gen_toks, seed=cfg.seed), sandbox,
            stop_early=rule if g.validate_stop_early else None, reverse=reverse, take_others=take_others)
        kept = []
        for e in admitted:
            o = outcomes[evidence.lesson_key(e)]
            log.record(o.key, "heldout", {
                "tried": len(o.problems), "failing_tried": o.failing_tried, "fixed": list(o.fixed),
                "broken": list(o.broken), "untried": len(o.untried),
                "p_value": round(evidence.sign_test_p(len(o.fixed), len(o.broken)), 6)}, o.admitted(rule))
            if o.admitted(rule):
                kept.append({**e, "evidence": {**(e.get("evidence") or {}), "heldout": o.evidence(identity, rule)}})
            else:
                rejected["failed_heldout"] += 1
        report["heldout"] = {
            "target": identity, "problems_per_category": {c: len(heldout.get(c, [])) for c in sorted(categories)},
            "tried": len(admitted), "admitted": len(kept),
            "rule": rule.text(),
            "stopped_early": sum(bool(o.untried) for o in outcomes.values()),
            "answers_not_needed": sum(len(o.untried) for o in outcomes.values()),
            "flips": evidence.flip_rates(list(outcomes.values())),
            "seconds": round(seconds, 1), "completion_tokens": tokens}
        admitted = kept
    renumbered = [{**e, "id": f"{cfg.bank.name}-{i:04d}"} for i, e in enumerate(admitted, start=1)]
    return renumbered, report


class WorkDirBusyError(PoolError):
    """Another build holds the work directory."""


@contextmanager
def exclusive(work: Path) -> Iterator[None]:
    """One build at a time per work directory: builds of several banks may share one (their
    trajectories are reused), but two running at once would generate and append the same
    records twice. The lock is released by the kernel when the holder dies, even by kill -9."""
    with open(work / ".build.lock", "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WorkDirBusyError(f"another build is running in {work} ({holder}); wait for it to finish or "
                                   "use another work_dir") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stopped(cfg: BuildConf, stage: str, **counts: int) -> dict:
    """What a build that stopped early (``stop_after``) has in its work directory; no bank is written."""
    return {"stopped_after": stage, "work_dir": str(cfg.work_dir), **counts}


def run_build(cfg: BuildConf) -> dict:
    """Run (or resume) every stage and write the bank; returns the build statistics."""
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with exclusive(work):
        return _run_stages(cfg, work)


def _run_stages(cfg: BuildConf, work: Path) -> dict:

    started = time.time()
    models = ModelCache()
    problems = stage_pool(cfg, work)
    retag = pool_categorizer(cfg, work, models)
    if retag is not None:
        problems = retag.apply(problems)
    if cfg.stop_after == "pool":
        return stopped(cfg, "pool", problems=len(problems))
    trajs = stage_trajectories(cfg, problems, work, models)
    if cfg.stop_after == "trajectories":
        return stopped(cfg, "trajectories", problems=len(problems), trajectories=len(trajs))
    verdicts = stage_verify(cfg, problems, trajs, work)
    if cfg.stop_after == "verify":
        return stopped(cfg, "verify", problems=len(problems), trajectories=len(trajs), verdicts=len(verdicts))
    identities = {name: load_target(name).identity for name in {*cfg.sources, cfg.summarizer}}
    judgments = labels = None
    if cfg.preference.name == "judge":
        identities[str(cfg.preference.judge)] = load_target(str(cfg.preference.judge)).identity
        judgments = stage_judge(cfg, problems, trajs, work, models)
    elif cfg.preference.name == "labels":
        labels = read_labels(str(cfg.preference.labels), {s: identities[s] for s in cfg.sources}, cfg.method.samples)
        check_problems(labels, [x.id for x in problems])
    pairs, skipped = stage_pairs(cfg, problems, verdicts, judgments, labels, trajs)
    # per bank: several builds may share a work directory, and each has its own skip reasons
    write_atomic(work / f"no_pairs.{cfg.bank.name}.jsonl", "".join(json.dumps(asdict(s)) + "\n" for s in skipped))
    distilled = stage_distill(cfg, problems, trajs, verdicts, pairs, work, models)
    if cfg.stop_after == "distill":
        return stopped(cfg, "distill", problems=len(problems), trajectories=len(trajs), pairs=len(pairs),
                       replies=sum(map(len, distilled.values())))
    gate_log = GateLog()
    entries, rejected, pair_of = assemble_entries(cfg, problems, trajs, pairs, distilled, identities, gate_log)
    evidence_report = None
    if entries and (cfg.gates.resolve or (cfg.gates.validate and cfg.gates.validate_unit == "lesson")):
        entries, evidence_report = stage_evidence(cfg, problems, entries, pair_of, work, models, rejected, retag,
                                                  gate_log)
    if cfg.stop_after == "evidence":  # no bank: a lesson through every gate stays "admitted", with no bank id
        gate_log.write(work / f"gates.{cfg.bank.name}.jsonl")
        return stopped(cfg, "evidence", problems=len(problems), trajectories=len(trajs), pairs=len(pairs),
                       admitted=len(entries))
    validation = None
    if cfg.gates.validate and cfg.gates.validate_unit == "category" and entries:
        entries, validation = stage_validate(cfg, problems, entries, work, models, retag)
        rejected["failed_validation"] = validation.pop("_dropped_entries")
    gate_log.finish(entries, evidence.lesson_key, otherwise="failed_validation")
    gate_log.write(work / f"gates.{cfg.bank.name}.jsonl")  # before the bank: a replay that leaves it alone writes it too
    stats = build_stats(cfg, problems, trajs, verdicts, skipped, distilled, entries, rejected)
    imported = imported_total(work)
    if imported:  # their seconds and tokens are in the figures above: they are the records' own
        stats["trajectories_imported"] = imported
    replies_imported = imported_total(work, DISTILL_IMPORT_LOG)
    if replies_imported:
        stats["distill_replies_imported"] = replies_imported
    outcomes_imported = imported_total(work, EVIDENCE_IMPORT_LOG)
    if outcomes_imported:
        stats["evidence_outcomes_imported"] = outcomes_imported
    if validation is not None:
        stats["validation"] = {"target": load_target(cfg.validation_target()).identity, "groups": validation}
    if evidence_report is not None:
        stats["evidence"] = evidence_report
    if retag is not None:
        categorizer = retag.categorizer
        stats["categorizer"] = {"name": categorizer.name, "model": cfg.categorizer_target(),
                                "asked_this_invocation": retag.asked, "answers_kept": len(retag.known),
                                **categorizer.stats.record()}
    preference = preference_report(cfg, problems, verdicts, judgments, labels, pairs, identities)
    if preference is not None:
        stats["preference"] = preference
    stats["wall_seconds_this_invocation"] = round(time.time() - started, 1)
    header = {"name": cfg.bank.name, "version": cfg.bank.version, "sources": [identities[s] for s in cfg.sources],
              "summarizer": identities[cfg.summarizer], "notes": cfg.bank.notes}
    if bank_is_current(cfg.out_dir(), entries, header):
        stats["unchanged"] = True
        return stats
    refuse_under_later_versions(cfg.out_dir(), cfg.work_dir)
    save_bank(cfg.out_dir(), entries, config={"build": cfg.as_dict(), "stats": stats}, **header)
    return stats


class BankHasVersionsError(PoolError):
    """The build would rewrite a bank that later versions were made from."""


def refuse_under_later_versions(out_dir: Path, work_dir: Path) -> None:
    """A bank directory with ``v2/``... holds versions made from its top-level files by ``bank retire``
    or ``bank supersede``; each names its parent's sha256. Writing a different build there would
    change the base under them and break that chain, so it is refused. Nothing is lost: every stage
    is kept in the work directory, and the same command with another ``bank.out_dir`` writes the
    bank from it without generating anything again."""
    later = sorted(n for n in version_dirs(out_dir) if n > 1)
    if later:
        raise BankHasVersionsError(
            f"{out_dir} holds later versions (v{', v'.join(map(str, later))}) made from the bank there; "
            f"this build's entries differ, and writing them would replace the version those were made from. "
            f"Every stage is kept in {work_dir}: run the same command with another bank.out_dir to write "
            f"the new bank without generating again")


def bank_is_current(out_dir: Path, entries: list[dict], header: dict) -> bool:
    """True when the bank on disk already holds exactly these entries under this name,
    version, sources, summarizer and notes. Re-running a finished build then leaves the bank
    alone: rewriting it would replace the manifest's record of the real build (its wall time,
    its creation date) with a replay's."""

    if not (Path(out_dir) / "manifest.json").exists():
        return False
    try:  # the build's own files, not a later version made from them by `bank retire`
        bank = load_bank(out_dir, version=header["version"])
    except BankError:
        return False  # damaged or stale: rewrite it
    m = bank.manifest
    try:
        wanted = sha256_bytes(serialize_entries(entry_from_dict(e) for e in entries))
    except BankError:
        return False  # save_bank will name the bad entry
    return (wanted == m.sha256
            and header == {"name": m.name, "version": m.version, "sources": list(m.sources),
                           "summarizer": m.summarizer, "notes": m.notes})
