"""Reports on a session: success, lock, block, release, deactivate, activate.

Each report is one pipeline update (see :mod:`sessionlib.updates`): checked
first, nothing written on bad input; built at the operation's one
:class:`~sessionlib.now.Now`; recorded in the session's history when it
carries a reason (or always, for state changes); lease-checked when asked,
so a late report of a previous holder writes nothing and raises
:class:`~sessionlib.exceptions.StaleLeaseError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.results import UpdateResult

from . import updates
from .clock import ceil_ms
from .core import PoolCore
from .exceptions import InvalidInputError, InvalidSessionError, StaleLeaseError
from .now import Now
from .scopes import check_scope
from .states import Filter, LockKind, combine
from .updates import FENCE, LEASE, Pipeline, Record
from .validation import (
    check_count,
    check_reason,
    check_until,
    delay_to_timedelta,
    period_to_timedelta,
)

__all__ = ["change", "lock", "report_filter", "success"]


def report_filter(
    core: PoolCore, session: Mapping[str, Any], lease_checked: bool | None
) -> tuple[Filter, bool]:
    """The filter of a report on *session*, and whether it is lease-checked.

    Raises:
        InvalidSessionError: *session* has no plain ``_id``, or is to be
            lease-checked without its ``lease``.
    """
    query = core.one(session)
    fenced = core.options.fenced and LEASE in session
    checked = fenced if lease_checked is None else lease_checked
    if checked:
        token = session.get(LEASE)
        if not isinstance(token, str):
            raise InvalidSessionError(
                "a lease-checked report needs the session dict as handed out, with its 'lease'"
            )
        query = combine(query, {LEASE: token})
    return query, checked


def _record(core: PoolCore, now: Now, kind: str, reason: str | None, session: Any) -> Record:
    fence = session.get(FENCE)
    return Record(
        at=now.written,
        kind=kind,
        reason=reason,
        fence=fence if isinstance(fence, int) and not isinstance(fence, bool) else None,
        by=core.options.app_name,
    )


async def _write(
    core: PoolCore,
    session: Mapping[str, Any],
    update: Pipeline,
    lease_checked: bool | None,
    record: Record | None,
    kind: str,
) -> UpdateResult:
    query, checked = report_filter(core, session, lease_checked)
    result = await core.connection.update_one(query, updates.with_record(update, record))
    metrics = core.metrics
    if checked and result.matched_count == 0:
        if metrics is not None:
            metrics.stale(*core.name)
        raise StaleLeaseError(
            f"session {session['_id']!r} is no longer held under lease "
            f"{session[LEASE]!r}: it was handed out again or deleted; nothing was written",
            session_id=session["_id"],
            lease=session[LEASE],
        )
    if metrics is not None:
        metrics.reported(*core.name, kind)
    return result


async def success(
    core: PoolCore,
    session: dict[str, Any],
    count_success: int,
    next_use_delay: float | None,
    reason: str | None,
    lease_checked: bool | None,
) -> UpdateResult:
    """Record a success (see ``MongoSessions.session_success``)."""
    report_filter(core, session, lease_checked)
    check_count("count_success", count_success)
    hold = delay_to_timedelta(next_use_delay, core.options.next_use_delay)
    check_reason(reason)
    now = await core.now()
    update = updates.success(
        core.connection,
        now=now,
        hold=hold,
        count_success=count_success,
        escalation=core.options.escalation,
    )
    record = None if reason is None else _record(core, now, "success", reason, session)
    return await _write(core, session, update, lease_checked, record, "success")


def _lock_update(
    core: PoolCore,
    now: Now,
    kind: LockKind,
    period: timedelta | None,
    until: datetime | None,
    scope: str | None,
) -> Pipeline:
    """The update of a lock or block: until an instant, for a period, or escalated."""
    options = core.options
    if until is None and period is None:
        if kind is LockKind.LOCKED and options.escalation is not None and scope is None:
            return updates.escalated_lock(
                core.connection, now=now, policy=options.escalation, block_period=options.block_time
            )
        period = options.block_time if kind is LockKind.BLOCKED else options.lock_time
    end = (
        now.store(ceil_ms(check_until(until, now.latest)))
        if until is not None
        else now.until(period or timedelta())
    )
    if scope is not None:
        return updates.scoped_lock(scope, until=end)
    return updates.lock(core.connection, kind=kind, now=now, until=end)


async def lock(
    core: PoolCore,
    session: dict[str, Any],
    kind: LockKind,
    period: dict[str, float] | None,
    until: datetime | None,
    scope: str | None,
    reason: str | None,
    lease_checked: bool | None,
) -> UpdateResult:
    """Lock or block the session (see ``MongoSessions.session_lock``).

    Raises:
        InvalidInputError: an argument is invalid; nothing was written.
    """
    report_filter(core, session, lease_checked)
    if period is not None and until is not None:
        raise InvalidInputError("give a period or an until, not both")
    duration = None if period is None else period_to_timedelta(period, timedelta())
    check_scope(scope)
    check_reason(reason)
    now = await core.now()
    update = _lock_update(core, now, kind, duration, until, scope)
    name = f"{kind.value}:{scope}" if scope is not None else kind.value
    record = _record(core, now, name, reason, session)
    return await _write(core, session, update, lease_checked, record, kind.value)


_CHANGES: dict[str, Callable[..., Pipeline]] = {
    "released": updates.release,
    "deactivated": updates.deactivate,
    "activated": updates.activate,
}
"""The state changes, by the kind their history entries record."""


async def change(
    core: PoolCore,
    session: dict[str, Any],
    kind: str,
    reason: str | None,
    lease_checked: bool | None,
) -> UpdateResult:
    """Release (``"released"``), deactivate or activate the session, recording *kind*.

    See ``MongoSessions.session_release``, ``session_inactive`` and ``session_activate``.

    Raises:
        InvalidInputError: *session* or *reason* is invalid; nothing was written.
    """
    report_filter(core, session, lease_checked)
    check_reason(reason)
    now = await core.now()
    update = _CHANGES[kind](core.connection, now=now)
    record = _record(core, now, kind, reason, session)
    return await _write(core, session, update, lease_checked, record, kind)
