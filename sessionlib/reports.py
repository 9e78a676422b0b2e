"""The pool's filters and its per-session reports.

:class:`SessionReports` is the base of :class:`~sessionlib.client.MongoSessions`:
the overridable filter hooks of the seed library, and the reports a worker
makes about a session it holds (success, lock, block, release, deactivate,
activate), each one update, lease-checked where asked (see
:mod:`sessionlib.lease`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.results import UpdateResult

from .clock import Clock, ceil_ms, utcnow
from .connection import MongoConnectionInterface
from .escalation import STRIKES, EscalationPolicy
from .exceptions import InvalidSessionError, StaleLeaseError
from .fields import LockKind
from .lease import LEASE
from .validation import check_count, delay_to_timedelta, period_to_timedelta, session_id

__all__ = ["Filter", "SessionReports", "combine"]

Filter = dict[str, Any]


def combine(*filters: Filter) -> Filter:
    """Return one filter matching all *filters*.

    Filters with distinct top-level keys are merged into one dict (the shape
    query planners handle best); clashing keys such as two ``$or`` are kept
    apart under ``$and``.
    """
    parts = [f for f in filters if f]
    keys = [key for f in parts for key in f]
    if len(keys) == len(set(keys)):
        return {key: value for f in parts for key, value in f.items()}
    return {"$and": parts}


class SessionReports(MongoConnectionInterface):
    """Filter hooks and per-session reports; see :class:`~sessionlib.client.MongoSessions`.

    Args:
        clock: Returns the current time as an aware UTC datetime; tests pass a
            clock they can move.
        fenced: Return each hand-out's ``lease`` and ``fence`` with the
            session (even under a projection) and lease-check every report
            made with a dict that carries them (see :mod:`sessionlib.lease`).
            Off by default, as in the seed library, where a worker may still
            report after its short hold has passed.
        escalation: An :class:`~sessionlib.escalation.EscalationPolicy`: locks
            without a period grow with repeated strikes and turn into blocks.
        sleep: The coroutine function used to pause while waiting for a
            session (tests pass one that moves their clock).
    """

    def __init__(
        self,
        *args: Any,
        clock: Clock = utcnow,
        fenced: bool = False,
        escalation: EscalationPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.fenced = fenced
        self.escalation = escalation
        self.sleep = sleep

    # -- overridable hooks ---------------------------------------------------

    @property
    def default_sort(self) -> list[tuple[str, int]]:
        """Hand-out order: least recently used first (never used, ``null``, sorts first)."""
        return [(self.last_use, ASCENDING)]

    def _filter_exclude_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions not locked at now + *offset* seconds."""
        instant = self.clock() + timedelta(seconds=offset)
        return {"$or": [{self.next_use: None}, {self.next_use: {"$lt": instant}}]}

    def _filter_include_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions locked at now + *offset* seconds."""
        instant = self.clock() + timedelta(seconds=offset)
        return {self.next_use: {"$gte": instant}}

    def _filter_one(self, session: Any) -> Filter:
        """Filter selecting *session*.

        Raises:
            InvalidSessionError: *session* is not a dict with an ``_id``.
        """
        return {"_id": session_id(session)}

    # -- reports ---------------------------------------------------------------

    def _lock_fields(self, until: datetime, kind: str, now: datetime) -> dict[str, Any]:
        # Why and since when the session is unavailable (see LockKind).
        until = ceil_ms(until)
        return {self.next_use: until, self.lock_kind: kind, self.locked_at: now}

    def _report_filter(
        self, session: Mapping[str, Any], lease_checked: bool | None
    ) -> tuple[Filter, bool]:
        query = self._filter_one(session)
        checked = (self.fenced and LEASE in session) if lease_checked is None else lease_checked
        if checked:
            token = session.get(LEASE)
            if not isinstance(token, str):
                raise InvalidSessionError(
                    "a lease-checked report needs the session dict as handed out, with its 'lease'"
                )
            query = combine(query, {LEASE: token})
        return query, checked

    async def _report(
        self,
        session: Mapping[str, Any],
        update: dict[str, Any] | list[dict[str, Any]],
        lease_checked: bool | None,
    ) -> UpdateResult:
        query, checked = self._report_filter(session, lease_checked)
        result = await self.update_one(query, update)
        if checked and result.matched_count == 0:
            raise StaleLeaseError(
                f"session {session['_id']!r} is no longer held under lease "
                f"{session[LEASE]!r}: it was handed out again or deleted; nothing was written",
                session_id=session["_id"],
                lease=session[LEASE],
            )
        return result

    async def session_success(
        self,
        session: dict[str, Any],
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Record a success: add *count_success* and hold the session for *next_use_delay* s.

        With an escalation policy, a success also takes strikes off.
        *lease_checked* forces (``True``) or skips (``False``) the lease check
        that ``fenced=True`` pools apply to dicts carrying a lease.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        self._filter_one(session)
        check_count("count_success", count_success)
        delay = delay_to_timedelta(next_use_delay, self.next_use_delay)
        now = self.clock()
        fields = self._lock_fields(now + delay, LockKind.IN_USE, now)
        update: dict[str, Any] | list[dict[str, Any]]
        if self.escalation is None:
            update = {"$inc": {self.count_success: count_success}, "$set": fields}
        else:
            counter = {"$add": [{"$ifNull": [f"${self.count_success}", 0]}, count_success]}
            # Literal values inside a pipeline update must not read as field paths.
            update = [
                {
                    "$set": {
                        **{key: {"$literal": value} for key, value in fields.items()},
                        self.count_success: counter,
                        STRIKES: self.escalation.decay_expression(),
                    }
                }
            ]
        return await self._report(session, update, lease_checked)

    async def session_lock(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Lock the session temporarily (a short ban): unavailable for *period*.

        *period* holds :class:`~datetime.timedelta` keywords, e.g.
        ``{"hours": 10}``; default :attr:`lock_time`, or, with an escalation
        policy, a period that grows with the session's strikes (see
        :mod:`sessionlib.escalation`).

        Raises:
            InvalidInputError: *session* or *period* is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        if period is None and self.escalation is not None:
            self._filter_one(session)
            pipeline = self.escalation.lock_pipeline(
                now=self.clock(), block_period=self.block_time, fields=self
            )
            return await self._report(session, pipeline, lease_checked)
        return await self._lock(
            session, period_to_timedelta(period, self.lock_time), LockKind.LOCKED, lease_checked
        )

    async def session_block(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Block the session for long (a long ban): unavailable for *period*.

        *period* holds :class:`~datetime.timedelta` keywords; default :attr:`block_time`.

        Raises:
            InvalidInputError: *session* or *period* is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._lock(
            session, period_to_timedelta(period, self.block_time), LockKind.BLOCKED, lease_checked
        )

    async def _lock(
        self,
        session: dict[str, Any],
        period: timedelta,
        kind: str,
        lease_checked: bool | None,
    ) -> UpdateResult:
        now = self.clock()
        return await self._report(
            session, {"$set": self._lock_fields(now + period, kind, now)}, lease_checked
        )

    async def session_release(
        self, session: dict[str, Any], *, lease_checked: bool | None = None
    ) -> UpdateResult:
        """Make the session available now, whatever lock it had.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._report(session, self._release_update(), lease_checked)

    def _release_update(self) -> dict[str, Any]:
        return {"$set": {self.next_use: None}, "$unset": {self.lock_kind: "", self.locked_at: ""}}

    async def session_inactive(
        self, session: dict[str, Any], *, lease_checked: bool | None = None
    ) -> UpdateResult:
        """Disable the session for good (``active=False``); only an activator revives it.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._report(session, {"$set": {self.active: False}}, lease_checked)

    async def session_activate(self, session: dict[str, Any]) -> UpdateResult:
        """Enable a disabled session again (``active=True``): the activator's call.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            DatabaseError: the server failed.
        """
        return await self.update_one(self._filter_one(session), {"$set": {self.active: True}})
