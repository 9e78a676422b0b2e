"""A connection to MongoDB that hands out pools: the connection-level object.

Shaped like arq's ``create_pool``: one call connects, and everything else
shares that connection::

    store = await SessionStore.connect(MONGO_URL, timeout=5)
    telegram = store.pool("pools", "telegram")          # no I/O
    for key in await store.list_pools(["pools"]):       # discovery
        stats = await store.pool(*key).statistics()
    await store.close()

The exporter, the admin CLI and the demo all use it; ``MongoSessions(url,
db, collection)`` keeps working on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

import bson

from . import driver, expiry, reading
from .client import MongoSessions
from .clock import ServerClock, utcnow
from .connector import Connector
from .discovery import SESSION_MARKERS, SYSTEM_DATABASES, PoolKey, looks_like_session, matches
from .encryption import Encryption
from .exceptions import ConfigurationError, DatabaseError, SessionPoolError
from .isphere import adapt
from .logger import redact_url
from .now import Now
from .options import (
    DEFAULT_MAX_ALLOWED_RECONNECT,
    DEFAULT_TIMEOUT,
    PoolOptions,
    PoolSettings,
    StoreSettings,
    check_settings,
)
from .stats import PoolStatistics
from .validation import check_database_name, check_offset

if TYPE_CHECKING:
    from pymongo import WriteConcern
    from pymongo.read_preferences import _ServerMode

__all__ = ["COMMAND_BYTES", "POOLS_PER_COMMAND", "SPLIT", "SessionStore"]

POOLS_PER_COMMAND = 400
"""The most pools one statistics (or auto-release count) command reads.

MongoDB 5.0 and later refuse a pipeline of more than 1,000 stages, and the
command adds one ``$unionWith`` stage per pool (the scope figures, read only
for pools with scoped locks, are a command of their own): 400 pools stay
well inside it, with room for a pool read in two stages.
"""

COMMAND_BYTES = 8 * 1024 * 1024
"""The largest statistics command sent, half of MongoDB's 16 MiB limit."""

SPLIT = 4
"""Into how many parts a batch whose command failed is cut, each read again.

Four: a batch refused for its size fits in a quarter; a pool that fails on
its own is reached in a few rounds; a handful of pools is read one by one.
"""

T = TypeVar("T")

log = logging.getLogger(__name__)


