"""The judge preference signal: a judge LLM scores each trajectory from 1 to 5 against a versioned
rubric prompt (``memcollab_eval/prompts/judge_rubric_v<N>.txt``).

Why a judge: MemCollab prefers the trajectory the verifier passed, and an open-ended answer (an
explanation, the paper's ASQA extension) has no verifier. The judge sees the question, the answer
and, for an open-ended task, the key points a good answer covers; for math and code it sees no
gold answer and no tests, since those would make it the verifier it stands in for. Every score is
a record in ``judgments.jsonl`` (judge, rubric version, reply, score), appended batch by batch, so
an interrupted judge stage resumes where it stopped; :func:`agreement` compares the scores with the
verifier's verdicts wherever both apply, which is how the README's figure for the signal is made.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from memcollab_eval.construct.records import JudgeRecord, Key
from memcollab_eval.jsonl_store import append_records, read_records

RUBRIC_VERSIONS = ("v1",)
SCORE_RANGE = (1, 5)
MAX_ANSWER_CHARS = 3000

# "SCORE: 4", "Score = 4/5", "**SCORE:** 4"; else a reply that is just the number ("4", "4/5")
_SCORE = re.compile(r"score\s*\**\s*[:=]?\s*\**\s*([1-5])(?!\d)(?:\s*/\s*5)?", re.IGNORECASE)
_BARE = re.compile(r"^\s*\**\s*([1-5])\s*(?:/\s*5)?\s*\**\s*(?:$|\n)")

JudgeGenerate = Callable[[list[str], dict[str, Any]], list[Any]]  # prompts, kwargs -> Generations


def rubric_template(version: str) -> str:
    if version not in RUBRIC_VERSIONS:
        raise ValueError(f"unknown judge rubric version {version!r}; valid: {list(RUBRIC_VERSIONS)}")
    return (importlib.resources.files("memcollab_eval") / "prompts" / f"judge_rubric_{version}.txt").read_text()


def judge_prompt(*, domain: str, problem: str, answer: str, reference: str = "", version: str) -> str:
    answer = answer.strip()
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[:MAX_ANSWER_CHARS] + "\n[... truncated]"
    block = f"\nKEY POINTS A GOOD ANSWER COVERS:\n{reference.strip()}\n" if reference.strip() else ""
    return rubric_template(version).format(domain=domain, problem=problem.strip(), reference=block,
                                           answer=answer or "(empty)")


def parse_score(reply: str) -> int | None:
    """The score a judge reply names (1-5), else None. The first ``SCORE`` line wins; a reply that
    is only a number counts too. Anything looser (a number somewhere in prose) is not a score."""
    text = reply.replace("**", "")
    m = _SCORE.search(text) or _BARE.match(text)
    return int(m.group(1)) if m else None


def judge_trajectories(todo: Sequence[tuple[Key, str]], *, path: Path, judge: str, version: str,
                       generate: JudgeGenerate, gen_kwargs: dict[str, Any], batch_size: int
                       ) -> dict[Key, JudgeRecord]:
    """Score ``todo`` ((key, judge prompt) pairs) and return every record of this judge and rubric in
    ``path``, old and new; each batch is appended as soon as it is scored."""
    done = {r.key: r for r in map(JudgeRecord.from_json, read_records(path, JudgeRecord.REQUIRED))
            if r.judge == judge and r.rubric_version == version}
    pending = [(k, p) for k, p in todo if k not in done]
    if not pending:
        return done
    with tqdm(total=len(pending), desc=f"judge {judge}", unit="trajectory") as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            out = generate([p for _, p in batch], dict(gen_kwargs))
            records = []
            for (key, _), g in zip(batch, out, strict=True):
                score = parse_score(g.text)
                records.append(JudgeRecord(key[0], key[1], key[2], judge, version,
                                           "ok" if score is not None else "unparsed", score, g.text,
                                           round(g.seconds, 3), g.prompt_tokens, g.completion_tokens))
            append_records(path, [r.to_json() for r in records])
            done.update({r.key: r for r in records})
            bar.update(len(batch))
    return done


def agreement(scores: Mapping[Key, int | None], passed: Mapping[Key, bool], pass_score: int) -> dict[str, Any]:
    """How the judge's scores agree with the verifier on the trajectories both scored.

    *Pointwise*: a score >= ``pass_score`` counts as the judge's "pass"; accuracy, balanced accuracy
    (the mean of the rates on passing and failing trajectories, so a judge that calls everything
    "pass" gets 0.5), and the mean score of passing and failing trajectories. *Pairwise*: for every
    problem and pair of trajectories the verifier separates (one passed, one failed), whether the judge
    scored the passing one higher, equal or lower -- the decision the preference rule takes.
    ``unparsed`` counts trajectories the verifier scored and the judge did not."""
    both = [k for k in passed if k in scores and scores[k] is not None]
    unparsed = sum(1 for k in passed if k in scores and scores[k] is None)
    pos = [k for k in both if passed[k]]
    neg = [k for k in both if not passed[k]]
    tpr = sum(scores[k] >= pass_score for k in pos) / len(pos) if pos else None  # type: ignore[operator]
    tnr = sum(scores[k] < pass_score for k in neg) / len(neg) if neg else None  # type: ignore[operator]
    correct = sum((scores[k] >= pass_score) == passed[k] for k in both)  # type: ignore[operator]
    by_problem: dict[str, list[Key]] = {}
    for k in both:
        by_problem.setdefault(k[0], []).append(k)
    higher = equal = lower = 0
    for keys in by_problem.values():
        for a in (k for k in keys if passed[k]):
            for b in (k for k in keys if not passed[k]):
                sa, sb = scores[a], scores[b]
                higher += sa > sb  # type: ignore[operator]
                equal += sa == sb
                lower += sa < sb  # type: ignore[operator]
    pairs = higher + equal + lower

    def mean(keys: list[Key]) -> float | None:
        return round(sum(scores[k] for k in keys) / len(keys), 3) if keys else None  # type: ignore[misc]

    return {
        "trajectories": len(both), "verifier_passed": len(pos), "verifier_failed": len(neg), "unparsed": unparsed,
        "pass_score": pass_score,
        "accuracy": round(correct / len(both), 3) if both else None,
        "balanced_accuracy": round((tpr + tnr) / 2, 3) if tpr is not None and tnr is not None else None,
        "judge_pass_rate_on_verifier_pass": None if tpr is None else round(tpr, 3),
        "judge_fail_rate_on_verifier_fail": None if tnr is None else round(tnr, 3),
        "mean_score_verifier_pass": mean(pos), "mean_score_verifier_fail": mean(neg),
        "pairs": pairs, "pairs_judge_agrees": higher, "pairs_judge_ties": equal, "pairs_judge_reverses": lower,
        "pairwise_agreement": round(higher / pairs, 3) if pairs else None,
    }


def score_histogram(records: Sequence[JudgeRecord]) -> dict[str, int]:
    out = {str(s): 0 for s in range(SCORE_RANGE[0], SCORE_RANGE[1] + 1)}
    out["unparsed"] = 0
    for r in records:
        out["unparsed" if r.score is None else str(r.score)] += 1
    return out
