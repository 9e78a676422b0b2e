"""The hand-out order key ``ready_at``, and its one rule.

A session's order key is the instant it may next be handed out (see
:mod:`sessionlib.indexes` for why the hand-out sorts on it)::

    ready_at = NEVER                        if the session is inactive
             = the later of next_use and S  otherwise (next_use only when a date)

where *S* ("since") is the operation's now for a write, and the session's
``last_use`` when a key is given to a document that has none (``add``,
``migrate``): a session becomes available when its hold ends, or now when it
is released or activated, and never-keyed sessions keep their ``last_use``
order. Every write that can change whether a session is available ends with
:func:`key_stage`, evaluated after the write, so the key follows the
document's state, whatever the write did; :func:`key_of` is the same rule in
Python, for a document about to be inserted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .clock import NEVER, as_utc
from .states import Fields, inactive_expression, is_date_expression

__all__ = ["adopted_since", "held_key", "key_of", "key_stage"]


def _date_or_null(path: str) -> dict[str, Any]:
    return {"$cond": [is_date_expression(path), path, None]}


def key_stage(fields: Fields, since: datetime | dict[str, Any]) -> dict[str, Any]:
    """The pipeline stage that sets the order key from the document as written.

    *since* is the operation's stored now, or an expression (see
    :func:`adopted_since`).
    """
    floor = {"$literal": since} if isinstance(since, datetime) else since
    held = _date_or_null(f"${fields.next_use}")
    key = {"$cond": [inactive_expression(fields), {"$literal": NEVER}, {"$max": [held, floor]}]}
    return {"$set": {fields.ready_at: key}}


def held_key(held: Any) -> Any:
    """The key of a session a hand-out just took and holds until *held*: the rule, worked out.

    The hand-out's filter took it active and not locked, and its ``next_use``
    is now *held*, later than now: the rule gives *held*. Writing it in the
    hand-out's own stage spares the server a stage on its hottest write.
    """
    return held


def adopted_since(last_use: str) -> dict[str, Any]:
    """The *since* of a document that has no key yet: its ``last_use`` (a date, else none)."""
    return _date_or_null(f"${last_use}")


def key_of(document: Mapping[str, Any], fields: Fields, since: datetime | None) -> datetime | None:
    """:func:`key_stage`'s rule in Python; ``None`` means no key (sorts first: never used)."""
    active = document.get(fields.active)
    if active is False or (isinstance(active, list) and any(item is False for item in active)):
        return NEVER
    candidates = [since, document.get(fields.next_use)]
    dates = [value for value in candidates if isinstance(value, datetime)]
    return max(dates, key=as_utc) if dates else None
