"""The boundary with the MongoDB driver.

This is the only module that handles ``pymongo.errors`` and knows how the
supported clients differ:

* :class:`pymongo.AsyncMongoClient` (the default, created by :func:`new_client`),
* Motor's ``AsyncIOMotorClient`` (existing workers pass one in),
* ``mongomock_motor.AsyncMongoMockClient`` (fast unit tests).

:func:`run` bounds one operation by its timeout, retries it after a lost
connection when that is safe, and translates driver errors into the
:mod:`sessionlib.exceptions` tree with the original as ``__cause__``.
The :class:`Client`, :class:`Database` and :class:`Collection` protocols
name what sessionlib calls on the driver's objects, and nothing more.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

import bson.errors
import pymongo.errors
from pymongo import AsyncMongoClient

from . import isphere
from .backoff import RECONNECT
from .clock import ClockSample, as_utc
from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DuplicateSessionError,
    InvalidPayloadError,
    OperationTimeoutError,
    PermissionDeniedError,
    ServerUnavailableError,
    SessionPoolError,
)
from .logger import redact_url

__all__ = [
    "Client",
    "Collection",
    "Cursor",
    "Database",
    "close_client",
    "decrypts",
    "is_in_process",
    "new_client",
    "read_server_time",
    "resolve",
    "run",
    "translate",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Server error codes that mean "who you are / what you may do", not "try again".
_PERMISSION_CODES = frozenset({11, 13, 18})  # UserNotFound, Unauthorized, AuthenticationFailed


class Cursor(Protocol):
    """What sessionlib calls on a cursor."""

    def to_list(self, length: int | None = None) -> Awaitable[list[dict[str, Any]]]: ...


class Collection(Protocol):
    """What sessionlib calls on a collection (PyMongo async, Motor or mongomock-motor)."""

    @property
    def name(self) -> str: ...

    def with_options(self, *, read_preference: Any = ...) -> Collection: ...
    def find(self, *args: Any, **kwargs: Any) -> Cursor: ...
    def find_one(self, *args: Any, **kwargs: Any) -> Awaitable[dict[str, Any] | None]: ...
    def find_one_and_update(
        self, *args: Any, **kwargs: Any
    ) -> Awaitable[dict[str, Any] | None]: ...
    def aggregate(self, *args: Any, **kwargs: Any) -> Any: ...
    def count_documents(self, *args: Any, **kwargs: Any) -> Awaitable[int]: ...
    def insert_one(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def insert_many(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def update_one(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def update_many(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def bulk_write(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def delete_one(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def delete_many(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
    def index_information(self, *args: Any, **kwargs: Any) -> Awaitable[Mapping[str, Any]]: ...
    def create_index(self, *args: Any, **kwargs: Any) -> Awaitable[str]: ...
    def drop_index(self, *args: Any, **kwargs: Any) -> Awaitable[None]: ...


class Database(Protocol):
    """What sessionlib calls on a database."""

    @property
    def name(self) -> str: ...

    def __getitem__(self, name: str) -> Collection: ...
    def with_options(self, *, read_preference: Any = ..., write_concern: Any = ...) -> Database: ...
    def list_collection_names(self, *args: Any, **kwargs: Any) -> Awaitable[list[str]]: ...
    def command(self, *args: Any, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...


class Client(Protocol):
    """What sessionlib calls on a client."""

    @property
    def admin(self) -> Database: ...

    def get_database(self, *args: Any, **kwargs: Any) -> Database: ...
    def list_database_names(self, *args: Any, **kwargs: Any) -> Awaitable[list[str]]: ...
    def close(self) -> Any: ...


def translate(exc: BaseException, operation: str) -> SessionPoolError:
    """Return the sessionlib error for a driver error raised by *operation*.

    The caller raises it ``from exc``. Messages come from the driver, which
    never includes passwords in them.
    """
    message = f"{operation} failed: {exc}"
    if isinstance(exc, pymongo.errors.BulkWriteError):
        # Say which document of the batch the server refused, and why.
        first = (exc.details.get("writeErrors") or [{}])[0]
        duplicate = first.get("code") == 11000
        error: DatabaseError = (DuplicateSessionError if duplicate else DatabaseError)(
            f"{operation} failed: {first.get('errmsg', exc)}"
        )
        index = first.get("index")
        error.index = index if isinstance(index, int) else None
        return error
    if isinstance(exc, pymongo.errors.DuplicateKeyError):
        return DuplicateSessionError(message)
    if isinstance(
        exc,
        pymongo.errors.ExecutionTimeout
        | pymongo.errors.NetworkTimeout
        | pymongo.errors.WTimeoutError
        | pymongo.errors.WaitQueueTimeoutError,
    ):
        return OperationTimeoutError(message)
    if isinstance(exc, pymongo.errors.ConnectionFailure):
        return ServerUnavailableError(message)
    if isinstance(exc, pymongo.errors.OperationFailure) and exc.code in _PERMISSION_CODES:
        return PermissionDeniedError(message)
    if isinstance(exc, bson.errors.InvalidDocument | pymongo.errors.DocumentTooLarge):
        return InvalidPayloadError(message)
    if isinstance(exc, OverflowError):  # BSON encoding: an int beyond 64 bits
        return InvalidPayloadError(message)
    if isinstance(exc, pymongo.errors.ConfigurationError | pymongo.errors.InvalidName):
        return ConfigurationError(message)
    return DatabaseError(message)


def _may_retry(exc: pymongo.errors.AutoReconnect, retry: bool) -> bool:
    # Server selection failed: the command was never sent, so any operation
    # may be attempted again. Otherwise the connection broke with the command
    # possibly applied, and only operations marked safe are attempted again.
    return retry or isinstance(exc, pymongo.errors.ServerSelectionTimeoutError)


async def run(
    operation: str,
    call: Callable[[], Awaitable[T]],
    *,
    time_limit: float,
    max_reconnect: int,
    retry: bool,
    connecting: bool = False,
) -> T:
    """Await ``call()``, each attempt within *time_limit* seconds, and translate its errors.

    When the server cannot be reached, or the connection is lost and *retry*
    is true, the call is attempted again, at most *max_reconnect* times, with
    :data:`~sessionlib.backoff.RECONNECT` backoff. So the call takes at most
    ``(max_reconnect + 1) * time_limit`` seconds plus the pauses (each at most
    2 s). *retry* must be false for writes that could be applied twice: the
    driver's retryable writes already retry those exactly once where the
    server supports it. *connecting* marks the ``connect()`` ping, which the
    seed reported with its own error classes (see :mod:`sessionlib.isphere`).

    Raises:
        OperationTimeoutError: an attempt took longer than *time_limit*.
        ServerUnavailableError: the server stayed unreachable.
        DatabaseError: any other driver error.
    """
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(time_limit):
                return await call()
        except TimeoutError as exc:
            error: SessionPoolError = OperationTimeoutError(
                f"{operation} did not finish within {time_limit:g} s"
            )
            raise isphere.adapt(error, connecting=connecting) from exc
        except pymongo.errors.AutoReconnect as exc:
            if attempt >= max_reconnect or not _may_retry(exc, retry):
                raise isphere.adapt(translate(exc, operation), connecting=connecting) from exc
            pause = RECONNECT.pause(attempt)
            attempt += 1
            log.debug(
                "%s: server unreachable (%s); reconnect attempt %d/%d in %.2f s",
                operation,
                exc,
                attempt,
                max_reconnect,
                pause,
            )
            await asyncio.sleep(pause)
        except (pymongo.errors.PyMongoError, bson.errors.BSONError, OverflowError) as exc:
            raise isphere.adapt(translate(exc, operation), connecting=connecting) from exc


def new_client(
    mongo_url: str, *, timeout: float, app_name: str, options: Mapping[str, Any]
) -> AsyncMongoClient[dict[str, Any]]:
    """Create the default client: PyMongo's async client, timezone-aware, no I/O yet.

    Server selection gives up at half of *timeout*, so an unreachable server
    is reported as :class:`ServerUnavailableError` (and attempted again)
    rather than hitting the operation's deadline, which is left for a server
    that accepts the command and does not answer.

    Raises:
        ConfigurationError: the URL or an option is invalid (the message has
            the password removed).
    """
    settings: dict[str, Any] = {
        "tz_aware": True,
        "appname": app_name,
        "retryWrites": True,
        "serverSelectionTimeoutMS": max(1, int(timeout * 500)),
        "connectTimeoutMS": max(1, int(min(timeout * 0.5, 20.0) * 1000)),
        **options,
    }
    try:
        # PyMongo only warns about invalid URL options and then ignores them;
        # a pool silently running without its write concern is worse than an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return AsyncMongoClient(mongo_url, **settings)
    except (pymongo.errors.PyMongoError, UserWarning) as exc:
        # The driver may quote the URL: say which one without its password, and
        # drop the cause, whose text may hold the password.
        raise isphere.adapt(
            ConfigurationError(
                f"invalid MongoDB connection {redact_url(mongo_url)}: "
                f"{redact_url(str(exc).replace(mongo_url, redact_url(mongo_url)))}"
            )
        ) from None
    except (TypeError, ValueError) as exc:
        raise isphere.adapt(ConfigurationError(f"invalid MongoDB client option: {exc}")) from None


def is_in_process(client: object) -> bool:
    """Whether *client* is mongomock-motor's: no server, no query planner, no ``hello``."""
    # mongomock-motor's client poses as Motor's: look at every class it derives from.
    return any(cls.__module__.startswith("mongomock") for cls in type(client).__mro__)


def decrypts(client: object) -> bool:
    """Whether *client* decrypts what it reads (built with ``auto_encryption_opts``)."""
    options = getattr(client, "options", None)
    return getattr(options, "auto_encryption_opts", None) is not None


async def read_server_time(
    client: Client,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> ClockSample | None:
    """Ask the server for its clock with one ``hello``; ``None`` where it has none to give.

    An in-process client (mongomock) shares this process's clock, so there is
    nothing to measure. Call it through :func:`run`.
    """
    if is_in_process(client):
        return None
    sent = monotonic()
    reply = await client.admin.command("hello")
    received = monotonic()
    local_time = reply.get("localTime")
    if not isinstance(local_time, datetime):
        return None
    return ClockSample(as_utc(local_time), sent, received, wall())


async def resolve(value: Any) -> Any:
    """Return *value*, awaited if the client returned an awaitable.

    PyMongo's async ``aggregate`` returns a coroutine; Motor's and
    mongomock-motor's return the cursor itself.
    """
    if inspect.isawaitable(value):
        return await value
    return value


async def close_client(client: Client) -> None:
    """Close *client*, whichever kind it is (``close`` is async only in PyMongo's client)."""
    await resolve(client.close())
