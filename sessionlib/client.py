"""The session pool API (the seed's ``MongoSessions``).

Usage::

    async with MongoSessions(MONGO_URL, db="pools", collection="telegram") as pool:
        session = await pool.get_session()       # dict, or None when none is free
        if session is not None:
            ...                                  # use session["session"]
            await pool.session_success(session)

A session is *available* when it matches ``default_filter`` and its
``next_use`` is null or earlier than now; it is *locked* when it matches
``default_filter`` and its ``next_use`` is now or later (see
:mod:`sessionlib.states`). "Now" is the server's clock (see
:mod:`sessionlib.clock`). Every hand-out and every per-session write is one
command; each method here checks its arguments, builds that command (see
:mod:`sessionlib.updates`) and sends it.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from . import updates
from .breaker import BreakerGuard, CircuitBreaker
from .budgets import Budget, budget_filter
from .clock import NEVER, Clock, ceil_ms, latest, utcnow
from .connection import MongoConnectionInterface
from .driver import Client, is_in_process
from .escalation import EscalationPolicy
from .exceptions import (
    ConfigurationError,
    InvalidInputError,
    InvalidPayloadError,
    InvalidSessionError,
    StaleLeaseError,
)
from .fields import _replace
from .indexes import LEGACY_INDEXES, SPARSE, index_specs
from .isphere import adapt
from .lease import Lease, OnError, check_on_error, hold_lease, wait_for_session
from .metrics import PoolMetrics
from .options import (
    DEFAULT_BLOCK_TIME,
    DEFAULT_LOCK_TIME,
    DEFAULT_MAX_ALLOWED_RECONNECT,
    DEFAULT_NEXT_USE_DELAY,
    DEFAULT_TIMEOUT,
    PoolOptions,
)
from .poolmeta import PoolMetadataMixin
from .scopes import (
    check_scope,
    expired_scopes_update,
    scope_free_filter,
    scope_locked_expression,
    scope_statistics_pipeline,
)
from .states import (
    LOCK_KINDS,
    Filter,
    LockKind,
    available_expression,
    combine,
    locked_filter,
    ready_filter,
    unlocked_filter,
)
from .stats import PoolStatistics, facet_pipeline, grouped_pipeline, index_match
from .storedtime import StoredTime, zone_of
from .updates import FENCE, LEASE, Record
from .validation import (
    check_count,
    check_document,
    check_offset,
    check_reason,
    check_set_payload,
    check_unset_payload,
    check_until,
    check_where,
    delay_to_timedelta,
    period_to_timedelta,
    session_id,
)

if TYPE_CHECKING:
    from pymongo import WriteConcern
    from pymongo.read_preferences import _ServerMode

__all__ = ["MongoSessions", "combine"]

REQUEUE_INTERVAL = 60.0
"""Seconds between two requeues by one pool's empty hand-outs (see ``MongoSessions._requeued``)."""


