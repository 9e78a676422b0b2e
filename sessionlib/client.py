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
:mod:`sessionlib.clock`), read once per operation (:mod:`sessionlib.now`).

``MongoSessions`` is a façade: it keeps the seed's names, attributes and
overridable hooks, and each public method hands the work to a verb module
with the pool's :class:`~sessionlib.core.PoolCore`:

=============================  ==============================================
:mod:`sessionlib.handout`      ``get_session``, ``acquire`` (and ``lease``)
:mod:`sessionlib.reports`      success, lock, block, release, inactive, activate
:mod:`sessionlib.documents`    ``add``, ``session_update``, ``session_delete``
:mod:`sessionlib.reading`      counts, listings, history, statistics
:mod:`sessionlib.maintenance`  expired locks, indexes, ``migrate``
:mod:`sessionlib.poolmeta`     the pool's target and breaker
=============================  ==============================================

A feature is a pure rule (:mod:`sessionlib.states`, :mod:`sessionlib.updates`,
:mod:`sessionlib.budgets`...), an option (:mod:`sessionlib.options`), and the
one verb module it changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from . import documents, handout, maintenance, poolmeta, reading, replies, reports
from .breaker import BreakerGuard, CircuitBreaker
from .budgets import Budget
from .clock import Clock
from .connection import MongoConnectionInterface
from .core import PoolCore
from .driver import Client
from .encryption import Encryption
from .escalation import EscalationPolicy
from .exceptions import ConfigurationError
from .fields import _replace
from .holds import LostHolds
from .isphere import adapt
from .lease import Lease, OnError, open_lease, wait_for_session
from .metadata import BreakerState, Target
from .metrics import PoolMetrics
from .now import current
from .options import (
    DEFAULT_BLOCK_TIME,
    DEFAULT_LOCK_TIME,
    DEFAULT_MAX_ALLOWED_RECONNECT,
    DEFAULT_NEXT_USE_DELAY,
    DEFAULT_TIMEOUT,
    PoolOptions,
)
from .scopes import check_scope
from .states import Filter, LockKind, combine, locked_filter, unlocked_filter
from .stats import PoolStatistics
from .storedtime import StoredTime, zone_of
from .validation import (
    check_offset,
    session_id,
)

if TYPE_CHECKING:
    from pymongo import WriteConcern
    from pymongo.read_preferences import _ServerMode

__all__ = ["MongoSessions", "combine"]


