"""The settings of a pool, validated once and frozen.

:class:`~sessionlib.client.MongoSessions` takes its settings as keyword
arguments, builds one :class:`PoolOptions` and passes it down; nothing below
reads a keyword argument again. The few settings the seed lets users change on
a live pool (``default_filter``, ``projection``) replace the options object
with a validated copy.
"""

from __future__ import annotations

import asyncio
import difflib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

from .breaker import CircuitBreaker
from .budgets import Budget, check_budgets
from .encryption import Encryption
from .escalation import EscalationPolicy
from .exceptions import ConfigurationError
from .storedtime import StoredTime
from .validation import MAX_PERIOD, check_mapping

if TYPE_CHECKING:
    from pymongo import WriteConcern

    # PyMongo's own annotations name read preferences by this class.
    from pymongo.read_preferences import _ServerMode

    from .metrics import PoolMetrics

__all__ = [
    "DEFAULT_BLOCK_TIME",
    "DEFAULT_LOCK_TIME",
    "DEFAULT_MAX_ALLOWED_RECONNECT",
    "DEFAULT_NEXT_USE_DELAY",
    "DEFAULT_TIMEOUT",
    "ConnectionSettings",
    "PoolOptions",
    "PoolSettings",
    "StoreSettings",
    "check_settings",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds one attempt of an operation may take."""

DEFAULT_MAX_ALLOWED_RECONNECT = 3
"""Reconnect attempts after a lost connection, per operation and on ``connect()``."""

DEFAULT_NEXT_USE_DELAY = 3
"""Seconds a session stays unavailable right after a hand-out or a success."""

DEFAULT_LOCK_TIME = timedelta(minutes=30)
"""Default period of ``session_lock`` (a temporary ban)."""

DEFAULT_BLOCK_TIME = timedelta(days=1)
"""Default period of ``session_block`` (a long ban)."""

Sleep = Callable[[float], Awaitable[None]]


class ConnectionSettings(TypedDict, total=False):
    """The settings of a connection, shared by every pool on it (see ``MongoSessions``)."""

    timeout: float
    max_allowed_reconnect: int
    write_concern: WriteConcern | None
    read_preference: _ServerMode | None
    stats_read_preference: _ServerMode | None
    app_name: str
    client_options: Mapping[str, Any] | None
    clock_sync_interval: float
    clock_skew_warning: float
    encryption: Encryption | None


class PoolSettings(TypedDict, total=False):
    """The settings of one pool beyond its connection's (see ``MongoSessions``).

    ``SessionStore.pool(db, collection, **settings)`` and the store's pool
    defaults take these keywords, so a misspelt one fails ``mypy --strict``;
    at run time the store refuses an unknown one with ``ConfigurationError``.
    """

    next_use_delay: float
    lock_time: timedelta
    block_time: timedelta
    default_filter: Mapping[str, Any] | None
    projection: Mapping[str, Any] | None
    fenced: bool
    escalation: EscalationPolicy | None
    clock: Callable[[], datetime] | None
    sleep: Sleep
    legacy_timezone: str | None
    budgets: Sequence[Budget] | None
    breaker: CircuitBreaker | None
    metrics: PoolMetrics | None


class StoreSettings(ConnectionSettings, PoolSettings, total=False):
    """What ``SessionStore.connect`` takes: the connection's settings and the pools' defaults."""


def check_settings(settings: Mapping[str, object], allowed: Any) -> None:
    """Refuse a setting that *allowed* (a ``TypedDict`` class) does not name.

    Raises:
        ConfigurationError: one is unknown; the message names the closest known one.
    """
    names = sorted(allowed.__required_keys__ | allowed.__optional_keys__)
    for name in settings:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"unknown setting {name!r}{hint}")


def _seconds(name: str, value: object, *, low: float, high: float, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < low or number > high or (number == low and not zero):
        bound = f"from {low:g}" if zero else f"above {low:g}"
        raise ConfigurationError(f"{name} must be {bound} to {high:g} seconds, not {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """Every setting of a pool; see :class:`~sessionlib.client.MongoSessions` for each.

    Raises:
        ConfigurationError: a setting has an invalid value.
    """

    timeout: float = DEFAULT_TIMEOUT
    max_allowed_reconnect: int = DEFAULT_MAX_ALLOWED_RECONNECT
    write_concern: WriteConcern | None = None
    read_preference: _ServerMode | None = None
    stats_read_preference: _ServerMode | None = None
    app_name: str = "sessionpool"
    client_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    next_use_delay: float = DEFAULT_NEXT_USE_DELAY
    lock_time: timedelta = DEFAULT_LOCK_TIME
    block_time: timedelta = DEFAULT_BLOCK_TIME
    default_filter: dict[str, Any] | None = None
    projection: dict[str, Any] | None = None
    fenced: bool = False
    escalation: EscalationPolicy | None = None
    clock: Callable[[], datetime] | None = None
    sleep: Sleep = asyncio.sleep
    stored_time: StoredTime = field(default_factory=StoredTime)
    clock_sync_interval: float = 60.0
    clock_skew_warning: float = 1.0
    budgets: tuple[Budget, ...] = ()
    breaker: CircuitBreaker | None = None
    metrics: PoolMetrics | None = None
    encryption: Encryption | None = None

    def __post_init__(self) -> None:
        _seconds("timeout", self.timeout, low=0, high=MAX_PERIOD.total_seconds())
        object.__setattr__(self, "timeout", float(self.timeout))
        reconnect = self.max_allowed_reconnect
        if (
            isinstance(reconnect, bool)
            or not isinstance(reconnect, int)
            or not 0 <= reconnect <= 100
        ):
            raise ConfigurationError(
                f"max_allowed_reconnect must be an int from 0 to 99, not {reconnect!r}"
            )
        if (
            not isinstance(self.app_name, str)
            or not self.app_name
            or len(self.app_name) > 128
            or self.app_name.startswith("$")
        ):
            raise ConfigurationError(
                f"app_name must be a short non-empty string, not {self.app_name!r}"
            )
        options = check_mapping("client_options", self.client_options) or {}
        object.__setattr__(self, "client_options", MappingProxyType(options))
        _seconds(
            "next_use_delay", self.next_use_delay, low=0, high=MAX_PERIOD.total_seconds(), zero=True
        )
        for name in ("lock_time", "block_time"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or not timedelta() <= value <= MAX_PERIOD:
                raise ConfigurationError(
                    f"{name} must be a timedelta from 0 to 100 years, not {value!r}"
                )
        object.__setattr__(
            self, "default_filter", check_mapping("default_filter", self.default_filter)
        )
        object.__setattr__(self, "projection", check_mapping("projection", self.projection))
        if not isinstance(self.fenced, bool):
            raise ConfigurationError(f"fenced must be True or False, not {self.fenced!r}")
        if self.escalation is not None and not isinstance(self.escalation, EscalationPolicy):
            raise ConfigurationError(
                f"escalation must be an EscalationPolicy, not {type(self.escalation).__name__}"
            )
        for name in ("clock", "sleep"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, not {value!r}")
        object.__setattr__(self, "budgets", check_budgets(self.budgets))
        if self.breaker is not None and not isinstance(self.breaker, CircuitBreaker):
            raise ConfigurationError(
                f"breaker must be a CircuitBreaker, not {type(self.breaker).__name__}"
            )
        if self.metrics is not None:
            from .metrics import PoolMetrics  # prometheus_client, only when asked for

            if not isinstance(self.metrics, PoolMetrics):
                raise ConfigurationError(
                    f"metrics must be a PoolMetrics, not {type(self.metrics).__name__}"
                )
        if self.encryption is not None and not isinstance(self.encryption, Encryption):
            raise ConfigurationError(
                f"encryption must be an Encryption, not {type(self.encryption).__name__}"
            )
        _seconds("clock_sync_interval", self.clock_sync_interval, low=0, high=86400)
        _seconds("clock_skew_warning", self.clock_skew_warning, low=0, high=86400)
