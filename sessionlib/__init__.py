"""sessionlib: atomic, least-recently-used session pools in MongoDB.

A drop-in replacement for the ``mongo_client`` package: replace the package
name and existing worker code keeps working::

    from sessionlib import MongoSessions

    mongo = await MongoSessions(MONGO_URL, db="pools", collection="telegram").connect()
    session = await mongo.get_session()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .client import MongoSessions
from .clock import utcnow
from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DuplicateSessionError,
    InvalidInputError,
    InvalidPayloadError,
    InvalidPeriodError,
    InvalidSessionError,
    NotConnectedError,
    OperationTimeoutError,
    PermissionDeniedError,
    ServerUnavailableError,
    SessionPoolError,
)
from .fields import LockKind
from .stats import PoolStatistics

try:
    __version__ = version("sessionpool")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "DuplicateSessionError",
    "InvalidInputError",
    "InvalidPayloadError",
    "InvalidPeriodError",
    "InvalidSessionError",
    "LockKind",
    "MongoSessions",
    "NotConnectedError",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "PoolStatistics",
    "ServerUnavailableError",
    "SessionPoolError",
    "__version__",
    "utcnow",
]
