"""The governance and lifecycle fields of a memory entry: what each may hold, checked one value at a time.

A shared bank needs more than lessons: who may retrieve an entry (``scopes``), which policies bind
it (``policy``), where it came from (``source``) and whether it still holds (``valid_from``,
``valid_until``, ``status``, ``supersedes``). Every one of these is optional, and a bank without
them behaves, and serializes, exactly as before they existed.

Why a closed vocabulary for policy tags: a tag that retrieval does not know is a tag it would
ignore, so a typo (``no-extrenal-models``) would silently send an entry where its author said it
must not go. Unknown tags are refused at load time instead (fail closed).

The validators take a value and return it normalised (a list becomes a tuple) or raise
:class:`FieldProblem` with a message that the store prefixes with the file and line. This module
imports nothing of the project, so the store can use it without an import circle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

STATUSES = ("active", "retired")
# policy tag -> what retrieval does with it (README "Governing a shared bank" says the same)
POLICIES: dict[str, str] = {
    "internal": "retrieved only by a named principal (retrieval.principal set) and never for an external target",
    "no-external-models": "never retrieved when the target is marked external (target.external=true)",
}
SOURCE_KEYS: dict[str, type] = {"build": str, "models": list, "dataset": str, "split": str}
# scope and principal names: a word of letters, digits and . _ - @ : (no spaces, no commas: they appear in
# command lines and in CSV cells)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class FieldProblem(ValueError):
    """One field's value is not allowed; the message says what is wrong without saying where."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise FieldProblem(f"{what} {value!r} is not a name (letters, digits and . _ - @ :, no spaces)")
    return value


def check_scopes(value: Any) -> tuple[str, ...]:
    """The principals or groups allowed to retrieve the entry. Absent means everyone; an empty list
    would hide the entry from everyone, which is what ``status: retired`` says more plainly."""
    if not isinstance(value, list):
        raise FieldProblem(f"must be a list of principal or group names, got {_type_name(value)}")
    if not value:
        raise FieldProblem("is an empty list, which no principal could ever match (leave the field out for "
                           "everyone, or retire the entry)")
    names = tuple(check_name(v, "scope") for v in value)
    if len(set(names)) != len(names):
        raise FieldProblem(f"lists a name twice ({sorted(n for n in set(names) if names.count(n) > 1)[0]!r})")
    return names


def check_policy(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldProblem(f"must be a list of policy tags, got {_type_name(value)}")
    unknown = [v for v in value if v not in POLICIES]
    if unknown:
        raise FieldProblem(f"tag {unknown[0]!r} is not a known policy (known: {', '.join(POLICIES)}); retrieval "
                           "would ignore it, so it is refused")
    if len(set(value)) != len(value):
        raise FieldProblem("lists a tag twice")
    return tuple(value)


def check_source(value: Any) -> dict[str, Any]:
    """Where the entry came from: ``build`` (a build name or command), ``models`` (the models whose
    trajectories it was distilled from, or that wrote it), ``dataset`` and ``split``."""
    if not isinstance(value, Mapping):
        raise FieldProblem(f"must be an object with keys {', '.join(SOURCE_KEYS)}, got {_type_name(value)}")
    unknown = sorted(set(value) - set(SOURCE_KEYS))
    if unknown:
        raise FieldProblem(f"unknown key {unknown[0]!r} (allowed: {', '.join(SOURCE_KEYS)})")
    if not value:
        raise FieldProblem(f"is empty (give at least one of {', '.join(SOURCE_KEYS)}, or leave the field out)")
    for key, item in value.items():
        if key == "models":
            if not isinstance(item, list) or not item or not all(isinstance(m, str) and m.strip() for m in item):
                raise FieldProblem("key 'models' must be a non-empty list of model names")
        elif not isinstance(item, str) or not item.strip():
            raise FieldProblem(f"key {key!r} must be a non-empty string, got {item!r}")
    return {k: (list(v) if k == "models" else v) for k, v in value.items()}


def parse_time(value: str) -> datetime:
    """An ISO 8601 date (``2026-01-31``: its first instant, UTC) or date-time (no offset: UTC; a
    trailing ``Z`` allowed), as an aware datetime."""
    if not isinstance(value, str):
        raise FieldProblem(f"must be an ISO 8601 date or date-time string, got {_type_name(value)}")
    text = value.strip()
    try:
        if _DATE.match(text):
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise FieldProblem(f"{value!r} is not an ISO 8601 date (2026-01-31) or date-time "
                           "(2026-01-31T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_time(value: Any) -> str:
    parse_time(value)
    return value


def check_status(value: Any) -> str:
    if value not in STATUSES:
        raise FieldProblem(f"must be one of {', '.join(STATUSES)}, got {value!r}")
    return value


def check_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldProblem(f"must be a non-empty string, got {value!r}")
    return value


# field -> validator, in the order an entry lists them
GOVERNANCE_FIELDS = {
    "source": check_source, "scopes": check_scopes, "policy": check_policy,
    "valid_from": check_time, "valid_until": check_time, "status": check_status,
    "retired_why": check_text, "supersedes": check_text,
}


def check_together(values: Mapping[str, Any]) -> None:
    """Rules between the fields of one entry (the values already passed their own validators)."""
    if "valid_from" in values and "valid_until" in values:
        if parse_time(values["valid_until"]) <= parse_time(values["valid_from"]):
            raise FieldProblem(f"field 'valid_until' ({values['valid_until']}) must be after field 'valid_from' "
                               f"({values['valid_from']})")
    if "retired_why" in values and values.get("status") != "retired":
        raise FieldProblem("field 'retired_why' is set but field 'status' is not 'retired'")
    if values.get("supersedes") is not None and values.get("supersedes") == values.get("id"):
        raise FieldProblem("field 'supersedes' names the entry itself")


__all__ = ["GOVERNANCE_FIELDS", "POLICIES", "SOURCE_KEYS", "STATUSES", "FieldProblem", "check_name",
           "check_together", "parse_time"]
