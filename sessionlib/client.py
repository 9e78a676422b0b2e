"""The session pool API (the seed's ``MongoSessions``).

Usage::

    async with MongoSessions(MONGO_URL, db="pools", collection="telegram") as pool:
        session = await pool.get_session()       # dict, or None when none is free
        if session is not None:
            ...                                  # use session["session"]
            await pool.session_success(session)

A session is *available* when it matches ``default_filter`` and its
``next_use`` is null or earlier than now; it is *locked* when it matches
``default_filter`` and its ``next_use`` is now or later. Every hand-out and
every per-session write is one command.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from .clock import as_utc
from .exceptions import InvalidPayloadError
from .fields import LockKind
from .indexes import index_specs
from .lease import FENCE, LEASE, Lease, Report
from .reports import SessionReports, combine
from .stats import PoolStatistics, statistics_pipeline
from .validation import (
    check_count,
    check_document,
    check_set_payload,
    check_unset_payload,
    delay_to_timedelta,
)
from .waiting import hold_lease, wait_for_session

__all__ = ["MongoSessions", "combine"]


class MongoSessions(SessionReports):
    """A pool of sessions stored in one MongoDB collection.

    Takes the arguments of :class:`~sessionlib.connection.MongoConnectionInterface`
    (``mongo_url``, ``db``, ``collection``, ``client``, ``timeout``,
    ``max_allowed_reconnect``, ``next_use_delay``, ``lock_time``, ``block_time``,
    ``default_filter``, ``projection``, ...), plus:

    and of :class:`~sessionlib.reports.SessionReports` (``clock``, ``fenced``,
    ``escalation``, ``sleep``).

    Subclasses may override the filter hooks :meth:`_filter_exclude_lock`,
    :meth:`_filter_include_lock`, :meth:`_filter_one` and :attr:`default_sort`.
    """

    # -- hand-out --------------------------------------------------------------

    async def get_session(
        self, count_use: int = 1, next_use_delay: float | None = None
    ) -> dict[str, Any] | None:
        """Hand out the least recently used available session, atomically.

        Sets ``last_use`` to now, holds the session for *next_use_delay*
        seconds (default :attr:`next_use_delay`), adds *count_use* to
        ``count_use`` and writes a new lease, in one ``findAndModify``, so no
        two callers in any processes get the same session while it is held.

        Returns:
            The session (with :attr:`projection` applied), or ``None`` when
            none is available.

        Raises:
            InvalidInputError: *count_use* or *next_use_delay* is invalid.
            DatabaseError: the server failed (see :mod:`sessionlib.exceptions`).
        """
        return await self._hand_out(count_use, next_use_delay, with_lease=self.fenced)

    async def _hand_out(
        self, count_use: int, next_use_delay: float | None, *, with_lease: bool
    ) -> dict[str, Any] | None:
        check_count("count_use", count_use)
        delay = delay_to_timedelta(next_use_delay, self.next_use_delay)
        now = self.clock()
        document = await self.find_one_and_update(
            combine(self.default_filter, self._filter_exclude_lock()),
            {
                "$set": {
                    self.last_use: now,
                    LEASE: secrets.token_hex(12),
                    **self._lock_fields(now + delay, LockKind.IN_USE, now),
                },
                "$inc": {self.count_use: count_use, FENCE: 1},
            },
            sort=self.default_sort,
            projection=self._hand_out_projection(with_lease),
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else self._normalize(document)

    def _hand_out_projection(self, with_lease: bool) -> dict[str, Any] | None:
        projection = self.projection
        if projection is None or not with_lease:
            return projection
        included = any(value for key, value in projection.items() if key != "_id")
        if included:
            return {**projection, LEASE: 1, FENCE: 1, self.next_use: 1}
        return {key: value for key, value in projection.items() if key not in (LEASE, FENCE)}

    async def acquire(self, count_use: int = 1, hold: float | None = None) -> Lease | None:
        """Hand out a session as a :class:`~sessionlib.lease.Lease`, or ``None``.

        Like :meth:`get_session`, held for *hold* seconds; reports made
        through the lease are always lease-checked.

        Raises:
            InvalidInputError: an argument is invalid.
            DatabaseError: the server failed.
        """
        session = await self._hand_out(count_use, hold, with_lease=True)
        return None if session is None else Lease(self, session)

    def lease(
        self,
        *,
        hold: float | None = None,
        count_use: int = 1,
        wait: float | None = None,
        on_error: Mapping[type[BaseException] | tuple[type[BaseException], ...], Report]
        | None = None,
        success_delay: float | None = None,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold a session for the body of an ``async with`` block.

        On normal exit a success is reported (with *success_delay*), unless
        the body already reported through the lease. When the body raises, the
        first entry of *on_error* whose type matches decides the report
        (``Lock(period)``, ``Block(period)``, ``Deactivate()``,
        ``Release()``); unmapped exceptions report nothing, so the hold just
        expires. The exception always propagates.

        With *wait* (seconds), a pool with no available session is polled with
        exponential backoff and jitter until one frees up or *wait* passes.

        Raises:
            NoSessionAvailableError: no session became available (its
                ``next_available_at`` says when one will).
            StaleLeaseError: on normal exit, the session had been handed out
                again before the success could be reported.
        """
        return hold_lease(
            self,
            hold=hold,
            count_use=count_use,
            wait=wait,
            on_error=on_error or {},
            success_delay=success_delay,
        )

    async def next_available_at(self) -> datetime | None:
        """Return when the earliest locked session becomes available, or ``None``.

        Raises:
            DatabaseError: the server failed.
        """
        document = await self.find_one(
            combine(self.default_filter, self._filter_include_lock()),
            projection={self.next_use: 1},
            sort=[(self.next_use, ASCENDING)],
        )
        value = None if document is None else document.get(self.next_use)
        return as_utc(value) if isinstance(value, datetime) else None

    async def wait_for_session(
        self, wait: float, count_use: int = 1, hold: float | None = None
    ) -> Lease:
        """Return a lease, waiting up to *wait* seconds for a session to free up.

        Raises:
            NoSessionAvailableError: none freed up in time.
        """
        return await wait_for_session(self, wait=wait, count_use=count_use, hold=hold)

    # -- documents -------------------------------------------------------------

    def new_document(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the document :meth:`add` inserts: the defaults, overridden by *data*.

        Raises:
            InvalidPayloadError: *data* is not a dict or has unsafe field names.
        """
        check_document(data)
        return {
            self.active: True,
            self.count_use: 0,
            self.count_success: 0,
            self.created: self.clock(),
            self.last_use: None,
            self.next_use: None,
            **data,
        }

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
        update: dict[str, Any] = {}
        if to_set:
            update["$set"] = to_set
        if to_unset:
            update["$unset"] = to_unset
        return await self.update_one(query, update)

    async def session_delete(self, session: dict[str, Any]) -> DeleteResult:
        """Delete the session.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was deleted.
            DatabaseError: the server failed.
        """
        return await self.delete_one(self._filter_one(session))

    # -- reading -----------------------------------------------------------------

    async def count_active(self, offset: float = 0) -> int:
        """Return the number of available sessions (at now + *offset* seconds).

        Raises:
            DatabaseError: the server failed.
        """
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

    async def statistics(self, offset: float = 0) -> PoolStatistics:
        """Return the pool's statistics, in one aggregation.

        Availability is judged at now + *offset* seconds.

        Raises:
            DatabaseError: the server failed.
        """
        pipeline = statistics_pipeline(
            self,
            available=combine(self.default_filter, self._filter_exclude_lock(offset)),
            locked=combine(self.default_filter, self._filter_include_lock(offset)),
            inactive={self.active: False},
        )
        return PoolStatistics.from_result(await self.aggregate(pipeline))

    async def aggregate_statistics(self, offset: float = 0) -> dict[str, Any]:
        """Return statistics for monitoring, in one round trip.

        The dict holds the seed's keys ``count_active`` (available),
        ``count_blocked`` (``active`` is ``False``), ``count_locked`` and
        ``count_total``, plus ``locked_by_kind``, ``sum_count_use``,
        ``sum_count_success``, ``next_unlock`` and ``oldest_lock`` (see
        :meth:`~sessionlib.stats.PoolStatistics.as_dict`).

        Raises:
            DatabaseError: the server failed.
        """
        return (await self.statistics(offset)).as_dict()

    # -- maintenance -------------------------------------------------------------

    async def release_expired_locks(self) -> dict[str, int]:
        """Clear the lock fields of sessions whose lock has expired.

        Expired locks no longer keep a session from being handed out; this
        tidies their ``lock_kind``/``locked_at`` and sets ``next_use`` to
        null. Sessions locked by the seed library (no ``lock_kind``) are left
        alone. A session handed out meanwhile is not touched: the update
        matches only locks that have expired.

        Returns:
            The number of sessions released, per lock kind.

        Raises:
            DatabaseError: the server failed.
        """
        now = self.clock()
        released: dict[str, int] = {}
        for kind in LockKind.ALL:
            result = await self.update_many(
                {self.lock_kind: kind, self.next_use: {"$lt": now}}, self._release_update()
            )
            released[kind] = result.modified_count
        return released

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes hand-outs and counts need, if missing; return their names.

        See :mod:`sessionlib.indexes` for why they have the keys they have.

        Raises:
            DatabaseError: the server failed (for example, an index with the
                same name but other keys exists).
        """
        return [
            await self.create_index(keys, name=name) for name, keys in index_specs(self).items()
        ]

    # -- helpers -------------------------------------------------------------------

    def _normalize(self, document: dict[str, Any]) -> dict[str, Any]:
        # Clients created without tz_aware=True (a Motor client passed in)
        # return naive datetimes; hand out aware UTC ones regardless.
        for name in (self.last_use, self.next_use, self.created, self.locked_at):
            value = document.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                document[name] = as_utc(value)
        return document
