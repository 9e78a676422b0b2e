"""The exceptions sessionlib raises.

Every error the library raises derives from one base class, so a worker can
catch them all with ``except SessionPoolError``::

    SessionPoolError
    ├── InvalidInputError (also ValueError)       bad arguments; nothing was written
    │   ├── InvalidSessionError                   session is not a dict with an "_id"
    │   ├── InvalidPeriodError                    period/delay has an unknown key or a bad value
    │   └── InvalidPayloadError                   document/payload is not a dict or is unsafe
    ├── ConfigurationError (also ValueError)      bad constructor arguments
    │   └── EncryptionKeyError                    a missing, unreadable or wrong encryption key
    ├── NotConnectedError                         an operation before connect() or after close()
    ├── StaleLeaseError                           a lease-checked report from a holder whose
    │                                             session was handed out again (nothing written)
    ├── NoSessionAvailableError                   lease(): no session became free in time
    │                                             (``next_available_at`` says when one will)
    └── DatabaseError                             the server or the driver failed
        ├── ServerUnavailableError                no server reachable (after reconnect attempts)
        ├── OperationTimeoutError (also TimeoutError)  the operation exceeded its timeout
        ├── DuplicateSessionError                 a document with this _id already exists
        ├── PermissionDeniedError                 authentication or authorization failed
        └── ServerClockError                      the server's clock is implausible (year 1,
                                                  9999, 1970...): holds cannot be decided on it

Driver errors (``pymongo.errors.*``) are translated in exactly one place,
:func:`sessionlib.operations.timeout`, and the original is kept as
``__cause__``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "DuplicateSessionError",
    "EncryptionKeyError",
    "InvalidInputError",
    "InvalidPayloadError",
    "InvalidPeriodError",
    "InvalidSessionError",
    "NoSessionAvailableError",
    "NotConnectedError",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "ServerClockError",
    "ServerUnavailableError",
    "SessionPoolError",
    "StaleLeaseError",
]


class SessionPoolError(Exception):
    """Base class of every error raised by sessionlib."""


class InvalidInputError(SessionPoolError, ValueError):
    """An argument is invalid; the operation was refused before anything was written."""


class InvalidSessionError(InvalidInputError):
    """The session argument is not a dict holding an ``_id``."""


class InvalidPeriodError(InvalidInputError):
    """A lock period or delay has an unknown key, or a negative or non-finite value."""


class InvalidPayloadError(InvalidInputError):
    """A document or update payload is not a dict, is empty, or would be unsafe to apply."""


class ConfigurationError(SessionPoolError, ValueError):
    """The pool was configured with invalid arguments."""


class EncryptionKeyError(ConfigurationError):
    """The encryption key is missing, unreadable or wrong (see :mod:`sessionlib.encryption`).

    Raised at ``connect()``, naming the key file (or KMS provider) and the
    data key; nothing has been written.
    """


class NotConnectedError(SessionPoolError):
    """An operation was attempted before ``connect()`` or after ``close()``."""


class StaleLeaseError(SessionPoolError):
    """A lease-checked report was refused: the session is no longer held under that lease.

    It was handed out to another worker since (or deleted); nothing was written.
    """

    def __init__(self, message: str, *, session_id: Any = None, lease: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.lease = lease


class NoSessionAvailableError(SessionPoolError):
    """No session was available (within the wait, if any).

    ``next_available_at`` is when the earliest locked session frees up, or
    ``None`` when no session is locked either (the pool is empty or all
    inactive).
    """

    def __init__(self, message: str, *, next_available_at: datetime | None = None) -> None:
        super().__init__(message)
        self.next_available_at = next_available_at


class DatabaseError(SessionPoolError):
    """The MongoDB server or driver reported an error; the driver's error is ``__cause__``.

    Attributes:
        index: For a write of several documents, the position of the one the
            server refused, when it says; otherwise ``None``.
    """

    index: int | None = None


class ServerUnavailableError(DatabaseError):
    """No MongoDB server could be reached, after the allowed reconnect attempts."""


class OperationTimeoutError(DatabaseError, TimeoutError):
    """An operation did not finish within the configured timeout."""


class DuplicateSessionError(DatabaseError):
    """A session with the same ``_id`` (or unique key) already exists."""


class PermissionDeniedError(DatabaseError):
    """The server refused the credentials or the operation (authentication/authorization)."""


class ServerClockError(DatabaseError):
    """The server's clock reads an instant sessionlib cannot decide holds on.

    sessionlib decides every hold on the MongoDB server's clock (see
    :mod:`sessionlib.clock`); a server whose ``localTime`` is more than
    :data:`~sessionlib.clock.PLAUSIBLE_OFFSET` away from this machine's clock
    is refused at ``connect()``, and its later readings are ignored.
    """
