"""Thin wrappers over the collection's driver methods (the seed's ``MongoOperations``).

Each wrapper passes its keyword arguments to the driver unchanged and is
decorated with :func:`timeout`, which bounds it by the pool's timeout,
translates driver errors, and counts them in the pool's metrics if it has
any. Higher layers call only these wrappers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from pymongo.results import (
    BulkWriteResult,
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)

from . import driver
from .connect import MongoConnectInterface
from .exceptions import SessionPoolError

__all__ = ["MongoOperations", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")
Self_ = TypeVar("Self_", bound="MongoOperations")

# Safe to attempt again after a lost connection: they change nothing, or
# setting the same thing twice gives the same result.
_RETRYABLE = frozenset(
    {
        "aggregate",
        "count_documents",
        "count_stats",
        "create_index",
        "drop_index",
        "find",
        "find_one",
        "index_information",
    }
)


def timeout(
    func: Callable[Concatenate[Self_, P], Awaitable[R]],
) -> Callable[Concatenate[Self_, P], Awaitable[R]]:
    """Bound a driver call by the pool's timeout and translate its errors.

    Reads are retried after a lost connection, up to ``max_allowed_reconnect``
    times with backoff; writes are not (see :func:`sessionlib.driver.run`).

    Raises:
        NotConnectedError: the pool is not connected.
        OperationTimeoutError: the call exceeded the pool's timeout.
        ServerUnavailableError: the server could not be reached.
        DatabaseError: any other driver error (its ``__cause__`` is the driver's).
    """
    name = func.__name__

    @functools.wraps(func)
    async def wrapper(self: Self_, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._require_connection()
        options = self.options
        try:
            return await driver.run(
                name,
                lambda: func(self, *args, **kwargs),
                time_limit=options.timeout,
                max_reconnect=options.max_allowed_reconnect,
                retry=name in _RETRYABLE,
            )
        except SessionPoolError as exc:
            if options.metrics is not None:  # a worker's telemetry (see sessionlib.metrics)
                options.metrics.failed(self.db_name, self.collection_name, exc)
            raise

    return wrapper


class MongoOperations(MongoConnectInterface):
    """The driver operations a pool uses, on its bound collection ``self.sessions``."""

    @timeout
    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        """Count documents (``Collection.count_documents``)."""
        count: int = await self.sessions.count_documents(*args, **kwargs)
        return count

    @timeout
    async def update_one(self, *args: Any, **kwargs: Any) -> UpdateResult:
        """Update one document (``Collection.update_one``)."""
        result: UpdateResult = await self.sessions.update_one(*args, **kwargs)
        return result

    @timeout
    async def update_many(self, *args: Any, **kwargs: Any) -> UpdateResult:
        """Update all matching documents (``Collection.update_many``)."""
        result: UpdateResult = await self.sessions.update_many(*args, **kwargs)
        return result

    @timeout
    async def bulk_write(self, *args: Any, **kwargs: Any) -> BulkWriteResult:
        """Send several writes in one command (``Collection.bulk_write``)."""
        result: BulkWriteResult = await self.sessions.bulk_write(*args, **kwargs)
        return result

    @timeout
    async def delete_many(self, *args: Any, **kwargs: Any) -> DeleteResult:
        """Delete all matching documents (``Collection.delete_many``)."""
        result: DeleteResult = await self.sessions.delete_many(*args, **kwargs)
        return result

    @timeout
    async def delete_one(self, *args: Any, **kwargs: Any) -> DeleteResult:
        """Delete one document (``Collection.delete_one``)."""
        result: DeleteResult = await self.sessions.delete_one(*args, **kwargs)
        return result

    @timeout
    async def insert_one(self, *args: Any, **kwargs: Any) -> InsertOneResult:
        """Insert one document (``Collection.insert_one``)."""
        result: InsertOneResult = await self.sessions.insert_one(*args, **kwargs)
        return result

    @timeout
    async def insert_many(self, *args: Any, **kwargs: Any) -> InsertManyResult:
        """Insert documents (``Collection.insert_many``)."""
        result: InsertManyResult = await self.sessions.insert_many(*args, **kwargs)
        return result

    @timeout
    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Atomically update and return one document (one ``findAndModify`` command)."""
        document: dict[str, Any] | None = await self.sessions.find_one_and_update(*args, **kwargs)
        return document

    @timeout
    async def index_information(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Describe the collection's indexes (``Collection.index_information``)."""
        info: dict[str, Any] = await self.sessions.index_information(*args, **kwargs)
        return info

    @timeout
    async def create_index(self, *args: Any, **kwargs: Any) -> str:
        """Create an index, if missing; return its name (``Collection.create_index``)."""
        name: str = await self.sessions.create_index(*args, **kwargs)
        return name

    @timeout
    async def drop_index(self, *args: Any, **kwargs: Any) -> None:
        """Drop an index (``Collection.drop_index``)."""
        await self.sessions.drop_index(*args, **kwargs)

    @timeout
    async def find(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Return all matching documents as a list (``Collection.find``)."""
        assert self.stats_sessions is not None  # bound by connect()
        return await self.stats_sessions.find(*args, **kwargs).to_list(None)

    @timeout
    async def aggregate(
        self, /, pipeline: list[dict[str, Any]], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Run an aggregation pipeline and return its results as a list."""
        assert self.stats_sessions is not None  # bound by connect()
        cursor = await driver.resolve(self.stats_sessions.aggregate(pipeline, **kwargs))
        documents: list[dict[str, Any]] = await cursor.to_list(None)
        return documents

    @timeout
    async def count_stats(self, *args: Any, **kwargs: Any) -> int:
        """Count documents on the statistics read preference."""
        assert self.stats_sessions is not None  # bound by connect()
        count: int = await self.stats_sessions.count_documents(*args, **kwargs)
        return count

    @timeout
    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Return one matching document, or ``None`` (``Collection.find_one``)."""
        assert self.stats_sessions is not None  # bound by connect()
        document: dict[str, Any] | None = await self.stats_sessions.find_one(*args, **kwargs)
        return document
