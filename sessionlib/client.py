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

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from .clock import Clock, as_utc, utcnow
from .connection import MongoConnectionInterface
from .exceptions import InvalidPayloadError
from .fields import LockKind
from .indexes import index_specs
from .stats import PoolStatistics, statistics_pipeline
from .validation import (
    check_count,
    check_document,
    check_set_payload,
    check_unset_payload,
    delay_to_timedelta,
    period_to_timedelta,
    session_id,
)

__all__ = ["MongoSessions"]

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


class MongoSessions(MongoConnectionInterface):
    """A pool of sessions stored in one MongoDB collection.

    Takes the arguments of :class:`~sessionlib.connection.MongoConnectionInterface`
    (``mongo_url``, ``db``, ``collection``, ``client``, ``timeout``,
    ``max_allowed_reconnect``, ``next_use_delay``, ``lock_time``, ``block_time``,
    ``default_filter``, ``projection``, ...), plus:

    Args:
        clock: Returns the current time as an aware UTC datetime; tests pass a
            clock they can move.

    Subclasses may override the filter hooks :meth:`_filter_exclude_lock`,
    :meth:`_filter_include_lock`, :meth:`_filter_one` and :attr:`default_sort`.
    """

    def __init__(self, *args: Any, clock: Clock = utcnow, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

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

    # -- hand-out and reports --------------------------------------------------

    def _lock_fields(self, until: datetime, kind: str, now: datetime) -> dict[str, Any]:
        return {self.next_use: until, self.lock_kind: kind, self.locked_at: now}

    async def get_session(
        self, count_use: int = 1, next_use_delay: float | None = None
    ) -> dict[str, Any] | None:
        """Hand out the least recently used available session, atomically.

        Sets ``last_use`` to now, holds the session for *next_use_delay*
        seconds (default :attr:`next_use_delay`) and adds *count_use* to
        ``count_use``, in one ``findAndModify``, so no two callers in any
        processes get the same session while it is held.

        Returns:
            The session (with :attr:`projection` applied), or ``None`` when
            none is available.

        Raises:
            InvalidInputError: *count_use* or *next_use_delay* is invalid.
            DatabaseError: the server failed (see :mod:`sessionlib.exceptions`).
        """
        check_count("count_use", count_use)
        delay = delay_to_timedelta(next_use_delay, self.next_use_delay)
        now = self.clock()
        document = await self.find_one_and_update(
            combine(self.default_filter, self._filter_exclude_lock()),
            {
                "$set": {
                    self.last_use: now,
                    **self._lock_fields(now + delay, LockKind.IN_USE, now),
                },
                "$inc": {self.count_use: count_use},
            },
            sort=self.default_sort,
            projection=self.projection,
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else self._normalize(document)

    async def session_success(
        self, session: dict[str, Any], count_success: int = 1, next_use_delay: float | None = None
    ) -> UpdateResult:
        """Record a success: add *count_success* and hold the session for *next_use_delay* s.

        Raises:
            InvalidInputError: an argument is invalid; nothing was written.
            DatabaseError: the server failed.
        """
        query = self._filter_one(session)
        check_count("count_success", count_success)
        delay = delay_to_timedelta(next_use_delay, self.next_use_delay)
        now = self.clock()
        return await self.update_one(
            query,
            {
                "$inc": {self.count_success: count_success},
                "$set": self._lock_fields(now + delay, LockKind.IN_USE, now),
            },
        )

    async def session_lock(
        self, session: dict[str, Any], period: dict[str, float] | None = None
    ) -> UpdateResult:
        """Lock the session temporarily (a short ban): unavailable for *period*.

        *period* holds :class:`~datetime.timedelta` keywords, e.g.
        ``{"hours": 10}``; default :attr:`lock_time`.

        Raises:
            InvalidInputError: *session* or *period* is invalid; nothing was written.
            DatabaseError: the server failed.
        """
        return await self._lock(
            session, period_to_timedelta(period, self.lock_time), LockKind.LOCKED
        )

    async def session_block(
        self, session: dict[str, Any], period: dict[str, float] | None = None
    ) -> UpdateResult:
        """Block the session for long (a long ban): unavailable for *period*.

        *period* holds :class:`~datetime.timedelta` keywords; default :attr:`block_time`.

        Raises:
            InvalidInputError: *session* or *period* is invalid; nothing was written.
            DatabaseError: the server failed.
        """
        return await self._lock(
            session, period_to_timedelta(period, self.block_time), LockKind.BLOCKED
        )

    async def _lock(self, session: dict[str, Any], period: timedelta, kind: str) -> UpdateResult:
        query = self._filter_one(session)
        now = self.clock()
        return await self.update_one(query, {"$set": self._lock_fields(now + period, kind, now)})

    async def session_release(self, session: dict[str, Any]) -> UpdateResult:
        """Make the session available now, whatever lock it had.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            DatabaseError: the server failed.
        """
        return await self.update_one(self._filter_one(session), self._release_update())

    def _release_update(self) -> dict[str, Any]:
        return {"$set": {self.next_use: None}, "$unset": {self.lock_kind: "", self.locked_at: ""}}

    async def session_inactive(self, session: dict[str, Any]) -> UpdateResult:
        """Disable the session for good (``active=False``); only an activator revives it.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            DatabaseError: the server failed.
        """
        return await self.update_one(self._filter_one(session), {"$set": {self.active: False}})

    async def session_activate(self, session: dict[str, Any]) -> UpdateResult:
        """Enable a disabled session again (``active=True``): the activator's call.

        Raises:
            InvalidSessionError: *session* has no ``_id``; nothing was written.
            DatabaseError: the server failed.
        """
        return await self.update_one(self._filter_one(session), {"$set": {self.active: True}})

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
