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
countable. The states are defined once, as aggregation expressions
(:func:`free_expression`, :func:`inactive_expression`,
:func:`state_expression`). Listings select by them through ``$expr``
(:func:`state_filter`); the hand-out's "not locked" is the same rule written
as a query (:func:`unlocked_filter`), which a server can decide from an
index entry, and a property test over the wire holds the two equal.
:func:`state_of` is the rule in Python, for one document, held equal too.

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
    "ENDED",
    "LOCK_KINDS",
    "Fields",
    "Filter",
    "LockKind",
    "State",
    "combine",
    "free_expression",
    "inactive_expression",
    "is_date_expression",
    "is_document_expression",
    "locked_expression",
    "locked_filter",
    "number_or_zero",
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
    """Sessions not locked at *instant*: ``next_use`` null, missing, or a date before it.

    :func:`free_expression` written as a query, for the hand-out and
    ``count_active``, where a query lets the server decide from an index
    entry. A plain query would walk into an array (``next_use: [None]``
    matches ``null``) and hand out a session the statistics count
    ``other``: so arrays are ruled out first. A property test holds the two
    forms equal over the wire (``tests/sessionlib/test_one_truth.py``).
    """
    next_use = fields.next_use
    return {
        next_use: {"$not": {"$type": "array"}},
        "$or": [{next_use: None}, {next_use: {"$lt": instant}}],
    }


def locked_filter(fields: Fields, instant: datetime) -> Filter:
    """Sessions locked at *instant*: ``next_use`` is a date, *instant* or later.

    :func:`locked_expression` written as a query (see :func:`unlocked_filter`).
    """
    return {fields.next_use: {"$gte": instant, "$not": {"$type": "array"}}}


def state_filter(fields: Fields, state: State | str, instant: datetime) -> Filter:
    """A query filter selecting the sessions in *state* at *instant*: :func:`state_expression`'s."""
    return {"$expr": {"$eq": [state_expression(fields, instant), State(state).value]}}


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
    available either. (Two operators for the usual ``true``: statistics
    evaluate it for every document.)
    """
    active = f"${fields.active}"
    return {"$cond": [{"$isArray": active}, {"$in": [False, active]}, {"$eq": [active, False]}]}


def free_expression(fields: Fields, instant: datetime) -> dict[str, Any]:
    """An aggregation expression: not locked at *instant* (``next_use`` null, missing, or before).

    The one definition of "not locked": the hand-out's filter, ``count_active``
    and the statistics all use it.
    """
    next_use = f"${fields.next_use}"
    return {
        "$or": [
            {"$eq": [{"$ifNull": [next_use, None]}, None]},
            {"$and": [is_date_expression(next_use), {"$lt": [next_use, instant]}]},
        ]
    }


def locked_expression(fields: Fields, instant: datetime) -> dict[str, Any]:
    """An aggregation expression: locked at *instant* (``next_use`` a date, *instant* or later)."""
    next_use = f"${fields.next_use}"
    return {"$and": [is_date_expression(next_use), {"$gte": [next_use, instant]}]}


def available_expression(
    fields: Fields, instant: datetime, *, held: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An aggregation expression: the session is available at *instant*.

    Active (as the default filter reads it), not locked, and not *held* (an
    expression: locked for the scope asked for, or its budget spent).
    """
    parts = [{"$not": inactive_expression(fields)}, free_expression(fields, instant)]
    if held is not None:
        parts.append({"$not": held})
    return {"$and": parts}


ENDED = "ended"
"""What :func:`state_expression` gives, when asked, for an available session whose
lock (of a kind sessionlib writes) has ended but is not tidied yet."""


def state_expression(
    fields: Fields,
    instant: datetime,
    *,
    scope_locked: dict[str, Any] | None = None,
    budget_spent: dict[str, Any] | None = None,
    ended: bool = False,
) -> dict[str, Any]:
    """An aggregation expression giving each document's :class:`State` name at *instant*.

    With *scope_locked* (an expression: locked for a scope), a session that
    scope cannot have counts as ``locked`` even when free for everyone else;
    with *budget_spent* (the pool's budgets admit no further hand-out), as
    ``budget``: the hand-out would not take either. With *ended*, an
    available session whose lock has ended but is not tidied reads
    :data:`ENDED` (statistics count those for auto-release).
    """
    next_use = f"${fields.next_use}"
    kind = f"${fields.lock_kind}"
    passed: Any = State.AVAILABLE.value
    if ended:
        kinds = [lock.value for lock in LOCK_KINDS]
        passed = {"$cond": [{"$in": [kind, kinds]}, ENDED, State.AVAILABLE.value]}
    free = free_expression(fields, instant)
    scoped = [
        {"case": {"$and": [free, condition]}, "then": state.value}
        for condition, state in ((scope_locked, State.LOCKED), (budget_spent, State.BUDGET))
        if condition is not None
    ]
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
                {"case": {"$lt": [next_use, instant]}, "then": passed},
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
