"""The pool's connection with its fields (the seed's ``MongoConnectionInterface``)."""

from __future__ import annotations

import copy
from typing import Self

from .exceptions import ConfigurationError
from .fields import MongoFields
from .isphere import adapt
from .operations import MongoOperations
from .validation import check_collection_name, check_database_name

__all__ = ["MongoConnectionInterface"]


class MongoConnectionInterface(MongoOperations, MongoFields):
    """A connection bound to one pool (collection), with the pool's field settings.

    Takes the arguments of :class:`~sessionlib.connect.MongoConnectInterface`.
    """

    def switch_collection(self, collection: str) -> None:
        """Bind this object to another pool (collection) of the same database and client.

        Raises:
            ConfigurationError: *collection* is not a valid collection name.
            NotConnectedError: the pool is not connected.
        """
        try:
            check_collection_name(collection, self.db_name)
        except ConfigurationError as exc:
            raise adapt(exc) from None
        self._require_connection()
        self._bind(collection)
        self._watch()

    def with_collection(self, collection: str, db: str | None = None) -> Self:
        """Return a copy of this pool bound to another collection of the same client.

        *db* names another database of the same server; default: this pool's.

        No I/O: the copy shares the client, its connection pool and the
        server's clock, so many pools cost one set of connections. Closing
        the copy leaves the shared client open; close the original to close it.

        Raises:
            ConfigurationError: a name is not valid.
            NotConnectedError: the pool is not connected.
        """
        try:
            database = self.db_name if db is None else check_database_name(db)
            check_collection_name(collection, database)
        except ConfigurationError as exc:
            raise adapt(exc) from None
        if self.options.metrics is not None:  # its telemetry starts at 0 (PoolMetrics.watch)
            self.options.metrics.watch(database, collection)
        return self.bound_to(database, collection)

    def bound_to(self, database: str, collection: str) -> Self:
        """:meth:`with_collection` without the name checks, for sessionpool's own collections.

        Raises:
            NotConnectedError: the pool is not connected.
        """
        connector = self._require_connection()
        other = copy.copy(self)
        other.db_name = database
        other.collection_name = collection
        other.attach(connector)
        return other