class MongoSessions(MongoConnectionInterface):
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
        encryption: An :class:`~sessionlib.encryption.Encryption`: the
            listed fields (``session``) are encrypted when written and
            decrypted when read (see :mod:`sessionlib.encryption`).

    Raises:
        ConfigurationError: an argument is invalid.

    Subclasses may override the filter hooks :meth:`_filter_exclude_lock`,
    :meth:`_filter_include_lock`, :meth:`_filter_one` and :attr:`default_sort`.
    """

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
        encryption: Encryption | None = None,
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
                encryption=encryption,
            )
        except ConfigurationError as exc:
            raise adapt(exc) from None
        super().__init__(mongo_url, db, collection, client=client, options=options)
        self._breaker_guard = BreakerGuard(breaker) if breaker is not None else None
        self._lost = LostHolds()

    # -- the core and settings --------------------------------------------------

    @property
    def core(self) -> PoolCore:
        """This pool's core, which the verb modules take (see :mod:`sessionlib.core`)."""
        return PoolCore(
            self,
            self,
            breaker=self._breaker_guard,
            lost=self._lost,
            order_key=self._uses_order_key(),
        )

    async def close(self) -> None:
        """Give back what hand-outs with lost replies took, then close; safe to call twice.

        See :mod:`sessionlib.replies`. The client is closed only if this pool created it.
        """
        if self.connected:
            await replies.give_back(self.core, self._lost)
        await super().close()

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

    # -- overridable hooks ---------------------------------------------------

    @property
    def default_sort(self) -> list[tuple[str, int]]:
        """Hand-out order: least recently available first (see :mod:`sessionlib.order`)."""
        return [(self.ready_at, ASCENDING), (self.last_use, ASCENDING)]

    def _filter_exclude_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions not locked at now + *offset* seconds."""
        now = current() or self.core.read_now()
        return unlocked_filter(self, now.shifted(check_offset("offset", offset)).at)

    def _filter_include_lock(self, offset: float = 0) -> Filter:
        """Filter for sessions locked at now + *offset* seconds."""
        now = current() or self.core.read_now()
        return locked_filter(self, now.shifted(check_offset("offset", offset)).at)

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
        default = self.next_use_delay
        hold = handout.check(default, count_use, next_use_delay, scope, where, "next_use_delay")
        return await handout.hand_out(self.core, count_use, hold, self.fenced, scope, where)

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
        held = handout.check(self.next_use_delay, count_use, hold, scope, where)
        session = await handout.hand_out(self.core, count_use, held, True, scope, where)
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
        return open_lease(self, hold, count_use, wait, on_error, success_delay, scope, where)

    async def next_available_at(self) -> datetime | None:
        """Return when the earliest locked session becomes available, or ``None``.

        Raises:
            DatabaseError: the server failed.
        """
        return await reading.next_available_at(self.core)

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
        core = self.core
        return await reports.success(
            core, session, count_success, next_use_delay, reason, lease_checked
        )

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
        kind = LockKind.LOCKED
        return await reports.lock(
            self.core, session, kind, period, until, scope, reason, lease_checked
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
        kind = LockKind.BLOCKED
        return await reports.lock(
            self.core, session, kind, period, until, scope, reason, lease_checked
        )

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
        return await reports.change(self.core, session, "released", reason, lease_checked)

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
        return await reports.change(self.core, session, "deactivated", reason, lease_checked)

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
        return await reports.change(self.core, session, "activated", reason, lease_checked)

    async def history(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """Return the session's last reason and history (oldest first), or ``None`` if absent.

        ``{"_id", "reason", "history": [{"at", "kind", "reason", "fence", "by"}, ...]}``;
        instants are true ones.

        Raises:
            InvalidSessionError: *session* has no plain ``_id``.
            DatabaseError: the server failed.
        """
        return await reading.history(self.core, session)

    # -- documents -------------------------------------------------------------

    def new_document(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the document :meth:`add` inserts: the defaults, overridden by *data*.

        The order key (``ready_at``) follows from *data* (see :mod:`sessionlib.order`).

        Raises:
            InvalidPayloadError: *data* is not a dict or has unsafe field names.
        """
        core = self.core
        return documents.new_document(core, data, core.read_now())

    async def add(self, data: dict[str, Any]) -> InsertOneResult:
        """Insert a session: ``active=True``, counters 0, ``created=now``, overridden by *data*.

        Raises:
            InvalidPayloadError: *data* is not a dict or has unsafe field names.
            DuplicateSessionError: a session with this ``_id`` exists.
            DatabaseError: the server failed.
        """
        return await documents.add(self.core, data)

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
        return await documents.update(self.core, session, payload, unset_payload)

    async def session_delete(self, session: dict[str, Any]) -> DeleteResult:
        """Delete the session.

        Raises:
            InvalidSessionError: *session* has no plain ``_id``; nothing was deleted.
            DatabaseError: the server failed.
        """
        return await documents.delete(self.core, session)

    # -- reading -----------------------------------------------------------------

    async def count_active(self, offset: float = 0) -> int:
        """Return the number of available sessions (at now + *offset* seconds).

        Raises:
            InvalidInputError: *offset* is not a number within ±100 years.
            DatabaseError: the server failed.
        """
        check_offset("offset", offset)
        return await reading.count_active(self.core, offset)

    async def get_sessions(self) -> list[dict[str, Any]]:
        """Return every session matching :attr:`default_filter`, with :attr:`projection`.

        Raises:
            DatabaseError: the server failed.
        """
        return await reading.get_sessions(self.core)

    async def statistics(self, offset: float = 0, *, scope: str | None = None) -> PoolStatistics:
        """Return the pool's statistics (states, scopes, target, breaker) in one command.

        Availability is judged at now + *offset* seconds. With *scope*, as a
        hand-out with that scope sees the pool: sessions locked for it count
        as locked. The figures are the ones a
        :class:`~sessionlib.store.SessionStore` reads for many pools.

        Raises:
            InvalidInputError: *offset* or *scope* is invalid.
            DatabaseError: the server failed.
        """
        shift = check_offset("offset", offset)
        check_scope(scope)
        core = self.core
        now = (await core.now()).shifted(shift)
        found = await reading.statistics_of(core, [self.collection_name], now, scope=scope)
        return found[self.collection_name]

    async def scope_rows(self, offset: float = 0) -> list[dict[str, Any]]:
        """The raw figures of the scopes in use (one command); :meth:`statistics` reads them too.

        Raises:
            InvalidInputError: *offset* is invalid.
            DatabaseError: the server failed.
        """
        shift = check_offset("offset", offset)
        return await reading.scope_rows(self.core, (await self.core.now()).shifted(shift))

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
        matches only locks that have expired. It also puts sessions released
        or activated by hand where the order key's rule says (see
        :mod:`sessionlib.order`).

        Returns:
            The number of sessions released, per lock kind.

        Raises:
            DatabaseError: the server failed.
        """
        return await maintenance.release_expired_locks(self.core)

    async def release_expired_scoped_locks(self) -> int:
        """Drop the scoped locks that have ended; return how many sessions had some.

        Raises:
            DatabaseError: the server failed.
        """
        return await maintenance.release_expired_scoped_locks(self.core)

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes hand-outs and statistics need, if missing; return their names.

        See :mod:`sessionlib.indexes` for why they have the keys they have.

        Raises:
            DatabaseError: the server failed (for example, an index with the
                same name but other keys exists).
        """
        return await maintenance.ensure_indexes(self.core)

    async def migrate(self) -> dict[str, Any]:
        """Prepare a pool written by the seed library or an earlier version.

        Gives documents without an order key their key (see
        :mod:`sessionlib.order`), so they join the queue where they belong,
        and drops the indexes earlier versions created. Safe to run again,
        and while workers run.

        Returns:
            ``{"order_keys": <documents given a key>, "dropped_indexes": [...]}``.

        Raises:
            DatabaseError: the server failed.
        """
        return await maintenance.migrate(self.core)

    # -- the pool's metadata ---------------------------------------------------

    async def target(self) -> Target | None:
        """Return the pool's alert target, or ``None`` if it has none (or a broken one).

        Raises:
            DatabaseError: the server failed.
        """
        return await poolmeta.target(self.core)

    async def set_target(self, target: Target | None, *, by: str | None = None) -> None:
        """Set the pool's alert target (exported by the exporter); ``None`` removes it.

        *by* names who set it (default: the pool's ``app_name``).

        Raises:
            InvalidInputError: *target* is not a :class:`Target` or ``None``,
                or *by* is not a short text; nothing was written.
            DatabaseError: the server failed.
        """
        await poolmeta.set_target(self.core, target, by)

    async def breaker_state(self) -> BreakerState:
        """Return the state of the pool's circuit breaker now (closed if it never tripped).

        Raises:
            DatabaseError: the server failed.
        """
        return await poolmeta.breaker_state(self.core)

    async def reset_breaker(self) -> None:
        """Close the pool's circuit breaker and forget its failures, for every worker.

        Raises:
            DatabaseError: the server failed.
        """
        await poolmeta.reset_breaker(self.core)


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
