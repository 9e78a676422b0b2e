"""The pool's connection with its fields (the seed's ``MongoConnectionInterface``)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any, Self

from .exceptions import ConfigurationError
from .fields import DEFAULT_BLOCK_TIME, DEFAULT_LOCK_TIME, DEFAULT_NEXT_USE_DELAY, MongoFields
from .operations import MongoOperations

__all__ = ["MongoConnectionInterface"]


def _check_name(what: str, name: object) -> None:
    if not name or not isinstance(name, str):
        raise ConfigurationError(f"{what} must be a non-empty name, not {name!r}")


class MongoConnectionInterface(MongoOperations, MongoFields):
    """A connection bound to one pool (collection), with the pool's field settings.

    Takes the arguments of :class:`~sessionlib.connect.MongoConnectInterface`
    and of :class:`~sessionlib.fields.MongoFields`.

    Raises:
        ConfigurationError: an argument has an invalid value.
    """

    def __init__(
        self,
        mongo_url: str | None = None,
        db: str | None = None,
        collection: str | None = None,
        *,
        next_use_delay: float = DEFAULT_NEXT_USE_DELAY,
        lock_time: timedelta = DEFAULT_LOCK_TIME,
        block_time: timedelta = DEFAULT_BLOCK_TIME,
        default_filter: dict[str, Any] | None = None,
        projection: dict[str, Any] | None = None,
        **connect_options: Any,
    ) -> None:
        MongoOperations.__init__(self, mongo_url, db, collection, **connect_options)
        MongoFields.__init__(
            self,
            next_use_delay=next_use_delay,
            lock_time=lock_time,
            block_time=block_time,
            default_filter=default_filter,
            projection=projection,
        )

    def switch_collection(self, collection: str) -> None:
        """Bind this object to another pool (collection) of the same database and client.

        Raises:
            ConfigurationError: *collection* is not a non-empty string.
            NotConnectedError: the pool is not connected.
        """
        _check_name("collection", collection)
        self._require_connection()
        self._bind(collection)

    def with_collection(self, collection: str, db: str | None = None) -> Self:
        """Return a copy of this pool bound to another collection of the same client.

        *db* names another database of the same server; default: this pool's.

        No I/O: the copy shares the client and its connection pool, so many
        pools cost one set of connections. Closing the copy leaves the
        shared client open; close the original to close it.

        Raises:
            ConfigurationError: *collection* is not a non-empty string.
            NotConnectedError: the pool is not connected.
        """
        if not collection or not isinstance(collection, str):
            raise ConfigurationError(f"collection must be a non-empty name, not {collection!r}")
        self._require_connection()
        if db is not None and (not db or not isinstance(db, str)):
            raise ConfigurationError(f"db must be a non-empty database name, not {db!r}")
        other = copy.copy(self)
        other._owns_client = False
        if db is not None:
            other.db_name = db
        other._bind(collection)
        return other
