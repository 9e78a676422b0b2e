"""Connecting a pool to MongoDB (the seed's ``MongoConnectInterface``).

The constructor does no I/O. ``connect()`` opens a
:class:`~sessionlib.connector.Connector` (the client and the server's
clock) unless the pool shares one already, and binds the database and the
pool's collection; ``close()`` is safe to call twice.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

from .clock import Clock, utcnow
from .connector import Connector
from .driver import Client, Collection, Database
from .exceptions import ConfigurationError, NotConnectedError, SessionPoolError
from .isphere import adapt
from .logger import redact_url
from .options import PoolOptions
from .validation import check_collection_name, check_database_name

__all__ = ["MongoConnectInterface"]

log = logging.getLogger(__name__)


class MongoConnectInterface:
    """Holds the connection, the database and the pool's collection.

    Args:
        mongo_url: MongoDB connection string; not needed when *client* is given.
        db: Database name.
        collection: Collection (pool) name.
        client: An existing ``AsyncMongoClient``, Motor or mongomock-motor
            client to share; the caller keeps ownership and ``close()`` leaves
            it open.
        options: The pool's validated settings (see
            :class:`~sessionlib.client.MongoSessions` for each).

    Raises:
        ConfigurationError: neither *mongo_url* nor *client* is given, or a
            name is not one MongoDB accepts.
    """

    def __init__(
        self,
        mongo_url: str | None = None,
        db: str | None = None,
        collection: str | None = None,
        *,
        client: Client | None = None,
        options: PoolOptions | None = None,
    ) -> None:
        try:
            if mongo_url is None and client is None:
                raise ConfigurationError(
                    "pass a MongoDB URL (mongo_url=...) or a client (client=...)"
                )
            if mongo_url is not None and not isinstance(mongo_url, str):
                raise ConfigurationError(
                    f"mongo_url must be a connection string, not {type(mongo_url).__name__}"
                )
            self.db_name: str = check_database_name(db)
            self.collection_name: str = check_collection_name(collection, self.db_name)
        except ConfigurationError as exc:
            raise adapt(exc) from None
        self._mongo_url = mongo_url
        self._given_client = client
        self._options = options or PoolOptions()
        self._connector: Connector | None = None
        self._owns_connector = True
        self.client: Any = client
        self.db: Any = None
        self.sessions: Any = None
        self.stats_sessions: Collection | None = None
        """The bound collection on the statistics read preference (``None`` until connected)."""
        self._closed = False
        self._watch()

    def _watch(self) -> None:
        """Start this pool's telemetry series at 0 (see :meth:`PoolMetrics.watch`).

        Called for the pools a user names (built, switched, copied), never
        for sessionpool's own collections.
        """
        if self._options.metrics is not None:
            self._options.metrics.watch(self.db_name, self.collection_name)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {redact_url(self._mongo_url)} "
            f"db={self.db_name!r} collection={self.collection_name!r}>"
        )

    @property
    def options(self) -> PoolOptions:
        """The pool's validated settings."""
        return self._options

    @property
    def mongo_url(self) -> str | None:
        """The connection string with its password replaced by ``***``."""
        return None if self._mongo_url is None else redact_url(self._mongo_url)

    @property
    def operation_timeout(self) -> float:
        """Seconds one attempt of an operation may take."""
        return self._options.timeout

    @property
    def max_allowed_reconnect(self) -> int:
        """Further attempts after the server could not be reached."""
        return self._options.max_allowed_reconnect

    @property
    def connected(self) -> bool:
        """Whether ``connect()`` succeeded and ``close()`` has not been called since."""
        return self.sessions is not None

    async def connect(self) -> Self:
        """Connect, check the server answers, bind the database and collection; return self.

        Calling it again on a connected pool does nothing.

        Raises:
            ServerUnavailableError: the server did not answer within the
                allowed reconnect attempts.
            OperationTimeoutError: the check did not finish within the timeout.
            PermissionDeniedError: the server refused the credentials.
            ConfigurationError: the URL or a client option is invalid.
        """
        if self.connected:
            return self
        if self._connector is None or self._connector.closed:
            connector = Connector(self._mongo_url, client=self._given_client, options=self._options)
            try:
                await connector.open()  # closes what it opened if it fails
            except SessionPoolError as exc:
                if self._options.metrics is not None:  # a worker's telemetry
                    self._options.metrics.failed(self.db_name, self.collection_name, exc)
                raise
            self._connector, self._owns_connector = connector, True
        self._closed = False
        self._bind(self.collection_name)
        log.debug("pool %s.%s ready", self.db_name, self.collection_name)
        return self

    @property
    def connector(self) -> Connector | None:
        """The client and server clock this pool uses, once connected."""
        return self._connector

    @property
    def clock(self) -> Clock:
        """The clock decisions are made on: the one passed in, else the server's."""
        if self._options.clock is not None:
            return self._options.clock
        if self._connector is not None:
            return self._connector.clock
        return utcnow

    async def sync_clock(self) -> None:
        """Start reading the server's clock again if the last reading is older than its interval.

        It does not wait for the reading (see :meth:`Connector.sync_clock_if_due`).
        """
        if self._options.clock is None and self._connector is not None:
            self._connector.sync_clock_if_due()

    def attach(self, connector: Connector) -> None:
        """Use *connector*, opened by someone else, and bind the collection (no I/O)."""
        self._connector, self._owns_connector = connector, False
        self._closed = False
        self._bind(self.collection_name)

    def _bind(self, collection: str) -> None:
        assert self._connector is not None
        client = self._connector.client
        options: dict[str, Any] = {}
        if self._options.write_concern is not None:
            options["write_concern"] = self._options.write_concern
        if self._options.read_preference is not None:
            options["read_preference"] = self._options.read_preference
        database: Database = client.get_database(self.db_name, **options)
        self.client, self.db = client, database
        self.sessions = database[collection]
        stats = self._options.stats_read_preference
        self.stats_sessions = (
            self.sessions if stats is None else self.sessions.with_options(read_preference=stats)
        )
        self.collection_name = collection

    def _require_connection(self) -> Connector:
        if self.sessions is None or self._connector is None or self._connector.closed:
            state = "closed" if self._closed else "not connected"
            raise NotConnectedError(f"the pool is {state}; call 'await pool.connect()' first")
        return self._connector

    async def close(self) -> None:
        """Close the client if this pool created it; safe to call more than once."""
        connector, owns = self._connector, self._owns_connector
        self.db = self.sessions = self.stats_sessions = None
        if self._closed:
            return
        self._closed = True
        if owns and connector is not None:
            self._connector = None
            if connector.owns_client:
                self.client = None
            await connector.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