class SessionStore:
    """One MongoDB client, its server clock, and the pools that share them.

    The connection's settings are as for :class:`~sessionlib.client.MongoSessions`
    and apply to the connection and to every pool.

    Args:
        mongo_url: MongoDB connection string; not needed when *client* is given.
        client: An existing client to share; it stays the caller's.
        timeout: Seconds one attempt of an operation may take.
        max_allowed_reconnect: Further attempts after the server could not be reached.
        write_concern: The write concern of every pool.
        read_preference: The read preference of every pool.
        stats_read_preference: The read preference of statistics.
        app_name: The application name the server sees.
        client_options: More options of the client it creates.
        clock_sync_interval: Seconds between readings of the server's clock.
        clock_skew_warning: Seconds of clock skew to this machine that are logged.
        encryption: The encryption of every pool (see :mod:`sessionlib.encryption`).
        pool_defaults: Other :class:`~sessionlib.client.MongoSessions`
            arguments every :meth:`pool` gets unless it says otherwise
            (``legacy_timezone="Europe/Moscow"``, ``next_use_delay=5``...).

    Raises:
        ConfigurationError: an argument is invalid.
    """

    def __init__(
        self,
        mongo_url: str | None = None,
        *,
        client: driver.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_allowed_reconnect: int = DEFAULT_MAX_ALLOWED_RECONNECT,
        write_concern: WriteConcern | None = None,
        read_preference: _ServerMode | None = None,
        stats_read_preference: _ServerMode | None = None,
        app_name: str = "sessionpool",
        client_options: Mapping[str, Any] | None = None,
        clock_sync_interval: float = 60.0,
        clock_skew_warning: float = 1.0,
        encryption: Encryption | None = None,
        **pool_defaults: Unpack[PoolSettings],
    ) -> None:
        connection = {
            "encryption": encryption,
            "timeout": timeout,
            "max_allowed_reconnect": max_allowed_reconnect,
            "write_concern": write_concern,
            "read_preference": read_preference,
            "stats_read_preference": stats_read_preference,
            "app_name": app_name,
            "client_options": dict(client_options or {}),
            "clock_sync_interval": clock_sync_interval,
            "clock_skew_warning": clock_skew_warning,
        }
        try:
            check_settings(pool_defaults, StoreSettings)
            options = PoolOptions(
                timeout=timeout,
                max_allowed_reconnect=max_allowed_reconnect,
                write_concern=write_concern,
                read_preference=read_preference,
                stats_read_preference=stats_read_preference,
                app_name=app_name,
                client_options=dict(client_options or {}),
                clock_sync_interval=clock_sync_interval,
                clock_skew_warning=clock_skew_warning,
                encryption=encryption,
            )
        except ConfigurationError as exc:
            raise adapt(exc) from None
        self._connection = connection
        self._pool_defaults = pool_defaults
        self._mongo_url = mongo_url
        self._given_client = client
        self._options = options
        self._connector = Connector(mongo_url, client=client, options=options)
        self._opened = False
        self._pool_bytes: int | None = None

    def __repr__(self) -> str:
        return f"<SessionStore {redact_url(self._mongo_url)}>"

    @classmethod
    async def connect(
        cls,
        mongo_url: str | None = None,
        *,
        client: driver.Client | None = None,
        **settings: Unpack[StoreSettings],
    ) -> Self:
        """Create a store and connect it (see :meth:`open`).

        *settings* are the constructor's: the connection's, then the pools' defaults.

        Raises:
            ConfigurationError: an argument is invalid (before any connection is made).
            ServerUnavailableError: the server did not answer.
        """
        return await cls(mongo_url, client=client, **settings).open()

    async def open(self) -> Self:
        """Connect: create the client if needed, check the server answers, read its clock.

        Raises:
            ServerUnavailableError: the server did not answer within the
                allowed reconnect attempts.
            OperationTimeoutError: the check did not finish within the timeout.
            PermissionDeniedError: the server refused the credentials.
            ConfigurationError: the URL or a client option is invalid.
        """
        if not self._opened or self._connector.closed:
            if self._connector.closed:
                self._connector = Connector(
                    self._mongo_url, client=self._given_client, options=self._options
                )
            await self._connector.open()
            self._opened = True
        return self

    @property
    def client(self) -> driver.Client:
        """The client every pool of this store uses.

        Raises:
            NotConnectedError: the store is not connected.
        """
        return self._connector.client

    @property
    def connected(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not been called since."""
        return self._opened and not self._connector.closed

    @property
    def clock(self) -> ServerClock:
        """The server's clock, as this store last read it."""
        return self._connector.clock

    @property
    def mongo_url(self) -> str | None:
        """The connection string with its password replaced by ``***``."""
        return None if self._mongo_url is None else redact_url(self._mongo_url)

    def pool(self, db: str, collection: str, **settings: Unpack[PoolSettings]) -> MongoSessions:
        """Return the pool *db*.*collection* on this store's connection (no I/O).

        *settings* are :class:`~sessionlib.client.MongoSessions` arguments
        beyond the connection's, over the store's defaults.

        Raises:
            ConfigurationError: a name or setting is invalid.
            NotConnectedError: the store is not connected.
        """
        try:
            check_settings(settings, PoolSettings)
        except ConfigurationError as exc:
            raise adapt(exc) from None
        return self._pool(db, collection, {**self._pool_defaults, **settings})

    def _pool(self, db: str, collection: str, settings: Mapping[str, Any]) -> MongoSessions:
        pool = MongoSessions(
            db=db, collection=collection, client=self.client, **{**self._connection, **settings}
        )
        pool.attach(self._connector)
        return pool

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await driver.run(
            operation,
            call,
            time_limit=self._options.timeout,
            max_reconnect=self._options.max_allowed_reconnect,
            retry=True,
        )

    async def ping(self) -> None:
        """Check that the server answers, and read its clock (one command).

        Raises:
            SessionPoolError: it did not answer (see :mod:`sessionlib.exceptions`).
        """
        await self._connector.sync_clock()

    async def list_databases(self) -> list[str]:
        """Return the names of the server's databases, its own (admin, local, config) left out.

        Raises:
            DatabaseError: the server failed.
        """
        client = self.client
        names = await self._run("list_database_names", lambda: client.list_database_names())
        return sorted(name for name in names if name not in SYSTEM_DATABASES)

    async def list_collections(
        self,
        databases: Sequence[str] | None = None,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> list[PoolKey]:
        """Return the collections that may be pools, by name alone (no document read).

        *databases* defaults to every database but the server's own; see
        :func:`sessionlib.discovery.matches` for the patterns.

        Raises:
            ConfigurationError: a database name is invalid.
            DatabaseError: the server failed.
        """
        names = list(databases) if databases else await self.list_databases()
        include, exclude = list(include), list(exclude)
        found: list[PoolKey] = []
        for database in names:
            try:
                check_database_name(database, "database")
            except ConfigurationError as exc:
                raise adapt(exc) from None
            db = self.client.get_database(database)
            collections = await self._run("list_collection_names", db.list_collection_names)
            found += [
                key
                for name in collections
                if matches(key := PoolKey(database, name), include, exclude)
            ]
        return sorted(found)

    async def is_pool(self, key: PoolKey) -> bool:
        """Whether the collection *key* holds sessions (one document is read; empty counts).

        Raises:
            DatabaseError: the server failed.
        """
        collection = self.client.get_database(key.database)[key.collection]
        sample = await self._run(
            "find_one",
            lambda: collection.find_one({}, projection=dict.fromkeys(SESSION_MARKERS, 1)),
        )
        return looks_like_session(sample)

    async def classify(self, keys: Sequence[PoolKey]) -> dict[PoolKey, bool]:
        """Which of the collections *keys* hold sessions: one command per batch of a database's.

        Each collection's first document is asked, on the server, whether it
        has a session's marks (:data:`~sessionlib.discovery.SESSION_MARKERS`;
        the payload is not read); an empty collection counts as a pool. A
        database's collections are asked :data:`POOLS_PER_COMMAND` at a time,
        by one aggregation (``$unionWith``), as statistics are read. Should a
        batch fail (a view among them, say), its collections are asked one
        at a time (:meth:`is_pool`), as they are on mongomock.

        Raises:
            DatabaseError: the server failed.
        """
        verdicts: dict[PoolKey, bool] = {}
        if driver.is_in_process(self.client):  # mongomock has no $unionWith
            return {key: await self.is_pool(key) for key in keys}
        for database, batch in _batched(keys, POOLS_PER_COMMAND):
            try:
                marked = await self._marked(database, batch)
            except DatabaseError as exc:
                log.debug(
                    "asking %d collections of %s at once failed: %s", len(batch), database, exc
                )
                for name in batch:
                    key = PoolKey(database, name)
                    verdicts[key] = await self.is_pool(key)
                continue
            verdicts.update({PoolKey(database, n): marked.get(n, True) for n in batch})
        return verdicts

    async def _marked(self, database: str, names: list[str]) -> dict[str, bool]:
        """For each non-empty collection of *names*: whether its first document has a mark."""
        has_mark = {
            "$or": [{"$ne": [{"$type": f"${marker}"}, "missing"]} for marker in SESSION_MARKERS]
        }

        def first(name: str) -> list[dict[str, Any]]:
            return [
                {"$limit": 1},
                {"$project": {"_id": 0, "c": {"$literal": name}, "marked": has_mark}},
            ]

        pipeline = first(names[0]) + [
            {"$unionWith": {"coll": name, "pipeline": first(name)}} for name in names[1:]
        ]
        collection = self.client.get_database(database)[names[0]]

        async def ask() -> list[dict[str, Any]]:
            # All rows in the first reply (one more, or the cursor stays open for a getMore).
            batch = len(names) + 1
            cursor = await driver.resolve(collection.aggregate(pipeline, batchSize=batch))
            rows: list[dict[str, Any]] = await cursor.to_list(None)
            return rows

        rows = await self._run("aggregate", ask)
        return {row["c"]: bool(row.get("marked")) for row in rows if isinstance(row.get("c"), str)}

    async def list_pools(
        self,
        databases: Sequence[str] | None = None,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> list[PoolKey]:
        """Return the pools: the collections that pass the patterns and hold sessions.

        Raises:
            ConfigurationError: a database name is invalid.
            DatabaseError: the server failed.
        """
        candidates = await self.list_collections(databases, include=include, exclude=exclude)
        verdicts = await self.classify(candidates)
        return [key for key in candidates if verdicts[key]]

    async def statistics(
        self,
        keys: Sequence[PoolKey],
        *,
        offset: float = 0,
        concurrency: int = 16,
        time_limit: float | None = None,
    ) -> dict[PoolKey, PoolStatistics | SessionPoolError]:
        """Return the statistics of many pools: one command per batch of a database's pools.

        A database's pools are read in batches of at most
        :data:`POOLS_PER_COMMAND` (and :data:`COMMAND_BYTES`), each by one
        aggregation (``$unionWith`` of each pool's statistics), so a refresh
        of N pools costs about N / 400 commands on any server. Should a batch
        fail, it is cut in :data:`SPLIT` parts and each read again, so a pool
        that fails (malformed beyond reading, dropped meanwhile, refused)
        fails alone: its entry is the error instead of the statistics. Parts
        run *concurrency* at a time. *time_limit* bounds each command (default:
        the store's timeout, times the rounds its pools would take one by one).

        Raises:
            InvalidInputError: *offset* is invalid.
        """
        shift = check_offset("offset", offset)
        by_database: dict[str, list[str]] = {}
        for key in keys:
            by_database.setdefault(key.database, []).append(key.collection)
        semaphore = asyncio.Semaphore(concurrency)
        results: dict[PoolKey, PoolStatistics | SessionPoolError] = {}
        for database, collections in by_database.items():
            for batch in self._batches(database, collections):
                rounds = -(-len(batch) // concurrency)
                limit = time_limit or self._options.timeout * max(1, rounds)
                found = await self._read(database, batch, shift, limit, semaphore)
                results.update(found)
        return results

    def _batches(self, database: str, collections: list[str]) -> list[list[str]]:
        """*collections* cut into batches one command each can hold."""
        size = max(1, min(POOLS_PER_COMMAND, COMMAND_BYTES // self._bytes_per_pool(database)))
        return [collections[i : i + size] for i in range(0, len(collections), size)]

    def _bytes_per_pool(self, database: str) -> int:
        """What one more pool adds to a statistics command, in bytes (no I/O; reckoned once)."""
        if self._pool_bytes is None:
            core = self._pool(database, "sizing", self._pool_defaults).core
            now = Now.fixed(utcnow())
            one = reading.statistics_command(core, ["a" * 120], now)
            two = reading.statistics_command(core, ["a" * 120, "b" * 120], now)
            self._pool_bytes = max(1, len(bson.encode({"p": two})) - len(bson.encode({"p": one})))
        return self._pool_bytes

    async def _read(
        self,
        database: str,
        batch: list[str],
        shift: timedelta,
        limit: float,
        semaphore: asyncio.Semaphore,
    ) -> dict[PoolKey, PoolStatistics | SessionPoolError]:
        """One batch in one command; a batch the server refuses, split in two and read again."""
        try:
            async with semaphore:
                return await self._database_statistics(database, batch, shift, limit)
        except SessionPoolError as exc:
            if len(batch) == 1:
                return {PoolKey(database, batch[0]): exc}
            log.info(
                "statistics of %d pools of %s in one command failed (%s); reading them in parts",
                len(batch),
                database,
                exc,
            )
            size = -(-len(batch) // SPLIT)
            parts = [batch[i : i + size] for i in range(0, len(batch), size)]
            found: dict[PoolKey, PoolStatistics | SessionPoolError] = {}
            for part in await asyncio.gather(
                *(self._read(database, part, shift, limit, semaphore) for part in parts)
            ):
                found.update(part)
            return found

    async def _database_statistics(
        self, database: str, collections: list[str], shift: timedelta, limit: float
    ) -> dict[PoolKey, PoolStatistics | SessionPoolError]:
        """The statistics of *collections* of *database* by :func:`reading.statistics_of`."""
        # One command that may take as long as the pools one by one, and is not repeated.
        once = {"timeout": limit, "max_allowed_reconnect": 0}
        core = self._pool(database, collections[0], {**self._pool_defaults, **once}).core
        now = (await core.now()).shifted(shift)
        found = await reading.statistics_of(core, collections, now)
        return {PoolKey(database, name): statistics for name, statistics in found.items()}

    async def release_expired(
        self, keys: Sequence[PoolKey], *, concurrency: int = 16, time_limit: float | None = None
    ) -> dict[PoolKey, dict[str, int] | SessionPoolError]:
        """Tidy the expired locks of many pools; return what was released, per pool and kind.

        One command per batch of :data:`POOLS_PER_COMMAND` of a database's
        pools counts each pool's work, then one command per pool with work
        writes it (see :mod:`sessionlib.expiry`); a pool with none, or dropped,
        costs nothing more and is left out. Each pool's entry has every name
        of :data:`~sessionlib.expiry.WORK`, or the error its batch or its
        write met. Writes run *concurrency* at a time, each bounded by
        *time_limit* seconds (default: the store's timeout).
        """
        settings = {**self._pool_defaults, "timeout": time_limit or self._options.timeout}
        semaphore = asyncio.Semaphore(concurrency)
        results: dict[PoolKey, dict[str, int] | SessionPoolError] = {}

        async def write(database: str, name: str, now: Now, counts: dict[str, int]) -> None:
            async with semaphore:
                try:
                    core = self._pool(database, name, settings).core
                    results[PoolKey(database, name)] = await expiry.release(core, now, counts)
                except SessionPoolError as exc:
                    results[PoolKey(database, name)] = exc

        for database, batch in _batched(keys, POOLS_PER_COMMAND):
            core = self._pool(database, batch[0], settings).core
            try:
                now = await core.now()
                work = await expiry.counts_in(core, batch, now)
            except SessionPoolError as exc:
                results.update({PoolKey(database, name): exc for name in batch})
                continue
            busy = {name: counts for name, counts in work.items() if any(counts.values())}
            await asyncio.gather(*(write(database, n, now, c) for n, c in busy.items()))
        return results

    async def close(self) -> None:
        """Close the client if this store created it; safe to call more than once."""
        await self._connector.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _batched(keys: Iterable[PoolKey], size: int) -> list[tuple[str, list[str]]]:
    """*keys* as (database, collections) batches of at most *size*, in order."""
    by_database: dict[str, list[str]] = {}
    for key in keys:
        by_database.setdefault(key.database, []).append(key.collection)
    return [
        (database, names[start : start + size])
        for database, names in by_database.items()
        for start in range(0, len(names), size)
    ]
