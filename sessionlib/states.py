"""The states of a session, and the one definition of each.

Every document of a pool is in exactly one state at an instant ``now``
(with the default filter, ``active`` not ``False``)::

    inactive    active is False                             (disabled for good)
    available   next_use is null or missing, or a date < now
    in_use      next_use is a date >= now, lock_kind "in_use"  (held after a hand-out)
    blocked     ...                        lock_kind "blocked"
    budget      ...                        lock_kind "budget"  (its usage budget is spent)
    locked      ...                        any other lock_kind, or none (the seed's locks)
    other       next_use is neither null nor a date          (malformed)

The rule that an unknown ``lock_kind`` counts as ``locked`` keeps documents
written by the seed library (which has no kinds) and by other programs
countable. The same states are expressed three ways here, and a property test
holds them equal:

* :func:`state_filter`: a query filter, for listings;
* :func:`state_expression`: an aggregation expression, for statistics;
* :func:`state_of`: a Python function, for one document.

Statistics, the CLI, the exporter and auto-release all read them from here.
Instants passed in are in the pool's stored representation (see
:mod:`sessionlib.storedtime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from .clock import NEVER

__all__ = [
    "COUNTER_LIMIT",
    "EARLIEST",
    "LOCK_KINDS",
    "Fields",
    "Filter",
    "LockKind",
    "State",
    "combine",
    "inactive_expression",
    "is_date_expression",
    "is_document_expression",
    "locked_filter",
    "number_or_zero",
    "ready_filter",
    "state_expression",
    "state_filter",
    "state_of",
    "unlocked_filter",
]

Filter = dict[str, Any]

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
"""Before every real instant: the low end of "is a date" in aggregation expressions."""


class LockKind(StrEnum):
    """Values of the ``lock_kind`` field: why a session is unavailable until ``next_use``.

    Documents written by the seed library have no ``lock_kind``; a future
    ``next_use`` without one, or with an unknown one, counts as :attr:`LOCKED`.
    """

    IN_USE = "in_use"
    """Handed out (or just reported successful) and cooling down for ``next_use_delay``."""
    LOCKED = "locked"
    """Temporarily locked by ``session_lock``."""
    BLOCKED = "blocked"
    """Locked for long by ``session_block``."""
    BUDGET = "budget"
    """Held until its usage budget allows another hand-out (see :mod:`sessionlib.budgets`)."""


LOCK_KINDS = tuple(LockKind)
"""Every lock kind, in the order statistics list them."""


class State(StrEnum):
    """The state of a session at an instant; the states partition a pool."""

    AVAILABLE = "available"
    IN_USE = "in_use"
    LOCKED = "locked"
    BLOCKED = "blocked"
    BUDGET = "budget"
    INACTIVE = "inactive"
    OTHER = "other"


class Fields(Protocol):
    """The field names the states are built from (see :class:`~sessionlib.fields.MongoFields`)."""

    @property
    def active(self) -> str: ...
    @property
    def next_use(self) -> str: ...
    @property
    def lock_kind(self) -> str: ...
    @property
    def ready_at(self) -> str: ...


def combine(*filters: Mapping[str, Any]) -> Filter:
    """Return one filter matching all *filters*.

    Filters with distinct top-level keys are merged into one dict (the shape
    query planners handle best); clashing keys such as two ``$or`` are kept
    apart under ``$and``.
    """
    parts = [dict(f) for f in filters if f]
    keys = [key for f in parts for key in f]
    if len(keys) == len(set(keys)):
        return {key: value for f in parts for key, value in f.items()}
    return {"$and": parts}


def unlocked_filter(fields: Fields, instant: datetime) -> Filter:
    """Sessions not locked at *instant*: ``next_use`` null, missing or earlier."""
    return {"$or": [{fields.next_use: None}, {fields.next_use: {"$lt": instant}}]}


def locked_filter(fields: Fields, instant: datetime) -> Filter:
    """Sessions locked at *instant*: ``next_use`` is *instant* or later."""
    return {fields.next_use: {"$gte": instant}}


def ready_filter(fields: Fields, instant: datetime) -> Filter:
    """Sessions whose order key says they may be handed out at *instant*: up to it.

    The hand-out walks the order key (``ready_at``) in ascending order, so
    this range is where it looks. Documents without the key (written by the
    seed library) are in it; see :mod:`sessionlib.indexes`.
    """
    return {fields.ready_at: {"$not": {"$gt": instant}}}


_ACTIVE = {"$ne": False}


def state_filter(fields: Fields, state: State | str, instant: datetime) -> Filter:
    """A query filter selecting the sessions in *state* at *instant*."""
    state = State(state)
    if state is State.INACTIVE:
        return {fields.active: False}
    active = {fields.active: _ACTIVE}
    if state is State.AVAILABLE:
        return combine(active, unlocked_filter(fields, instant))
    if state is State.OTHER:
        return combine(
            active,
            {fields.next_use: {"$exists": True, "$ne": None, "$not": {"$type": "date"}}},
        )
    locked = combine(active, locked_filter(fields, instant))
    if state is State.LOCKED:  # seed-written and unknown kinds count here
        others = [kind.value for kind in LOCK_KINDS if kind is not LockKind.LOCKED]
        return combine(locked, {fields.lock_kind: {"$nin": others}})
    return combine(locked, {fields.lock_kind: state.value})


def is_date_expression(path: str) -> dict[str, Any]:
    """An aggregation expression true when the field at *path* (``"$x"``) holds a date.

    Written with comparisons, which order BSON types as the server sorts them,
    rather than ``$type``, which mongomock does not know.
    """
    return {"$and": [{"$gte": [path, EARLIEST]}, {"$lte": [path, NEVER]}]}


COUNTER_LIMIT = 2**53
"""Counters beyond ±this (or NaN, or infinite) are no counts: they are read as 0."""


def number_or_zero(path: str) -> dict[str, Any]:
    """An aggregation expression: the counter at *path* (``"$x"``), or 0 if it holds none.

    A counter is a finite number within ±:data:`COUNTER_LIMIT`. NaN fails
    both comparisons, as do the infinities, which ``$add`` would keep for ever.
    """
    finite = [{"$isNumber": path}, {"$gt": [path, -COUNTER_LIMIT]}, {"$lt": [path, COUNTER_LIMIT]}]
    return {"$cond": [{"$and": finite}, path, 0]}


def is_document_expression(path: str) -> dict[str, Any]:
    """An aggregation expression true when the field at *path* holds an embedded document.

    A query's ``{field: {"$type": "object"}}`` matches an *array* holding a
    document too, which ``$objectToArray`` then fails on; so compare, as
    :func:`is_date_expression` does: documents sort from ``{}`` up to, not
    including, ``[]``.
    """
    return {"$and": [{"$gte": [path, {"$literal": {}}]}, {"$lt": [path, {"$literal": []}]}]}


def inactive_expression(fields: Fields) -> dict[str, Any]:
    """An aggregation expression: the session is disabled, as the query ``{active: False}`` says.

    A query matches an array holding ``false`` too, and so the hand-out's
    ``{active: {$ne: False}}`` never takes one: statistics must not count it
    available either.
    """
    active = f"${fields.active}"
    listed = {"$cond": [{"$isArray": active}, active, []]}
    return {"$or": [{"$eq": [active, False]}, {"$in": [False, listed]}]}


def _free_expression(fields: Fields, instant: datetime) -> dict[str, Any]:
    next_use = f"${fields.next_use}"
    return {
        "$or": [
            {"$eq": [{"$ifNull": [next_use, None]}, None]},
            {"$and": [is_date_expression(next_use), {"$lt": [next_use, instant]}]},
        ]
    }


def available_expression(fields: Fields, instant: datetime) -> dict[str, Any]:
    """An aggregation expression: the session is available at *instant* (to any scope)."""
    return {"$and": [{"$not": inactive_expression(fields)}, _free_expression(fields, instant)]}


def state_expression(
    fields: Fields, instant: datetime, *, scope_locked: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An aggregation expression giving each document's :class:`State` name at *instant*.

    With *scope_locked* (an expression: locked for a scope), a session that
    scope cannot have counts as ``locked`` even when free for everyone else.
    """
    next_use = f"${fields.next_use}"
    kind = f"${fields.lock_kind}"
    free = _free_expression(fields, instant)
    scoped = (
        [{"case": {"$and": [free, scope_locked]}, "then": State.LOCKED.value}]
        if scope_locked is not None
        else []
    )
    return {
        "$switch": {
            "branches": [
                {"case": inactive_expression(fields), "then": State.INACTIVE.value},
                *scoped,
                {
                    "case": {"$eq": [{"$ifNull": [next_use, None]}, None]},
                    "then": State.AVAILABLE.value,
                },
                {"case": {"$not": is_date_expression(next_use)}, "then": State.OTHER.value},
                {"case": {"$lt": [next_use, instant]}, "then": State.AVAILABLE.value},
                {"case": {"$eq": [kind, LockKind.IN_USE.value]}, "then": State.IN_USE.value},
                {"case": {"$eq": [kind, LockKind.BLOCKED.value]}, "then": State.BLOCKED.value},
                {"case": {"$eq": [kind, LockKind.BUDGET.value]}, "then": State.BUDGET.value},
            ],
            "default": State.LOCKED.value,
        }
    }


def state_of(document: Mapping[str, Any], instant: datetime, fields: Fields) -> State:
    """Return the :class:`State` of one *document* at *instant* (both stored or both true)."""
    active = document.get(fields.active)
    if active is False or (isinstance(active, list) and any(item is False for item in active)):
        return State.INACTIVE
    next_use = document.get(fields.next_use)
    if next_use is None:
        return State.AVAILABLE
    if not isinstance(next_use, datetime):
        return State.OTHER
    if _aware(next_use) < _aware(instant):
        return State.AVAILABLE
    kind = document.get(fields.lock_kind)
    if kind == LockKind.IN_USE.value:
        return State.IN_USE
    if kind == LockKind.BLOCKED.value:
        return State.BLOCKED
    if kind == LockKind.BUDGET.value:
        return State.BUDGET
    return State.LOCKED


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
