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

from . import replies, updates
from .budgets import budget_filter
from .core import PoolCore
from .exceptions import OperationTimeoutError, ServerUnavailableError
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
    core: PoolCore,
    now: Now,
    *,
    hold: timedelta,
    count_use: int = 1,
    scope: str | None = None,
    token: str | None = None,
) -> Pipeline:
    """The hand-out's update at *now*, with *token* (default: a fresh one) as its lease."""
    return updates.hand_out(
        core.connection,
        now=now,
        hold=hold,
        count_use=count_use,
        token=token or secrets.token_hex(12),
        budgets=core.options.budgets,
        scope=scope,
    )


def projection(core: PoolCore, with_lease: bool) -> tuple[dict[str, Any] | None, set[str]]:
    """What the hand-out asks the server to return, and what it then drops from the reply.

    The pool's projection, plus what a lease needs (its token and fence) and
    what the check of a late reply needs (the hold's end), dropped again
    when the caller did not ask for them.
    """
    chosen = core.connection.projection
    if chosen is None:
        return None, set()
    next_use = core.connection.next_use
    lease = {LEASE, FENCE} if with_lease else set()
    included = any(value for key, value in chosen.items() if key != "_id")
    if included:
        drop = set() if with_lease else {next_use} - set(chosen)
        return {**chosen, **dict.fromkeys(lease | {next_use}, 1)}, drop
    kept = {key: value for key, value in chosen.items() if key not in lease | {next_use}}
    return kept, set() if with_lease else {next_use} & set(chosen)


async def hand_out(
    core: PoolCore,
    count_use: int,
    hold: timedelta,
    with_lease: bool,
    scope: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Take the first available session, or ``None`` (arguments already checked).

    Gives back first what hand-outs with lost replies took, and never hands
    over a session whose reply came too late (see :mod:`sessionlib.replies`).

    Raises:
        DatabaseError: the server failed.
    """
    started = time.perf_counter()
    now = await core.now()
    if core.lost is not None:
        await replies.give_back(core, core.lost)
    document: dict[str, Any] | None = None
    if core.breaker is None or await core.breaker.paused_until(core, now) is None:
        document = await _take(core, now, count_use, hold, with_lease, scope, where)
    if core.metrics is not None:
        seconds = time.perf_counter() - started
        core.metrics.handed_out(*core.name, got=document is not None, seconds=seconds)
    return None if document is None else core.load(document)


async def _take(
    core: PoolCore,
    now: Now,
    count_use: int,
    hold: timedelta,
    with_lease: bool,
    scope: str | None,
    where: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The hand-out's one command, and what a late or lost reply calls for."""
    token = secrets.token_hex(12)
    shown, dropped = projection(core, with_lease)
    late = now.on_server and hold > timedelta(0)
    # The reply takes about a round trip after the server has taken the session:
    # ask for that much more, so the caller still has the whole hold.
    asked = hold + 2 * core.lost.round_trip() if late and core.lost is not None else hold
    sent = time.monotonic()
    try:
        document = await core.connection.find_one_and_update(
            query(core, now, count_use=count_use, scope=scope, where=where),
            update(core, now, hold=asked, count_use=count_use, scope=scope, token=token),
            sort=core.hooks.default_sort,
            projection=shown,
            return_document=ReturnDocument.AFTER,
        )
    except (OperationTimeoutError, ServerUnavailableError):
        if core.lost is not None:  # the server may still apply it: give it back later
            core.lost.remember(core.name, token, asked)
        raise
    took = timedelta(seconds=time.monotonic() - sent)
    if core.lost is not None:
        core.lost.replied(took.total_seconds())
    if document is not None and late and not replies.held_enough(core, document, hold):
        document = await replies.hold_again(core, token, hold, took, shown)
    if document is not None:
        for name in dropped:
            document.pop(name, None)
    return document
