"""The boundary with the MongoDB driver.

This is the only module that handles ``pymongo.errors`` and knows how the
supported clients differ:

* :class:`pymongo.AsyncMongoClient` (the default, created by :func:`new_client`),
* Motor's ``AsyncIOMotorClient`` (existing workers pass one in),
* ``mongomock_motor.AsyncMongoMockClient`` (fast unit tests).

:func:`run` bounds one operation by its timeout, retries it after a lost
connection when that is safe, and translates driver errors into the
:mod:`sessionlib.exceptions` tree with the original as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import bson.errors
import pymongo.errors
from pymongo import AsyncMongoClient

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

__all__ = ["close_client", "new_client", "resolve", "run", "translate"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Server error codes that mean "who you are / what you may do", not "try again".
_PERMISSION_CODES = frozenset({11, 13, 18})  # UserNotFound, Unauthorized, AuthenticationFailed

BACKOFF_BASE = 0.1
"""Seconds before the first reconnect attempt; doubles on each attempt."""
BACKOFF_CAP = 2.0
"""The longest pause between two reconnect attempts, in seconds."""


def translate(exc: BaseException, operation: str) -> SessionPoolError:
    """Return the sessionlib error for a driver error raised by *operation*.

    The caller raises it ``from exc``. Messages come from the driver, which
    never includes passwords in them.
    """
    message = f"{operation} failed: {exc}"
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
    if isinstance(exc, pymongo.errors.ConfigurationError):
        return ConfigurationError(message)
    return DatabaseError(message)


def _backoff(attempt: int) -> float:
    # Full jitter keeps a fleet of workers from reconnecting in lockstep.
    return random.uniform(0.5, 1.0) * min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)


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
) -> T:
    """Await ``call()``, each attempt within *time_limit* seconds, and translate its errors.

    When the server cannot be reached, or the connection is lost and *retry*
    is true, the call is attempted again, at most *max_reconnect* times, with
    exponential backoff and jitter. So the call takes at most
    ``(max_reconnect + 1) * time_limit`` seconds plus the pauses (each at most
    :data:`BACKOFF_CAP`). *retry* must be false for writes that could be
    applied twice: the driver's retryable writes already retry those exactly
    once where the server supports it.

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
            raise OperationTimeoutError(
                f"{operation} did not finish within {time_limit:g} s"
            ) from exc
        except pymongo.errors.AutoReconnect as exc:
            if attempt >= max_reconnect or not _may_retry(exc, retry):
                raise translate(exc, operation) from exc
            pause = _backoff(attempt)
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
            raise translate(exc, operation) from exc


def new_client(
    mongo_url: str, *, timeout: float, app_name: str, **options: Any
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
        raise ConfigurationError(
            f"invalid MongoDB connection {redact_url(mongo_url)}: "
            f"{str(exc).replace(mongo_url, redact_url(mongo_url))}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid MongoDB client option: {exc}") from None


async def resolve(value: Any) -> Any:
    """Return *value*, awaited if the client returned an awaitable.

    PyMongo's async ``aggregate`` returns a coroutine; Motor's and
    mongomock-motor's return the cursor itself.
    """
    if inspect.isawaitable(value):
        return await value
    return value


async def close_client(client: Any) -> None:
    """Close *client*, whichever kind it is (``close`` is async only in PyMongo's client)."""
    await resolve(client.close())
