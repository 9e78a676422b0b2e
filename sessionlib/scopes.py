"""Scopes: cooldowns per purpose.

A session rate-limited on search can still serve profiles. A scoped lock
(``session_lock(session, period, scope="search")``) writes the instant it ends
under ``scopes.search`` and leaves the session's own ``next_use`` alone:

* a hand-out with ``scope="search"`` skips sessions locked for that scope or
  locked globally;
* a hand-out without a scope ignores scoped locks;
* the hold after any hand-out is global, as before.

Statistics can count as one scope sees the pool, the exporter exports the
scopes in use, and ``release_expired_scoped_locks`` (auto-release) removes
the scoped locks that ended.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .exceptions import InvalidInputError
from .states import is_date_expression, is_document_expression

__all__ = [
    "FOLDED",
    "SCOPES",
    "check_scope",
    "expired_scopes_update",
    "scope_field",
    "scope_free_filter",
    "scope_locked_expression",
    "scope_statistics_pipeline",
]

SCOPES = "scopes"
"""The field holding each scope's lock end."""

FOLDED = "other"
"""The scope name the exporter folds the scopes beyond its cap into (so no scope may use it)."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_scope(scope: object, name: str = "scope") -> str | None:
    """Return *scope* if it is ``None`` or a scope name (letters, digits, ``_``, ``-``).

    Raises:
        InvalidInputError: it is not.
    """
    if scope is None:
        return None
    if not isinstance(scope, str) or not _NAME.match(scope):
        raise InvalidInputError(
            f"{name} must be 1 to 64 letters, digits, '_' or '-', not {scope!r}"
        )
    if scope == FOLDED:
        raise InvalidInputError(f"{name} {FOLDED!r} is reserved (the exporter's other scopes)")
    return scope


def scope_field(scope: str) -> str:
    """The dotted path of *scope*'s lock end."""
    return f"{SCOPES}.{scope}"


def scope_free_filter(scope: str, now: datetime) -> dict[str, Any]:
    """Sessions not locked for *scope* at *now*, as the statistics judge it.

    An expression, not a query on ``scopes.<scope>``: a query walks into
    arrays (``scopes: []`` matched neither null nor a past date, so such a
    session was never handed out to the scope while counted available).
    """
    return {"$expr": {"$not": scope_locked_expression(scope, now)}}


def scope_locked_expression(scope: str, now: datetime) -> dict[str, Any]:
    """An aggregation expression: the session is locked for *scope* at *now*."""
    path = f"${scope_field(scope)}"
    return {"$and": [is_date_expression(path), {"$gte": [path, now]}]}


def scope_statistics_pipeline(now: datetime, available: dict[str, Any]) -> list[dict[str, Any]]:
    """Per scope in use: sessions available to all that it has locked, and expired entries.

    *available* is the aggregation expression of "available to a hand-out
    without a scope". Rows: ``{_id: {scope, locked, available}, n}``.
    """
    return [
        {"$match": {"$expr": is_document_expression(f"${SCOPES}")}},
        {"$project": {"s": {"$objectToArray": f"${SCOPES}"}, "available": available}},
        {"$unwind": "$s"},
        {
            "$group": {
                "_id": {
                    "scope": "$s.k",
                    "locked": {"$and": [is_date_expression("$s.v"), {"$gte": ["$s.v", now]}]},
                    "ended": {"$and": [is_date_expression("$s.v"), {"$lt": ["$s.v", now]}]},
                    "available": "$available",
                },
                "n": {"$sum": 1},
            }
        },
    ]


def expired_scopes_update(now: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The filter and pipeline update that drop the scoped locks ended by *now*.

    The filter matches the sessions with one to drop, so counting it counts
    what the update changes (see :mod:`sessionlib.expiry`).
    """
    dropped = {
        "$filter": {
            "input": {"$objectToArray": f"${SCOPES}"},
            # The update's keep, negated: comparisons order every type, so any value no date goes.
            "cond": {"$lt": ["$$this.v", now]},
        }
    }
    ended = {"$gt": [{"$size": dropped}, 0]}
    return (
        {"$expr": {"$cond": [is_document_expression(f"${SCOPES}"), ended, False]}},
        [
            {
                "$set": {
                    SCOPES: {
                        "$arrayToObject": {
                            "$filter": {
                                "input": {"$objectToArray": f"${SCOPES}"},
                                # Keeps the locks not ended (and drops any value no date).
                                "cond": {"$gte": ["$$this.v", now]},
                            }
                        }
                    }
                }
            }
        ],
    )
