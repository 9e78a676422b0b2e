"""The public names, pinned: removing or renaming one is a breaking change."""

from __future__ import annotations

import sessionlib
from sessionlib import exceptions


def test_public_names() -> None:
    assert [
        "Block",
        "BreakerState",
        "Budget",
        "CircuitBreaker",
        "ConfigurationError",
        "DatabaseError",
        "Deactivate",
        "DuplicateSessionError",
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
        "OperationTimeoutError",
        "PermissionDeniedError",
        "PoolMetrics",
        "PoolOptions",
        "PoolStatistics",
        "Release",
        "Report",
        "ServerUnavailableError",
        "SessionPoolError",
        "SessionStore",
        "StaleLeaseError",
        "State",
        "Target",
        "__version__",
        "utcnow",
    ] == sorted(sessionlib.__all__)


def test_every_exception_derives_from_the_one_base() -> None:
    assert 14 == len(exceptions.__all__)
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.SessionPoolError), name
        assert getattr(sessionlib, name) is getattr(exceptions, name)
