"""Connecting to MongoDB (the seed's ``MongoConnectInterface``).

The constructor does no I/O. ``connect()`` creates the client (unless one was
passed in), pings the server with bounded reconnect attempts, and binds the
database and the pool's collection; ``close()`` is safe to call twice.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from . import driver
from .exceptions import ConfigurationError, NotConnectedError
from .logger import redact_url

if TYPE_CHECKING:
    from pymongo import WriteConcern

    # PyMongo's own annotations name read preferences by this class.
    from pymongo.read_preferences import _ServerMode

__all__ = ["DEFAULT_MAX_ALLOWED_RECONNECT", "DEFAULT_TIMEOUT", "MongoConnectInterface"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds one attempt of an operation may take."""

DEFAULT_MAX_ALLOWED_RECONNECT = 3
"""Reconnect attempts after a lost connection, per operation and on ``connect()``."""


class MongoConnectInterface:
    """Holds the client, the database and the pool's collection.

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
        max_allowed_reconnect: Further attempts, with exponential backoff and
            jitter, when the server cannot be reached (any operation) or the
            connection was lost (reads only: a write may have been applied).
        write_concern: Write concern of every write (e.g.
            ``WriteConcern(w="majority")`` on a replica set).
        read_preference: Read preference of hand-outs and writes' reads.
        stats_read_preference: Read preference of statistics and listings,
            e.g. ``ReadPreference.SECONDARY_PREFERRED`` to keep monitoring off
            the primary. Defaults to *read_preference*.
        app_name: Name the server sees in its logs and ``currentOp``.
        client_options: Extra keyword arguments for the ``AsyncMongoClient``
            created by ``connect()``.

    Raises:
        ConfigurationError: neither *mongo_url* nor *client* is given, or an
            option has an invalid value.
    """

    def __init__(
        self,
        mongo_url: str | None = None,
        db: str | None = None,
        collection: str | None = None,
        *,
        client: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_allowed_reconnect: int = DEFAULT_MAX_ALLOWED_RECONNECT,
        write_concern: WriteConcern | None = None,
        read_preference: _ServerMode | None = None,
        stats_read_preference: _ServerMode | None = None,
        app_name: str = "sessionpool",
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if mongo_url is None and client is None:
            raise ConfigurationError("pass a MongoDB URL (mongo_url=...) or a client (client=...)")
        if not db or not isinstance(db, str):
            raise ConfigurationError(f"db must be a non-empty database name, not {db!r}")
        if not collection or not isinstance(collection, str):
            raise ConfigurationError(
                f"collection must be a non-empty collection name, not {collection!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigurationError(f"timeout must be a number of seconds, not {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, not {timeout}")
        if (
            isinstance(max_allowed_reconnect, bool)
            or not isinstance(max_allowed_reconnect, int)
            or max_allowed_reconnect < 0
        ):
            raise ConfigurationError(
                f"max_allowed_reconnect must be a non-negative int, not {max_allowed_reconnect!r}"
            )
        self._mongo_url = mongo_url
        self.db_name = db
        self.collection_name = collection
        self.operation_timeout = float(timeout)
        self.max_allowed_reconnect = max_allowed_reconnect
        self.write_concern = write_concern
        self.read_preference = read_preference
        self.stats_read_preference = (
            read_preference if stats_read_preference is None else stats_read_preference
        )
        self.app_name = app_name
        self._client_options = dict(client_options or {})
        self._owns_client = client is None
        self.client: Any = client
        self.db: Any = None
        self.sessions: Any = None
        self._stats_sessions: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {redact_url(self._mongo_url)} "
            f"db={self.db_name!r} collection={self.collection_name!r}>"
        )

    @property
    def mongo_url(self) -> str | None:
        """The connection string with its password replaced by ``***``."""
        return None if self._mongo_url is None else redact_url(self._mongo_url)

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
            OperationTimeoutError: the ping did not finish within the timeout.
            PermissionDeniedError: the server refused the credentials.
            ConfigurationError: the URL or a client option is invalid.
        """
        if self.connected:
            return self
        if self._owns_client:
            assert self._mongo_url is not None  # checked in __init__
            self.client = driver.new_client(
                self._mongo_url,
                timeout=self.operation_timeout,
                app_name=self.app_name,
                **self._client_options,
            )
        self._closed = False
        try:
            await driver.run(
                "ping",
                lambda: self.client.admin.command("ping"),
                time_limit=self.operation_timeout,
                max_reconnect=self.max_allowed_reconnect,
                retry=True,
            )
        except BaseException:
            await self.close()
            raise
        self._bind(self.collection_name)
        log.debug(
            "connected to %s, pool %s.%s",
            redact_url(self._mongo_url),
            self.db_name,
            self.collection_name,
        )
        return self

    def _bind(self, collection: str) -> None:
        options: dict[str, Any] = {}
        if self.write_concern is not None:
            options["write_concern"] = self.write_concern
        if self.read_preference is not None:
            options["read_preference"] = self.read_preference
        self.db = self.client.get_database(self.db_name, **options)
        self.sessions = self.db[collection]
        if self.stats_read_preference is not None:
            self._stats_sessions = self.sessions.with_options(
                read_preference=self.stats_read_preference
            )
        else:
            self._stats_sessions = self.sessions
        self.collection_name = collection

    def _require_connection(self) -> None:
        if self.sessions is None:
            state = "closed" if self._closed else "not connected"
            raise NotConnectedError(f"the pool is {state}; call 'await pool.connect()' first")

    async def close(self) -> None:
        """Close the client if this object created it; safe to call more than once."""
        client, owns = self.client, self._owns_client
        self.db = self.sessions = self._stats_sessions = None
        if self._closed:
            return
        self._closed = True
        if owns and client is not None:
            self.client = None
            await driver.close_client(client)

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
