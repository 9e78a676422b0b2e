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
        "Client",
        "ConfigurationError",
        "ConnectionSettings",
        "DatabaseError",
        "Deactivate",
        "DuplicateSessionError",
        "Encryption",
        "EncryptionKeyError",
        "EscalationPolicy",
        "FOLDED_SCOPE",
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
        "RELEASED_KINDS",
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
    ] == sorted(sessionlib.__all__)


def test_every_exception_derives_from_the_one_base() -> None:
    assert 16 == len(exceptions.__all__)
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.SessionPoolError), name
        assert getattr(sessionlib, name) is getattr(exceptions, name)


def test_every_setting_is_declared_alike_at_both_doors() -> None:
    """The constructor, the typed settings of the store's door and PoolOptions name the same."""
    import dataclasses
    import inspect

    from sessionlib import ConnectionSettings, MongoSessions, PoolOptions, PoolSettings

    parameters = inspect.signature(MongoSessions.__init__).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    typed = set(ConnectionSettings.__optional_keys__) | set(PoolSettings.__optional_keys__)
    assert keywords - {"client", "allow_reconnect"} == typed
    assert not set(ConnectionSettings.__optional_keys__) & set(PoolSettings.__optional_keys__)
    options = {field.name for field in dataclasses.fields(PoolOptions)}
    assert typed - {"legacy_timezone"} | {"stored_time"} == options
