"""The human-labels preference signal: a JSONL file of ``{"problem_id", "preferred", "unpreferred"}``.

Why: where neither a verifier nor a judge is trusted, people say which of two trajectories is
better, and the build distills exactly those pairs. ``preferred`` and ``unpreferred`` name a
trajectory by its source model, as in ``sources`` (the config name) or as the bank names it (the
model's identity), optionally with ``#<sample>`` (default 0) for self-contrast builds. Other
fields (``annotator``, ``note``, ...) are kept out of the way and ignored.

Every problem in the file is reported at once, each as ``file:line: field 'x': what is wrong``,
and nothing is built until the file is clean: a label that silently fell out would change the
bank without anyone noticing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from memcollab_eval.construct.records import Key
from memcollab_eval.errors import UsageError
from memcollab_eval.packaged_data import sha256_file

LABEL_FIELDS = ("problem_id", "preferred", "unpreferred")
MAX_SHOWN = 20


class LabelsError(UsageError):
    """A labels file that cannot be used; the message lists every bad line."""


@dataclass(frozen=True)
class Label:
    problem_id: str
    preferred: Key
    unpreferred: Key
    where: str  # file:line, recorded with the pair it becomes


def labels_sha256(path: str | Path) -> str:
    return sha256_file(Path(path))


def _side(value: str, names: Mapping[str, str], samples: int) -> tuple[tuple[str, int] | None, str | None]:
    """(source name, sample) for a label's ``preferred``/``unpreferred`` value, or the reason it is bad;
    ``names`` maps each source's name and identity to the source name."""
    name, _, sample_text = value.partition("#")
    source = names.get(name)
    if source is None:
        return None, f"{name!r} is not a source model of this build (sources or their identities: " \
                     f"{', '.join(sorted(names))})"
    if not sample_text:
        return (source, 0), None
    if not sample_text.isdigit() or int(sample_text) >= samples:
        return None, f"sample {sample_text!r} of {name!r} does not exist (this build makes samples 0-{samples - 1})"
    return (source, int(sample_text)), None


def read_labels(path: str | Path, identities: Mapping[str, str], samples: int = 1) -> list[Label]:
    """Parse and validate a labels file against the build's sources (``identities``: source name ->
    identity). Raises :class:`LabelsError` listing every bad line; pool membership is checked later
    by :func:`check_problems`, once the pool is known."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"preference.labels: {path} is not a file")
    names = _name_map(identities)
    errors: list[str] = []
    labels: list[Label] = []
    seen: dict[tuple[str, Key, Key], int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{path}: not UTF-8 (byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{where}: expected a JSON object with fields {list(LABEL_FIELDS)}, got {type(obj).__name__}")
            continue
        bad = False
        for name in LABEL_FIELDS:
            if name not in obj:
                errors.append(f"{where}: field {name!r}: missing (required: {list(LABEL_FIELDS)})")
                bad = True
            elif not isinstance(obj[name], str) or not obj[name].strip():
                errors.append(f"{where}: field {name!r}: expected a non-empty string, got {obj[name]!r}")
                bad = True
        if bad:
            continue
        sides = {}
        for name in ("preferred", "unpreferred"):
            side, why = _side(obj[name].strip(), names, samples)
            if why:
                errors.append(f"{where}: field {name!r}: {why}")
                bad = True
            sides[name] = side
        if bad:
            continue
        pid = obj["problem_id"].strip()
        preferred = (pid, *sides["preferred"])
        unpreferred = (pid, *sides["unpreferred"])
        if preferred == unpreferred:
            errors.append(f"{where}: field 'unpreferred': the same trajectory as 'preferred' ({obj['preferred']!r})")
            continue
        triple = (pid, preferred, unpreferred)
        if triple in seen:
            errors.append(f"{where}: field 'problem_id': repeats the label of line {seen[triple]}")
            continue
        if (pid, unpreferred, preferred) in seen:
            errors.append(f"{where}: field 'preferred': contradicts line {seen[(pid, unpreferred, preferred)]}, "
                          "which prefers the other side")
            continue
        seen[triple] = number
        labels.append(Label(pid, preferred, unpreferred, where))  # type: ignore[arg-type]
    if errors:
        raise LabelsError(_summary(path, errors))
    if not labels:
        raise LabelsError(f"{path}: no labels (expected JSON lines with fields {list(LABEL_FIELDS)})")
    return labels


def _name_map(identities: Mapping[str, str]) -> dict[str, str]:
    """source name -> source name, and identity -> source name (a source's own name wins)."""
    out = {identity: source for source, identity in identities.items()}
    out.update({source: source for source in identities})
    return out


def check_problems(labels: Sequence[Label], pool_ids: Collection[str]) -> None:
    """Every label must name a problem of this build's pool."""
    ids = set(pool_ids)
    errors = [f"{label.where}: field 'problem_id': {label.problem_id!r} is not a problem of this build's pool"
              for label in labels if label.problem_id not in ids]
    if errors:
        raise LabelsError(_summary(Path(labels[0].where.rsplit(":", 1)[0]), errors))


def _summary(path: Path, errors: list[str]) -> str:
    shown = errors[:MAX_SHOWN] + ([f"... and {len(errors) - MAX_SHOWN} more"] if len(errors) > MAX_SHOWN else [])
    return f"{len(errors)} problem(s) in the labels file {path}:\n  " + "\n  ".join(shown)
