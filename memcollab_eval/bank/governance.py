"""Which entries of a bank one run may retrieve: access (scopes, policy) and lifecycle (validity, status,
supersession), decided once per run before any ranking.

Why before ranking, not after: an entry that a run may not see must not influence it at all. The
retriever is built over the entries this screen lets through, so a hidden entry is in no index,
no candidate set, no shortlist shown to an LLM selector and no idf statistic, whichever ranker or
ablation (no category, no model filter, full bank) the run uses. The guarantee then rests on one
function, :func:`screen`, instead of on every ranking path remembering a filter.

Each removed entry gets exactly one reason, the first that applies, in this order: ``scope`` and
``policy`` (the access filter), then ``retired``, ``superseded``, ``not_yet_valid`` and ``expired``
(the lifecycle). A bank without governance fields loses nothing here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from memcollab_eval.bank.fields import check_name, parse_time
from memcollab_eval.bank.store import MemoryEntry

ACCESS_REASONS = ("scope", "policy")
LIFECYCLE_REASONS = ("retired", "superseded", "not_yet_valid", "expired")
REASONS = ACCESS_REASONS + LIFECYCLE_REASONS


@dataclass(frozen=True)
class Access:
    """Who a run retrieves for and when: the principal and its groups (from ``access.principals``
    in the config), whether the target is external (``target.external``), and the instant
    validity is judged at (the run's start unless ``retrieval.as_of`` pins one)."""

    principal: str | None = None
    groups: frozenset[str] = frozenset()
    external_target: bool = False
    as_of: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if self.principal is not None:
            check_name(self.principal, "retrieval.principal")
        for g in self.groups:
            check_name(g, "group")
        if self.as_of.tzinfo is None:
            object.__setattr__(self, "as_of", self.as_of.replace(tzinfo=timezone.utc))

    @property
    def names(self) -> frozenset[str]:
        """The names an entry's scopes may grant access to: the principal and its groups."""
        return self.groups | ({self.principal} if self.principal is not None else set())

    def record(self) -> dict:
        return {"principal": self.principal, "groups": sorted(self.groups), "external_target": self.external_target,
                "as_of": self.as_of.isoformat(timespec="seconds")}


def access_for(principal: str | None, principals: Mapping[str, Sequence[str]] | None = None, *,
               external_target: bool = False, as_of: str | datetime | None = None) -> Access:
    """The :class:`Access` of a run: ``principals`` maps each principal to its groups (the config's
    ``access.principals``); ``as_of`` an ISO date or date-time, or None for now."""
    groups = frozenset((principals or {}).get(principal, ())) if principal is not None else frozenset()
    moment = parse_time(as_of) if isinstance(as_of, str) else as_of
    return Access(principal, groups, external_target, moment or datetime.now(timezone.utc))


def access_reason(entry: MemoryEntry, access: Access) -> str | None:
    """Why the access filter hides ``entry`` from ``access`` (``scope`` or ``policy``), or None."""
    if entry.scopes is not None and not access.names.intersection(entry.scopes):
        return "scope"
    tags = entry.policy or ()
    if "no-external-models" in tags and access.external_target:
        return "policy"
    if "internal" in tags and (access.principal is None or access.external_target):
        return "policy"
    return None


def lifecycle_reason(entry: MemoryEntry, superseded: frozenset[str], as_of: datetime) -> str | None:
    """Why ``entry`` no longer (or not yet) holds at ``as_of``, or None."""
    if entry.status == "retired":
        return "retired"
    if entry.id in superseded:
        return "superseded"
    if entry.valid_from and as_of < parse_time(entry.valid_from):
        return "not_yet_valid"
    if entry.valid_until and as_of >= parse_time(entry.valid_until):
        return "expired"
    return None


def superseded_ids(entries: Sequence[MemoryEntry]) -> frozenset[str]:
    """Ids that another entry of the bank replaces (``supersedes``)."""
    return frozenset(e.supersedes for e in entries if e.supersedes)


def is_governed(entries: Sequence[MemoryEntry]) -> bool:
    """Whether any entry carries an access or lifecycle field (a bank that does not behaves as before)."""
    return any(e.scopes is not None or e.policy or e.valid_from or e.valid_until or e.status == "retired"
               or e.supersedes for e in entries)


@dataclass(frozen=True)
class Screen:
    """The outcome for one bank and one :class:`Access`: the indices of the entries let through
    (bank order) and, for each removed index, its reason."""

    kept: tuple[int, ...]
    removed: Mapping[int, str]

    def counts(self) -> dict[str, int]:
        c = Counter(self.removed.values())
        return {r: c.get(r, 0) for r in REASONS}


def screen(entries: Sequence[MemoryEntry], access: Access) -> Screen:
    """Decide every entry: kept, or removed with one reason (module docstring)."""
    gone = superseded_ids(entries)
    kept, removed = [], {}
    for i, e in enumerate(entries):
        reason = access_reason(e, access) or lifecycle_reason(e, gone, access.as_of)
        if reason is None:
            kept.append(i)
        else:
            removed[i] = reason
    return Screen(tuple(kept), removed)


__all__ = ["ACCESS_REASONS", "LIFECYCLE_REASONS", "REASONS", "Access", "Screen", "access_for", "access_reason",
           "is_governed", "lifecycle_reason", "screen", "superseded_ids"]
