"""Pool statistics in one round trip, as cheap as the seed's four counts or cheaper.

The seed library sent four ``count`` commands per pool. Here one aggregation
computes every figure: a ``$group`` by each document's state (see
:func:`sessionlib.states.state_expression`, the only expression evaluated
per document) with the sums and minimums of raw fields, checked once per row
(see :func:`grouped_pipeline`). It reads each document once; on the test
server it costs 0.9 times the seed's counts (``benchmarks/scale.py``). The
rows also say whether any session has scoped locks: only then is a second
command sent for the scope figures.

A pool with a custom ``default_filter`` or overridden filter hooks keeps the
seed's meaning of its states, so its statistics use those filters in one
``$facet`` aggregation instead.

Malformed documents never stop the statistics: a ``next_use`` that is neither
null nor a date puts the document in ``other``; an unknown ``lock_kind`` counts
as ``locked``; counters that are not finite numbers (a string, NaN, Infinity)
are left out of the sums, and decimals are summed as the server sums them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Protocol

from bson import Decimal128

from .metadata import CLOSED, METADATA_COLLECTION, BreakerState, Target
from .now import Now
from .scopes import SCOPES
from .states import (
    ENDED,
    LOCK_KINDS,
    Fields,
    LockKind,
    State,
    is_date_expression,
    number_or_zero,
    state_expression,
)

__all__ = [
    "METADATA_PART",
    "PART_FIELD",
    "POOL_FIELD",
    "SCOPES_PART",
    "UNREAD",
    "PoolStatistics",
    "facet_pipeline",
    "grouped_pipeline",
    "metadata_pipeline",
    "needs_exact",
    "union_pipeline",
]

POOL_FIELD = "_pool"
"""The field that names each row's pool in :func:`union_pipeline`'s output."""
PART_FIELD = "_part"
"""The field that marks the scope and metadata rows in :func:`union_pipeline`'s output."""
SCOPES_PART = "scopes"
METADATA_PART = "metadata"

Filter = dict[str, Any]
Load = Callable[[datetime], datetime]

_STATES = frozenset(state.value for state in State)
_KINDS = frozenset(kind.value for kind in LockKind)


class StatisticsFields(Fields, Protocol):
    """The field names the statistics read."""

    @property
    def locked_at(self) -> str: ...
    @property
    def count_use(self) -> str: ...
    @property
    def count_success(self) -> str: ...


def _date_or_null(path: str) -> dict[str, Any]:
    return {"$cond": [is_date_expression(path), path, None]}


def grouped_pipeline(
    fields: StatisticsFields,
    instant: datetime,
    *,
    scope_locked: dict[str, Any] | None = None,
    budget_spent: dict[str, Any] | None = None,
    exact: bool = False,
) -> list[dict[str, Any]]:
    """The statistics of a pool with the default filter, judged at *instant* (stored).

    One output row per state present (and :data:`~sessionlib.states.ENDED`):
    ``_id`` (the state), ``n``, ``uses``, ``successes``, ``next_unlock`` and
    ``oldest_lock``. With *scope_locked*, as a hand-out with that scope sees
    the pool; with *budget_spent*, a free session whose budgets admit no
    hand-out counts as ``budget`` (see :func:`~sessionlib.states.state_expression`).

    The state is the only expression evaluated per document: the sums and
    minimums read the raw fields, and each row is checked once, after the
    group. A row they cannot be trusted for (a counter that is not a 32-bit
    integer, a lock time that is not a date: see :func:`needs_exact`) is
    read again with *exact*, which checks every document's fields as the
    sums and minimums are taken.
    """
    state = state_expression(
        fields, instant, scope_locked=scope_locked, budget_spent=budget_spent, ended=True
    )
    uses: Any = f"${fields.count_use}"
    successes: Any = f"${fields.count_success}"
    next_use: Any = f"${fields.next_use}"
    locked_at: Any = f"${fields.locked_at}"
    if exact:
        uses, successes = number_or_zero(uses), number_or_zero(successes)
        next_use, locked_at = _date_or_null(next_use), _date_or_null(locked_at)
    group = {
        "_id": state,
        "n": {"$sum": 1},
        "uses": {"$sum": uses},
        "successes": {"$sum": successes},
        "next_unlock": {"$min": next_use},
        "oldest_lock": {"$min": locked_at},
        # Whether any session has scoped locks: only then are the scope figures read.
        "scoped": {"$max": f"${SCOPES}" if not exact else _present(f"${SCOPES}")},
    }
    checked = {name: _row_instant(name) for name in _INSTANTS}
    present = {"scoped": {"$ne": [{"$ifNull": ["$scoped", None]}, None]}}
    return [{"$group": group}, {"$set": {**checked, **present}}]