class MongoSessions(PoolMetadataMixin, MongoConnectionInterface):
    """A pool of sessions stored in one MongoDB collection.

    Args:
        mongo_url: MongoDB connection string; not needed when *client* is given.
        db: Database name.
        collection: Collection (pool) name.
        client: An existing ``AsyncMongoClient``, Motor or mongomock-motor
            client to share; the caller keeps ownership and ``close()`` leaves
            it open.
        timeout: Seconds one attempt of an operation may take. A server that
            does not answer in time gives ``OperationTimeoutError``; one that
            cannot be reached gives ``ServerUnavailableError`` after the
            reconnect attempts, so an operation takes at most
            ``(max_allowed_reconnect + 1) * timeout`` seconds plus backoff.
        max_allowed_reconnect: Further attempts (default 3), with backoff,
            when the server cannot be reached (any operation) or the
            connection was lost (reads only: a write may have been applied).
        allow_reconnect: The seed's older spelling: ``True`` is one further
            attempt, ``False`` none. Give it or *max_allowed_reconnect*, not both.
        write_concern: Write concern of every write (e.g.
            ``WriteConcern(w="majority")`` on a replica set).
        read_preference: Read preference of hand-outs and writes' reads.
        stats_read_preference: Read preference of statistics and listings,
            e.g. ``ReadPreference.SECONDARY_PREFERRED``.
        app_name: Name the server sees in its logs and ``currentOp``.
        client_options: Extra keyword arguments for the client ``connect()`` creates.
        next_use_delay: Seconds a session is held after a hand-out or a success.
        lock_time: Default period of :meth:`session_lock`.
        block_time: Default period of :meth:`session_block`.
        default_filter: Filter every selection starts from; default
            ``{"active": {"$ne": False}}``.
        projection: Fields returned by hand-outs and listings; ``None`` for all.
        fenced: Return each hand-out's ``lease`` and ``fence`` with the session
            and lease-check every report made with a dict that carries them.
        escalation: An :class:`~sessionlib.escalation.EscalationPolicy`.
        clock: A clock to trust instead of the server's (tests pass one they move).
        sleep: The coroutine function used to pause while waiting for a session.
        legacy_timezone: The zone whose naive wall-clock times the documents
            hold (``"Europe/Moscow"`` for pools the seed library writes); see
            :mod:`sessionlib.storedtime`.
        clock_sync_interval: Seconds between two readings of the server's clock.
        clock_skew_warning: Log a warning when this process's clock is more
            than this many seconds off the server's.
        budgets: :class:`~sessionlib.budgets.Budget` limits on how often a
            session is handed out, in rolling windows.
        breaker: A :class:`~sessionlib.breaker.CircuitBreaker`: when many
            sessions fail the same way at once, ``lease(on_error=...)``
            releases them instead of blaming them.
        metrics: A :class:`~sessionlib.metrics.PoolMetrics` to count this
            process's hand-outs, waits, reports and errors in.

    Raises:
        ConfigurationError: an argument is invalid.

    Subclasses may override the filter hooks :meth:`_filter_exclude_lock`,
    :meth:`_filter_include_lock`, :meth:`_filter_one` and :attr:`default_sort`.
    """

    _requeued_at: float = -math.inf
    """When (monotonic) an empty hand-out last put hand-edited sessions back in the queue."""

    def __init__(
        self,
        mongo_url: str | None = None,
        db: str | None = None,
        collection: str | None = None,
        *,
        client: Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_allowed_reconnect: int | None = None,
        allow_reconnect: bool | None = None,
        write_concern: WriteConcern | None = None,
        read_preference: _ServerMode | None = None,
        stats_read_preference: _ServerMode | None = None,
        app_name: str = "sessionpool",
        client_options: Mapping[str, Any] | None = None,
        next_use_delay: float = DEFAULT_NEXT_USE_DELAY,
        lock_time: timedelta = DEFAULT_LOCK_TIME,
        block_time: timedelta = DEFAULT_BLOCK_TIME,
        default_filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        fenced: bool = False,
        escalation: EscalationPolicy | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        legacy_timezone: str | None = None,
        clock_sync_interval: float = 60.0,
        clock_skew_warning: float = 1.0,
        budgets: Sequence[Budget] | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: PoolMetrics | None = None,
    ) -> None:
        try:
            reconnect = _reconnect_attempts(max_allowed_reconnect, allow_reconnect)
            options = PoolOptions(
                timeout=timeout,
                max_allowed_reconnect=reconnect,
                write_concern=write_concern,
                read_preference=read_preference,
                stats_read_preference=stats_read_preference,
                app_name=app_name,
                client_options=client_options or {},
                next_use_delay=next_use_delay,
                lock_time=lock_time,
                block_time=block_time,
                default_filter=default_filter,  # type: ignore[arg-type]  # copied to a dict
                projection=projection,  # type: ignore[arg-type]
                fenced=fenced,
                escalation=escalation,
                clock=clock,
                sleep=sleep,
                stored_time=StoredTime(zone_of(legacy_timezone)),
                clock_sync_interval=clock_sync_interval,
                clock_skew_warning=clock_skew_warning,
                budgets=tuple(budgets or ()),
                breaker=breaker,
                metrics=metrics,
            )
        except ConfigurationError as exc:
            raise adapt(exc) from None
        super().__init__(mongo_url, db, collection, client=client, options=options)
        self._breaker_guard = BreakerGuard(breaker) if breaker is not None else None

    # -- settings ----------------------------------------------------------------

    @property
    def fenced(self) -> bool:
        """Whether reports with a hand-out's dict are lease-checked (settable)."""
        return self._options.fenced

    @fenced.setter
    def fenced(self, value: bool) -> None:
        self._options = _replace(self._options, fenced=value)

    @property
    def escalation(self) -> EscalationPolicy | None:
        """The escalation policy of locks without a period, or ``None`` (settable)."""
        return self._options.escalation

    @escalation.setter
    def escalation(self, value: EscalationPolicy | None) -> None:
        self._options = _replace(self._options, escalation=value)

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]:
        """How the pool pauses while waiting for a session (settable; tests move a clock)."""
        return self._options.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], Awaitable[None]]) -> None:
        self._options = _replace(self._options, sleep=value)

    @property
    def clock(self) -> Clock:
        """The clock decisions are made on: the server's, or the one passed in."""
        if self._options.clock is not None:
            return self._options.clock
        if self._connector is not None:
            return self._connector.clock
        return utcnow

    async def _sync_clock(self) -> None:
        if self._options.clock is None and self._connector is not None:
            await self._connector.sync_clock_if_due()

    # -- overridable hooks ---------------------------------------------------

    @property
    def default_sort(self) -> list[tuple[str, int]]:
        """Hand-out order: least recently available first (see :mod:`sessionlib.indexes`)."""
        return [(self.ready_at, ASCENDING), (self.last_use, ASCENDING)]

    def _filter_exclude_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions not locked at now + *offset* seconds."""
        return unlocked_filter(self, self._store(self.clock() + check_offset("offset", offset)))

    def _filter_include_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions locked at now + *offset* seconds."""
        return locked_filter(self, self._store(self.clock() + check_offset("offset", offset)))

    def _filter_one(self, session: Any) -> Filter:
        """Filter selecting *session*, and no other.

        Raises:
            InvalidSessionError: *session* is not a dict with a plain ``_id``.
        """
        return {"_id": session_id(session)}

    def _uses_order_key(self) -> bool:
        """Whether hand-outs and statistics follow the pool's states as :mod:`states` defines.

        Not when a subclass replaced the order or the availability hooks, or
        the default filter was changed: the pool then keeps the seed's
        behaviour, with the filters and order it was given.
        """
        cls = type(self)
        return self._options.default_filter is None and all(
            getattr(cls, name) is getattr(MongoSessions, name)
            for name in ("default_sort", "_filter_exclude_lock", "_filter_include_lock")
        )

    # -- hand-out --------------------------------------------------------------

    async def get_session(
        self,
        count_use: int = 1,
        next_use_delay: float | None = None,
        *,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Hand out the least recently used available session, atomically.

        Sets ``last_use`` to now, holds the session for *next_use_delay*
        seconds (default :attr:`next_use_delay`), adds *count_use* to
        ``count_use`` and writes a new lease, in one ``findAndModify``, so no
        two callers in any processes get the same session while it is held.
        With *scope*, sessions locked for that scope are skipped too (see
        :mod:`sessionlib.scopes`); *where* narrows the choice with conditions
        on the session's fields, in the same command (``{"session.region":
        "eu"}``). The pool's budgets are enforced in the same command too.

        Returns:
            The session (with :attr:`projection` applied), or ``None`` when
            none is available.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            DatabaseError: the server failed (see :mod:`sessionlib.exceptions`).
        """
        return await self._hand_out(
            count_use, next_use_delay, "next_use_delay", self.fenced, scope, where
        )

    async def _hand_out(
        self,
        count_use: int,
        hold: float | None,
        hold_name: str,
        with_lease: bool,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        check_count("count_use", count_use)
        delay = delay_to_timedelta(hold, self.next_use_delay, name=hold_name)
        check_scope(scope)
        narrowed = check_where(where)
        await self._sync_clock()
        metrics = self._options.metrics
        started = time.perf_counter()
        if await self._paused_until() is not None:  # the breaker is open and pauses hand-outs
            if metrics is not None:
                metrics.handed_out(self.db_name, self.collection_name, got=False, seconds=0.0)
            return None
        decided = self._store(self.clock())
        query = combine(self.default_filter, self._filter_exclude_lock())
        if self._uses_order_key():
            query = combine(query, ready_filter(self, decided))
        if scope is not None:
            query = combine(query, scope_free_filter(scope, decided))
        budgets = self._options.budgets
        spend = budget_filter(budgets, scope=scope, now=decided, weight=count_use)
        query = combine(query, spend or {}, narrowed or {})
        document = await self._take(query, count_use, delay, scope, with_lease)
        if document is None and self._uses_order_key() and await self._requeued(decided):
            document = await self._take(query, count_use, delay, scope, with_lease)
        if metrics is not None:
            seconds = time.perf_counter() - started
            got = document is not None
            metrics.handed_out(self.db_name, self.collection_name, got=got, seconds=seconds)
        return None if document is None else self._normalize(document)

    async def _take(
        self,
        query: Filter,
        count_use: int,
        delay: timedelta,
        scope: str | None,
        with_lease: bool,
    ) -> dict[str, Any] | None:
        """The hand-out's one ``findAndModify``: hold the first session *query* matches."""
        now = latest(self.clock)
        document: dict[str, Any] | None = await self.find_one_and_update(
            query,
            updates.hand_out(
                self,
                now=self._store(now),
                until=self._store(ceil_ms(now + delay)),
                count_use=count_use,
                token=secrets.token_hex(12),
                budgets=self._options.budgets,
                scope=scope,
                store=self._store,
            ),
            sort=self.default_sort,
            projection=self._hand_out_projection(with_lease),
            return_document=ReturnDocument.AFTER,
        )
        return document

    async def _requeued(self, decided: datetime) -> bool:
        """Put back in the queue the sessions released or activated by hand; whether any were.

        Such a session (its ``next_use`` cleared, ``active`` set back to true
        in the database) still waits behind its old order key, while the
        statistics count it available. A hand-out that found nothing does
        this, at most every :data:`REQUEUE_INTERVAL` seconds per pool, so
        the session is handed out then, without auto-release.
        """
        if time.monotonic() - self._requeued_at < REQUEUE_INTERVAL:
            return False
        self._requeued_at = time.monotonic()
        result = await self.update_many(*updates.requeue(self, now=decided))
        return result.modified_count > 0

    def _waited(self, seconds: float) -> None:
        """Observe a lease's wait for a session in the pool's metrics, if any."""
        if self._options.metrics is not None:
            self._options.metrics.waited(self.db_name, self.collection_name, seconds)

    def _hand_out_projection(self, with_lease: bool) -> dict[str, Any] | None:
        projection = self.projection
        if projection is None or not with_lease:
            return projection
        included = any(value for key, value in projection.items() if key != "_id")
        if included:
            return {**projection, LEASE: 1, FENCE: 1, self.next_use: 1}
        return {key: value for key, value in projection.items() if key not in (LEASE, FENCE)}

    async def acquire(
        self,
        count_use: int = 1,
        hold: float | None = None,
        *,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Lease | None:
        """Hand out a session as a :class:`~sessionlib.lease.Lease`, or ``None``.

        Like :meth:`get_session`, held for *hold* seconds; reports made
        through the lease are always lease-checked.

        Raises:
            InvalidInputError: an argument is invalid.
            DatabaseError: the server failed.
        """
        session = await self._hand_out(count_use, hold, "hold", True, scope, where)
        return None if session is None else Lease(self, session)

    def lease(
        self,
        *,
        hold: float | None = None,
        count_use: int = 1,
        wait: float | None = None,
        on_error: OnError | None = None,
        success_delay: float | None = None,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold a session for the body of an ``async with`` block.

        On normal exit a success is reported (with *success_delay*), unless
        the body already reported through the lease. When the body raises, the
        first entry of *on_error* whose type matches decides the report
        (``Lock(period)``, ``Block(period)``, ``Deactivate()``,
        ``Release()``), with the exception's class as its reason; unmapped
        exceptions report nothing, so the hold just expires. The exception
        always propagates. *scope* and *where* choose as for :meth:`get_session`.

        With *wait* (seconds), a pool with no available session is polled with
        exponential backoff and jitter until one frees up or *wait* passes.

        Raises:
            InvalidInputError: an argument is invalid (raised here, before
                any hand-out).
            NoSessionAvailableError: no session became available (its
                ``next_available_at`` says when one will).
            StaleLeaseError: on normal exit, the session had been handed out
                again before the success could be reported.
        """
        check_count("count_use", count_use)
        delay_to_timedelta(hold, self.next_use_delay, name="hold")
        delay_to_timedelta(wait, 0, name="wait")
        delay_to_timedelta(success_delay, self.next_use_delay, name="success_delay")
        check_scope(scope)
        check_where(where)
        return hold_lease(
            self,
            hold=hold,
            count_use=count_use,
            wait=wait,
            on_error=check_on_error(on_error),
            success_delay=success_delay,
            scope=scope,
            where=where,
        )

    async def next_available_at(self) -> datetime | None:
        """Return when the earliest locked session becomes available, or ``None``.

        Raises:
            DatabaseError: the server failed.
        """
        await self._sync_clock()
        document = await self.find_one(
            combine(self.default_filter, self._filter_include_lock()),
            projection={self.next_use: 1},
            sort=[(self.next_use, ASCENDING)],
        )
        value = None if document is None else document.get(self.next_use)
        return self._options.stored_time.load(value) if isinstance(value, datetime) else None

    async def wait_for_session(
        self,
        wait: float,
        count_use: int = 1,
        hold: float | None = None,
        *,
        scope: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Lease:
        """Return a lease, waiting up to *wait* seconds for a session to free up.

        Raises:
            NoSessionAvailableError: none freed up in time.
        """
        return await wait_for_session(
            self, wait=wait, count_use=count_use, hold=hold, scope=scope, where=where
        )

    # -- reports ---------------------------------------------------------------

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

    def _record(self, kind: str, reason: str | None, session: Mapping[str, Any]) -> Record:
        fence = session.get(FENCE)
        return Record(
            at=self._store(latest(self.clock)),
            kind=kind,
            reason=reason,
            fence=fence if isinstance(fence, int) and not isinstance(fence, bool) else None,
            by=self._options.app_name,
        )

    async def _report(
        self,
        session: Mapping[str, Any],
        update: list[dict[str, Any]],
        lease_checked: bool | None,
        record: Record | None,
        kind: str,
    ) -> UpdateResult:
        query, checked = self._report_filter(session, lease_checked)
        result = await self.update_one(query, updates.with_record(update, record))
        metrics = self._options.metrics
        if checked and result.matched_count == 0:
            if metrics is not None:
                metrics.stale(self.db_name, self.collection_name)
            raise StaleLeaseError(
                f"session {session['_id']!r} is no longer held under lease "
                f"{session[LEASE]!r}: it was handed out again or deleted; nothing was written",
                session_id=session["_id"],
                lease=session[LEASE],
            )
        if metrics is not None:
            metrics.reported(self.db_name, self.collection_name, kind)
        return result

    async def session_success(
        self,
        session: dict[str, Any],
        count_success: int = 1,
        next_use_delay: float | None = None,
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Record a success: add *count_success* and hold the session for *next_use_delay* s.

        With an escalation policy, a success also takes strikes off. With a
        *reason*, the success enters the session's history too.
        *lease_checked* forces (``True``) or skips (``False``) the lease check
        that ``fenced=True`` pools apply to dicts carrying a lease.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        self._report_filter(session, lease_checked)
        check_count("count_success", count_success)
        delay = delay_to_timedelta(next_use_delay, self.next_use_delay)
        check_reason(reason)
        await self._sync_clock()
        now = latest(self.clock)
        update = updates.success(
            self,
            now=self._store(now),
            until=self._store(ceil_ms(now + delay)),
            count_success=count_success,
            escalation=self.escalation,
        )
        record = None if reason is None else self._record("success", reason, session)
        return await self._report(session, update, lease_checked, record, "success")

    async def session_lock(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Lock the session temporarily (a short ban): unavailable for *period*, or *until*.

        *period* holds :class:`~datetime.timedelta` keywords, e.g.
        ``{"hours": 10}``; *until* is an aware instant (a rate limit's reset,
        say); give one or neither: the default is :attr:`lock_time`, or, with
        an escalation policy, a period that grows with the session's strikes
        (see :mod:`sessionlib.escalation`). With *scope*, only hand-outs with
        that scope skip the session. The lock, its *reason* and a history
        entry are one write.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._lock(
            session, period, until, scope, reason, LockKind.LOCKED, lease_checked
        )

    async def session_block(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None = None,
        *,
        until: datetime | None = None,
        scope: str | None = None,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Block the session for long (a long ban): unavailable for *period*, or *until*.

        *period* holds :class:`~datetime.timedelta` keywords; default
        :attr:`block_time`. See :meth:`session_lock` for the rest.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._lock(
            session, period, until, scope, reason, LockKind.BLOCKED, lease_checked
        )

    async def _lock(
        self,
        session: dict[str, Any],
        period: dict[str, float] | None,
        until: datetime | None,
        scope: str | None,
        reason: str | None,
        kind: LockKind,
        lease_checked: bool | None,
    ) -> UpdateResult:
        self._report_filter(session, lease_checked)
        if period is not None and until is not None:
            raise InvalidInputError("give a period or an until, not both")
        default = self.block_time if kind is LockKind.BLOCKED else self.lock_time
        duration = period_to_timedelta(period, default)
        check_scope(scope)
        check_reason(reason)
        name = f"{kind.value}:{scope}" if scope is not None else kind.value
        await self._sync_clock()
        now = latest(self.clock)
        record = self._record(name, reason, session)
        if until is not None:
            end = ceil_ms(check_until(until, now))
        elif (
            period is None
            and self.escalation is not None
            and kind is LockKind.LOCKED
            and scope is None
        ):
            pipeline = self.escalation.lock_pipeline(
                now=now, block_period=self.block_time, fields=self, store=self._store
            )
            pipeline = updates.keep_budget_lock(self, now=self._store(now), pipeline=pipeline)
            return await self._report(session, pipeline, lease_checked, record, kind.value)
        else:
            end = ceil_ms(now + duration)
        if scope is not None:
            update = updates.scoped_lock(scope, until=self._store(end))
        else:
            update = updates.lock(self, kind=kind, now=self._store(now), until=self._store(end))
        return await self._report(session, update, lease_checked, record, kind.value)

    async def session_release(
        self,
        session: dict[str, Any],
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Make the session available now, whatever lock it had.

        A spent usage budget still holds it (its lock kind ``budget`` stays
        until the window allows a use), and scoped locks stay.

        Raises:
            InvalidInputError: *session* or *reason* is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._state_report(
            session, "released", lambda now: updates.release(self, now=now), reason, lease_checked
        )

    async def session_inactive(
        self,
        session: dict[str, Any],
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Disable the session for good (``active=False``); only an activator revives it.

        Raises:
            InvalidInputError: *session* or *reason* is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._state_report(
            session, "deactivated", lambda _: updates.deactivate(self), reason, lease_checked
        )

    async def session_activate(
        self,
        session: dict[str, Any],
        *,
        reason: str | None = None,
        lease_checked: bool | None = None,
    ) -> UpdateResult:
        """Enable a disabled session again (``active=True``): the activator's call.

        Raises:
            InvalidInputError: *session* or *reason* is invalid; nothing was written.
            StaleLeaseError: lease-checked, and the session was handed out again.
            DatabaseError: the server failed.
        """
        return await self._state_report(
            session, "activated", lambda now: updates.activate(self, now=now), reason, lease_checked
        )

    async def _state_report(
        self,
        session: dict[str, Any],
        kind: str,
        build: Callable[[datetime], list[dict[str, Any]]],
        reason: str | None,
        lease_checked: bool | None,
    ) -> UpdateResult:
        """Check, then write the update *build* makes for now (stored), recording *kind*."""
        self._report_filter(session, lease_checked)
        check_reason(reason)
        await self._sync_clock()
        update = build(self._store(self.clock()))
        record = self._record(kind, reason, session)
        return await self._report(session, update, lease_checked, record, kind)

    async def history(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """Return the session's last reason and history (oldest first), or ``None`` if absent.

        ``{"_id", "reason", "history": [{"at", "kind", "reason", "fence", "by"}, ...]}``;
        instants are true ones.

        Raises:
            InvalidSessionError: *session* has no plain ``_id``.
            DatabaseError: the server failed.
        """
        document = await self.find_one(
            self._filter_one(session), projection={updates.REASON: 1, updates.HISTORY: 1}
        )
        if document is None:
            return None
        entries = document.get(updates.HISTORY)
        kept = (
            [entry for entry in entries if isinstance(entry, dict)]
            if isinstance(entries, list)
            else []
        )
        load = self._options.stored_time.load_fields
        for entry in kept:
            load(entry, ("at",))
        return {"_id": document["_id"], "reason": document.get(updates.REASON), "history": kept}

    # -- documents -------------------------------------------------------------

    def new_document(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the document :meth:`add` inserts: the defaults, overridden by *data*.

        The order key (``ready_at``) follows from *data*: never for an inactive
        session, else when it is locked until, else when it was last used.

        Raises:
            InvalidPayloadError: *data* is not a dict or has unsafe field names.
        """
        check_document(data)
        document = {
            self.active: True,
            self.count_use: 0,
            self.count_success: 0,
            self.created: self._store(latest(self.clock)),
            self.last_use: None,
            self.next_use: None,
            **data,
        }
        if self.ready_at not in data:
            key = _order_key(document, self)
            if key is not None:  # a missing key sorts first: never used
                document[self.ready_at] = key
        return document

    async def add(self, data: dict[str, Any]) -> InsertOneResult:
        """Insert a session: ``active=True``, counters 0, ``created=now``, overridden by *data*.

        Raises:
            InvalidPayloadError: *data* is not a dict or has unsafe field names.
            DuplicateSessionError: a session with this ``_id`` exists.
            DatabaseError: the server failed.
        """
        return await self.insert_one(self.new_document(data))

    async def session_update(
        self,
        session: dict[str, Any],
        payload: dict[str, Any],
        unset_payload: dict[str, Any] | list[str] | None = None,
    ) -> UpdateResult:
        """Set the fields of *payload* and remove those of *unset_payload*.

        Nested fields use dotted keys: ``{"session.phone": "+7..."}``, not
        ``{"session": {"phone": "+7..."}}`` (which replaces all of ``session``).
        Writing ``next_use`` or ``active`` by name moves the order key too.

        Raises:
            InvalidInputError: the session or a payload is invalid, changes
                ``_id`` or holds operators; nothing was written.
            DatabaseError: the server failed.
        """
        query = self._filter_one(session)
        to_set = check_set_payload(payload)
        to_unset = check_unset_payload(unset_payload)
        if not to_set and not to_unset:
            raise InvalidPayloadError("session_update needs a non-empty payload or unset_payload")
        to_set.update(
            updates.order_key_changes(self, to_set, to_unset, now=self._store(self.clock()))
        )
        update: dict[str, Any] = {}
        if to_set:
            update["$set"] = to_set
        if to_unset:
            update["$unset"] = to_unset
        return await self.update_one(query, update)

    async def session_delete(self, session: dict[str, Any]) -> DeleteResult:
        """Delete the session.

        Raises:
            InvalidSessionError: *session* has no plain ``_id``; nothing was deleted.
            DatabaseError: the server failed.
        """
        return await self.delete_one(self._filter_one(session))

    # -- reading -----------------------------------------------------------------

    async def count_active(self, offset: float = 0) -> int:
        """Return the number of available sessions (at now + *offset* seconds).

        Raises:
            InvalidInputError: *offset* is not a number within ±100 years.
            DatabaseError: the server failed.
        """
        check_offset("offset", offset)
        await self._sync_clock()
        return await self.count_stats(
            combine(self.default_filter, self._filter_exclude_lock(offset))
        )

    async def get_sessions(self) -> list[dict[str, Any]]:
        """Return every session matching :attr:`default_filter`, with :attr:`projection`.

        Raises:
            DatabaseError: the server failed.
        """
        documents = await self.find(filter=self.default_filter, projection=self.projection)
        return [self._normalize(document) for document in documents]

    async def statistics(self, offset: float = 0, *, scope: str | None = None) -> PoolStatistics:
        """Return the pool's statistics, in one aggregation.

        Availability is judged at now + *offset* seconds. With *scope*, as a
        hand-out with that scope sees the pool: sessions locked for it count
        as locked. Without, on a real MongoDB the figures come from the state
        index alone (see :mod:`sessionlib.indexes`).

        Raises:
            InvalidInputError: *offset* or *scope* is invalid.
            DatabaseError: the server failed.
        """
        shift = check_offset("offset", offset)
        check_scope(scope)
        await self._sync_clock()
        load = self._options.stored_time.load
        instant = self._store(self.clock() + shift)
        if self._uses_order_key():
            match = None if is_in_process(self.client) or scope else index_match(self)
            scoped = scope_locked_expression(scope, instant) if scope else None
            pipeline = grouped_pipeline(self, instant, match=match, scope_locked=scoped)
            return PoolStatistics.from_groups(await self.aggregate(pipeline), load)
        available = combine(self.default_filter, self._filter_exclude_lock(offset))
        if scope is not None:
            available = combine(available, scope_free_filter(scope, instant))
        pipeline = facet_pipeline(
            self,
            available=available,
            locked=combine(self.default_filter, self._filter_include_lock(offset)),
            inactive={self.active: False},
        )
        return PoolStatistics.from_facets(await self.aggregate(pipeline), load)

    async def scope_rows(self, offset: float = 0) -> list[dict[str, Any]]:
        """The figures of the scopes in use, for :meth:`PoolStatistics.with_scopes` (one command).

        Raises:
            InvalidInputError: *offset* is invalid.
            DatabaseError: the server failed.
        """
        shift = check_offset("offset", offset)
        await self._sync_clock()
        instant = self._store(self.clock() + shift)
        pipeline = scope_statistics_pipeline(instant, available_expression(self, instant))
        return await self.aggregate(pipeline)

    async def aggregate_statistics(
        self, offset: float = 0, *, scope: str | None = None
    ) -> dict[str, Any]:
        """Return statistics for monitoring, in one round trip.

        The dict holds the seed's keys ``count_active`` (available),
        ``count_blocked`` (``active`` is ``False``), ``count_locked`` and
        ``count_total``, plus ``locked_by_kind``, ``sum_count_use``,
        ``sum_count_success``, ``next_unlock`` and ``oldest_lock`` (see
        :meth:`~sessionlib.stats.PoolStatistics.as_dict`). With *scope*, as a
        hand-out with that scope sees the pool.

        Raises:
            InvalidInputError: *offset* or *scope* is invalid.
            DatabaseError: the server failed.
        """
        return (await self.statistics(offset, scope=scope)).as_dict()

    # -- maintenance -------------------------------------------------------------

    async def release_expired_locks(self) -> dict[str, int]:
        """Clear the lock fields of sessions whose lock has expired.

        Expired locks no longer keep a session from being handed out; this
        tidies their ``lock_kind``/``locked_at`` and sets ``next_use`` to
        null. Sessions locked by the seed library (no ``lock_kind``) are left
        alone. A session handed out meanwhile is not touched: the update
        matches only locks that have expired. It also puts back in the
        hand-out queue sessions that were released or activated by hand (see
        :mod:`sessionlib.indexes`).

        Returns:
            The number of sessions released, per lock kind.

        Raises:
            DatabaseError: the server failed.
        """
        await self._sync_clock()
        now = self._store(self.clock())
        released: dict[str, int] = {}
        for kind in LOCK_KINDS:
            result = await self.update_many(*updates.release_expired(self, kind=kind, now=now))
            released[kind.value] = result.modified_count
        await self.update_many(*updates.requeue(self, now=now))
        return released

    async def release_expired_scoped_locks(self) -> int:
        """Drop the scoped locks that have ended; return how many sessions had some.

        Raises:
            DatabaseError: the server failed.
        """
        await self._sync_clock()
        query, update = expired_scopes_update(self._store(self.clock()))
        return (await self.update_many(query, update)).modified_count

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes hand-outs and statistics need, if missing; return their names.

        See :mod:`sessionlib.indexes` for why they have the keys they have.

        Raises:
            DatabaseError: the server failed (for example, an index with the
                same name but other keys exists).
        """
        return [
            await self.create_index(keys, name=name, sparse=name in SPARSE)
            for name, keys in index_specs(self).items()
        ]

    async def migrate(self) -> dict[str, Any]:
        """Prepare a pool written by the seed library or an earlier version.

        Gives documents without an order key their key (never for inactive
        ones, else ``next_use``, else ``last_use``), so hand-outs step over
        none of them, and drops the indexes earlier versions created. Safe to
        run again, and while workers run.

        Returns:
            ``{"order_keys": <documents given a key>, "dropped_indexes": [...]}``.

        Raises:
            DatabaseError: the server failed.
        """
        missing = {self.ready_at: {"$exists": False}}
        steps: list[tuple[Filter, Any]] = [
            (combine(missing, {self.active: False}), {"$set": {self.ready_at: NEVER}}),
            (
                combine(missing, {self.next_use: {"$type": "date"}}),
                [{"$set": {self.ready_at: f"${self.next_use}"}}],
            ),
            (
                combine(missing, {self.last_use: {"$type": "date"}}),
                [{"$set": {self.ready_at: f"${self.last_use}"}}],
            ),
        ]
        keyed = 0
        for query, update in steps:
            keyed += (await self.update_many(query, update)).modified_count
        present = await self.index_information()
        dropped = [name for name in LEGACY_INDEXES if name in present]
        for name in dropped:
            await self.drop_index(name)
        return {"order_keys": keyed, "dropped_indexes": dropped}

    # -- helpers -------------------------------------------------------------------

    def _normalize(self, document: dict[str, Any]) -> dict[str, Any]:
        # Hand out true, aware UTC instants, whatever the documents hold
        # (naive datetimes from a Motor client, a legacy zone's wall clock).
        self._options.stored_time.load_fields(document, self.time_fields)
        return document


def _order_key(document: Mapping[str, Any], fields: MongoConnectionInterface) -> datetime | None:
    if document.get(fields.active) is False:
        return NEVER
    for name in (fields.next_use, fields.last_use):
        value = document.get(name)
        if isinstance(value, datetime):
            return value
    return None


def _reconnect_attempts(max_allowed_reconnect: int | None, allow_reconnect: bool | None) -> int:
    if allow_reconnect is None:
        return (
            DEFAULT_MAX_ALLOWED_RECONNECT
            if max_allowed_reconnect is None
            else max_allowed_reconnect
        )
    if max_allowed_reconnect is not None:
        raise ConfigurationError(
            "give max_allowed_reconnect or allow_reconnect (the older spelling), not both"
        )
    if not isinstance(allow_reconnect, bool):
        raise ConfigurationError(f"allow_reconnect must be True or False, not {allow_reconnect!r}")
    return 1 if allow_reconnect else 0
