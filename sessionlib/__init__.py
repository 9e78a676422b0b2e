"""sessionlib: atomic, least-recently-used session pools in MongoDB.

A drop-in replacement for the ``mongo_client`` package: replace the package
name and existing worker code keeps working::

    from sessionlib import MongoSessions

    mongo = await MongoSessions(MONGO_URL, db="pools", collection="telegram").connect()
    session = await mongo.get_session()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .breaker import CircuitBreaker
from .budgets import Budget
from .client import MongoSessions
from .clock import utcnow
from .core import PoolCore
from .discovery import PoolKey
from .driver import Client
from .encryption import Encryption, create_data_key, create_key_file, rotate_master_key
from .escalation import EscalationPolicy
from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DuplicateSessionError,
    EncryptionKeyError,
    InvalidInputError,
    InvalidPayloadError,
    InvalidPeriodError,
    InvalidSessionError,
    NoSessionAvailableError,
    NotConnectedError,
    OperationTimeoutError,
    PermissionDeniedError,
    ServerClockError,
    ServerUnavailableError,
    SessionPoolError,
    StaleLeaseError,
)
from .expiry import RELEASED_KINDS
from .lease import Block, Deactivate, Lease, Lock, Release, Report
from .logger import redact_url
from .maintenance import encrypt_pool
from .metadata import BreakerState, Target
from .metrics import PoolMetrics
from .now import Now
from .options import ConnectionSettings, PoolOptions, PoolSettings, StoreSettings
from .scopes import FOLDED as FOLDED_SCOPE
from .states import LockKind, State
from .stats import PoolStatistics
from .store import SessionStore
from .storedtime import zone_of
from .validation import check_database_name

try:
    __version__ = version("sessionpool")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "FOLDED_SCOPE",
    "RELEASED_KINDS",
    "Block",
    "BreakerState",
    "Budget",
    "CircuitBreaker",
    "Client",
    "ConfigurationError",
    "ConnectionSettings",
    "DatabaseError",
    "Deactivate",
    "DuplicateSessionError",
    "Encryption",
    "EncryptionKeyError",
    "EscalationPolicy",
    "InvalidInputError",
    "InvalidPayloadError",
    "InvalidPeriodError",
    "InvalidSessionError",
    "Lease",
    "Lock",
    "LockKind",
    "MongoSessions",
    "NoSessionAvailableError",
    "NotConnectedError",
    "Now",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "PoolCore",
    "PoolKey",
    "PoolMetrics",
    "PoolOptions",
    "PoolSettings",
    "PoolStatistics",
    "Release",
    "Report",
    "ServerClockError",
    "ServerUnavailableError",
    "SessionPoolError",
    "SessionStore",
    "StaleLeaseError",
    "State",
    "StoreSettings",
    "Target",
    "__version__",
    "check_database_name",
    "create_data_key",
    "create_key_file",
    "encrypt_pool",
    "redact_url",
    "rotate_master_key",
    "utcnow",
    "zone_of",
]
