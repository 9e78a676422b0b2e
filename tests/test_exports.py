"""The public names, pinned: removing or renaming one is a breaking change."""

from __future__ import annotations

import sessionlib
from sessionlib import exceptions


def test_public_names() -> None:
    assert [
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
    ] == sorted(sessionlib.__all__)


def test_every_exception_derives_from_the_one_base() -> None:
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.SessionPoolError), name
        assert getattr(sessionlib, name) is getattr(exceptions, name)
