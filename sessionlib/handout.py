"""The hand-out: the one place its filter and its update are composed.

A hand-out is one ``findAndModify``::

    filter: the pool's "not locked" (default filter + ``_filter_exclude_lock``)
            + not locked for the scope asked for + room in the budgets
            + the caller's ``where``
    sort:   default_sort (the order key, then last_use)
    update: held for the hold, used now, counted, fenced, budgets recorded,
            then the order key's stage

Each condition of the filter is the statistics' own expression (see
:mod:`sessionlib.states`, :mod:`sessionlib.scopes`, :mod:`sessionlib.budgets`),
so a session the statistics count available is one this filter takes, and no
other. ``benchmarks/`` imports :func:`query` and :func:`update` to measure
the same command.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument

from . import updates
from .budgets import budget_filter
from .core import PoolCore
from .now import Now
from .scopes import check_scope, scope_free_filter
from .states import Filter, combine
from .updates import FENCE, LEASE, Pipeline
from .validation import check_count, check_where, delay_to_timedelta

__all__ = ["check", "hand_out", "projection", "query", "update"]


def check(
    default_hold: float,
    count_use: int,
    hold: float | None,
    scope: str | None,
    where: Mapping[str, Any] | None,
    hold_name: str = "hold",
) -> timedelta:
    """Check a hand-out's arguments; return its hold (*default_hold* seconds when ``None``).

    Raises:
        InvalidInputError: an argument is invalid.
    """
    check_count("count_use", count_use)
    check_scope(scope)
    check_where(where)
    return delay_to_timedelta(hold, default_hold, name=hold_name)


def query(
    core: PoolCore,
    now: Now,
    *,
    count_use: int = 1,
    scope: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> Filter:
    """The hand-out's filter at *now*."""
    scoped = scope_free_filter(scope, now.at) if scope is not None else {}
    budgets = budget_filter(core.options.budgets, scope=scope, now=now, weight=count_use)
    return combine(core.not_locked(now), scoped, budgets or {}, where or {})


def update(
    core: PoolCore, now: Now, *, hold: timedelta, count_use: int = 1, scope: str | None = None
) -> Pipeline:
    """The hand-out's update at *now*, with a fresh lease token."""
    return updates.hand_out(
        core.connection,
        now=now,
        hold=hold,
        count_use=count_use,
        token=secrets.token_hex(12),
        budgets=core.options.budgets,
        scope=scope,
    )


def projection(core: PoolCore, with_lease: bool) -> dict[str, Any] | None:
    """The pool's projection, plus what a lease needs (its token, fence and hold's end)."""
    chosen = core.connection.projection
    if chosen is None or not with_lease:
        return chosen
    included = any(value for key, value in chosen.items() if key != "_id")
    if included:
        return {**chosen, LEASE: 1, FENCE: 1, core.connection.next_use: 1}
    return {key: value for key, value in chosen.items() if key not in (LEASE, FENCE)}


async def hand_out(
    core: PoolCore,
    count_use: int,
    hold: timedelta,
    with_lease: bool,
    scope: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Take the first available session, or ``None`` (arguments already checked).

    Raises:
        DatabaseError: the server failed.
    """
    started = time.perf_counter()
    now = await core.now()
    document: dict[str, Any] | None = None
    if core.breaker is None or await core.breaker.paused_until(core, now) is None:
        document = await core.connection.find_one_and_update(
            query(core, now, count_use=count_use, scope=scope, where=where),
            update(core, now, hold=hold, count_use=count_use, scope=scope),
            sort=core.hooks.default_sort,
            projection=projection(core, with_lease),
            return_document=ReturnDocument.AFTER,
        )
    if core.metrics is not None:
        seconds = time.perf_counter() - started
        core.metrics.handed_out(*core.name, got=document is not None, seconds=seconds)
    return None if document is None else core.load(document)