def _present(path: str) -> dict[str, Any]:
    """1 where the field at *path* holds something (not null, not missing), else null."""
    return {"$cond": [{"$eq": [{"$ifNull": [path, None]}, None]}, None, 1]}


_INSTANTS = ("next_unlock", "oldest_lock")
_LOCKED_STATES = [State.IN_USE.value, State.LOCKED.value, State.BLOCKED.value, State.BUDGET.value]

UNREAD = "unread"
"""A row's instant that is not a date sessionlib reads (a string, year 0...): read it exactly."""


def _row_instant(name: str) -> dict[str, Any]:
    """A row's minimum *name*: kept in a locked state's row if it is a date; else null or UNREAD.

    Evaluated once per row. The raw minimum of a field that holds a string
    or an unreadable date among its dates is not the earliest date: such a
    row says :data:`UNREAD`, and is read again exactly; the value itself is
    never sent (a date before year 1 would not decode).
    """
    path = f"${name}"
    unread = {"$cond": [{"$eq": [{"$ifNull": [path, None]}, None]}, None, UNREAD]}
    checked = {"$cond": [is_date_expression(path), path, unread]}
    return {"$cond": [{"$in": ["$_id", _LOCKED_STATES]}, checked, None]}


def needs_exact(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether :func:`grouped_pipeline`'s *rows* must be read again with ``exact``.

    A sum the server returns as a 32-bit integer summed only 32-bit integers
    (and skipped what is no number), exactly as the exact read would; any
    other (a long, a double that may be NaN, a decimal) may hold a value the
    exact read leaves out.
    """
    for row in rows:
        if any(type(row.get(name, 0)) is not int for name in ("uses", "successes")):
            return True
        if any(row.get(name) == UNREAD for name in _INSTANTS):
            return True
    return False


def union_pipeline(
    pipeline: Sequence[dict[str, Any]],
    collections: Sequence[str],
    *,
    part: str | None = None,
    metadata: bool = False,
) -> list[dict[str, Any]]:
    """*pipeline* run on each of several pools of one database, in one command.

    Run on the first of *collections*, with a ``$unionWith`` for each of the
    others. Each row carries its pool's name in :data:`POOL_FIELD`, and
    *part* in :data:`PART_FIELD` if given. With *metadata*, the metadata
    documents (targets and breakers, from
    :data:`~sessionlib.metadata.METADATA_COLLECTION`) follow, marked
    ``"metadata"``. A pool with no rows is empty.
    """

    def tagged(name: str) -> list[dict[str, Any]]:
        tag = {POOL_FIELD: name} if part is None else {POOL_FIELD: name, PART_FIELD: part}
        return [*pipeline, {"$set": tag}]

    first, *others = collections
    stages = tagged(first)
    stages += [{"$unionWith": {"coll": name, "pipeline": tagged(name)}} for name in others]
    if metadata:
        branch = metadata_pipeline(collections)
        stages.append({"$unionWith": {"coll": METADATA_COLLECTION, "pipeline": branch}})
    return stages


def metadata_pipeline(collections: Sequence[str]) -> list[dict[str, Any]]:
    """The metadata documents of *collections*, tagged for :func:`union_pipeline`."""
    return [
        {"$match": {"_id": {"$in": list(collections)}}},
        {"$project": {"target": 1, "breaker": 1}},
        {"$set": {POOL_FIELD: "$_id", PART_FIELD: METADATA_PART}},
    ]


def facet_pipeline(
    fields: StatisticsFields, *, available: Filter, locked: Filter, inactive: Filter
) -> list[dict[str, Any]]:
    """The statistics of a pool whose own filters define *available*, *locked*, *inactive*."""
    return [
        {
            "$facet": {
                "available": [{"$match": available}, {"$group": {"_id": None, "n": {"$sum": 1}}}],
                "locked": [
                    {"$match": locked},
                    {
                        "$group": {
                            "_id": {
                                "$cond": [
                                    {
                                        "$in": [
                                            f"${fields.lock_kind}",
                                            [k.value for k in LOCK_KINDS],
                                        ]
                                    },
                                    f"${fields.lock_kind}",
                                    LockKind.LOCKED.value,
                                ]
                            },
                            "n": {"$sum": 1},
                            "next_unlock": {"$min": _date_or_null(f"${fields.next_use}")},
                            "oldest_lock": {"$min": _date_or_null(f"${fields.locked_at}")},
                        }
                    },
                ],
                "inactive": [{"$match": inactive}, {"$group": {"_id": None, "n": {"$sum": 1}}}],
                "totals": [
                    {
                        "$group": {
                            "_id": None,
                            "n": {"$sum": 1},
                            "uses": {"$sum": number_or_zero(f"${fields.count_use}")},
                            "successes": {"$sum": number_or_zero(f"${fields.count_success}")},
                        }
                    }
                ],
            }
        }
    ]


def as_count(value: object) -> int:
    """The whole number a server sum came back as; 0 for anything that is not finite."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, Decimal128):
        try:
            number = value.to_decimal()
            return int(number) if number.is_finite() else 0
        except (InvalidOperation, ValueError):
            return 0
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() else 0
    return 0


def _by_state(rows: Sequence[Mapping[str, Any]]) -> dict[State, list[Mapping[str, Any]]]:
    """*rows* by state: :data:`~sessionlib.states.ENDED` is available; an unknown name, other."""
    found: dict[State, list[Mapping[str, Any]]] = {}
    for row in rows:
        name = row.get("_id")
        state = State(name) if isinstance(name, str) and name in _STATES else State.OTHER
        found.setdefault(State.AVAILABLE if name == ENDED else state, []).append(row)
    return found


def _added(values: list[object]) -> object:
    """The sum of server sums (of one state), in decimals; a single one as it is."""
    if len(values) == 1:
        return values[0]
    total = Decimal(0)
    for value in values:
        if isinstance(value, Decimal128):
            value = value.to_decimal()
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            continue
        total += value if isinstance(value, Decimal) else Decimal(repr(value))
    return total


def _earliest(values: list[object], load: Load) -> datetime | None:
    instants = [load(value) for value in values if isinstance(value, datetime)]
    return min(instants) if instants else None


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A pool's statistics at one instant.

    The states partition the pool: ``available + in_use + locked + blocked +
    inactive + other == total``, where ``other`` counts documents no state
    describes (a ``next_use`` that is not a date, or a custom
    ``default_filter`` that leaves documents out).
    """

    total: int
    available: int
    in_use: int
    locked: int
    blocked: int
    inactive: int
    uses: int
    successes: int
    next_unlock: datetime | None
    """When the earliest locked session becomes available again, or ``None``."""
    oldest_lock: datetime | None
    """When the oldest current lock was set (sessions locked by sessionlib only), or ``None``."""
    expired: int = 0
    """Locks that have ended but whose fields ``release_expired_locks`` would tidy."""
    budget: int = 0
    """Sessions held until their usage budget allows another hand-out."""
    scopes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Per scope in use: sessions available to all that it has locked."""
    scopes_ended: int = 0
    """Scoped locks that have ended, which ``release_expired_scoped_locks`` would drop."""
    target: Target | None = None
    """The pool's alert target, if one is set."""
    breaker: BreakerState = CLOSED
    """The state of the pool's circuit breaker, judged when the statistics were read."""

    @property
    def unavailable(self) -> int:
        """Sessions that match the filter but are locked, of any kind."""
        return self.in_use + self.locked + self.blocked + self.budget

    @property
    def other(self) -> int:
        """Documents in no state (see the class docstring); never negative."""
        parts = self.available + self.unavailable + self.inactive
        return max(0, self.total - parts)

    @classmethod
    def from_groups(cls, rows: Sequence[Mapping[str, Any]], load: Load) -> PoolStatistics:
        """Build the statistics from the rows of :func:`grouped_pipeline`.

        *load* turns stored instants into true ones.
        """
        counts = dict.fromkeys(State, 0)
        locked_rows = []
        uses = successes = expired = 0
        for state, group in _by_state(rows).items():
            counts[state] += sum(as_count(row.get("n")) for row in group)
            # A state's sums are added before they are made whole, as the server would.
            uses += as_count(_added([row.get("uses") for row in group]))
            successes += as_count(_added([row.get("successes") for row in group]))
            expired += sum(as_count(row.get("n")) for row in group if row.get("_id") == ENDED)
            if state in (State.IN_USE, State.LOCKED, State.BLOCKED, State.BUDGET):
                locked_rows += group
        return cls(
            total=sum(counts.values()),
            available=counts[State.AVAILABLE],
            in_use=counts[State.IN_USE],
            locked=counts[State.LOCKED],
            blocked=counts[State.BLOCKED],
            inactive=counts[State.INACTIVE],
            uses=uses,
            successes=successes,
            next_unlock=_earliest([row.get("next_unlock") for row in locked_rows], load),
            oldest_lock=_earliest([row.get("oldest_lock") for row in locked_rows], load),
            expired=expired,
            budget=counts[State.BUDGET],
        )

    def with_scopes(self, rows: Sequence[Mapping[str, Any]]) -> PoolStatistics:
        """These statistics with the scope figures of :func:`scope_statistics_pipeline`'s rows."""
        scopes: dict[str, int] = {}
        ended = 0
        for row in rows:
            key = row.get("_id")
            if not isinstance(key, Mapping) or not isinstance(key.get("scope"), str):
                continue
            n = as_count(row.get("n"))
            if key.get("locked") is True and key.get("available") is True:
                scopes[key["scope"]] = scopes.get(key["scope"], 0) + n
            else:
                scopes.setdefault(key["scope"], 0)
            if key.get("ended") is True:
                ended += n
        return replace(self, scopes=MappingProxyType(scopes), scopes_ended=ended)

    def with_metadata(self, document: Mapping[str, Any] | None, now: Now) -> PoolStatistics:
        """These statistics with the target and breaker of a metadata *document* (or none).

        The breaker is judged at *now*: open only while its cool-down runs.
        """
        if document is None:
            return self
        return replace(
            self,
            target=Target.from_document(document.get("target")),
            breaker=BreakerState.from_document(document.get("breaker"), now),
        )

    @classmethod
    def from_facets(cls, result: Sequence[Mapping[str, Any]], load: Load) -> PoolStatistics:
        """Build the statistics from the output of :func:`facet_pipeline`."""
        facets: Mapping[str, Any] = result[0] if result else {}

        def first(name: str) -> Mapping[str, Any]:
            rows: list[Mapping[str, Any]] = facets.get(name) or [{}]
            return rows[0]

        by_kind = dict.fromkeys(LOCK_KINDS, 0)
        locked_rows = facets.get("locked") or []
        for row in locked_rows:
            name = row.get("_id")
            kind = LockKind(name) if isinstance(name, str) and name in _KINDS else LockKind.LOCKED
            by_kind[kind] += as_count(row.get("n"))
        totals = first("totals")
        return cls(
            total=as_count(totals.get("n", 0)),
            available=as_count(first("available").get("n", 0)),
            in_use=by_kind[LockKind.IN_USE],
            locked=by_kind[LockKind.LOCKED],
            blocked=by_kind[LockKind.BLOCKED],
            inactive=as_count(first("inactive").get("n", 0)),
            uses=as_count(totals.get("uses", 0)),
            successes=as_count(totals.get("successes", 0)),
            next_unlock=_earliest([row.get("next_unlock") for row in locked_rows], load),
            oldest_lock=_earliest([row.get("oldest_lock") for row in locked_rows], load),
            budget=by_kind[LockKind.BUDGET],
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the seed's statistics dict, extended.

        The seed's keys keep their meaning: ``count_active`` (available),
        ``count_blocked`` (``active`` is ``False``: disabled for good),
        ``count_locked`` (locked, all kinds) and ``count_total``.
        """
        return {
            "count_active": self.available,
            "count_blocked": self.inactive,
            "count_locked": self.unavailable,
            "count_total": self.total,
            "locked_by_kind": {
                LockKind.IN_USE.value: self.in_use,
                LockKind.LOCKED.value: self.locked,
                LockKind.BLOCKED.value: self.blocked,
                LockKind.BUDGET.value: self.budget,
            },
            "sum_count_use": self.uses,
            "sum_count_success": self.successes,
            "next_unlock": self.next_unlock,
            "oldest_lock": self.oldest_lock,
        }
