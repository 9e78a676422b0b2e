"""Field names and defaults of a session pool (the seed's ``MongoFields``).

Subclasses may override any property, as users of the seed library do, and
every query reads the names through these properties.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError
from .validation import delay_to_timedelta

__all__ = [
    "DEFAULT_BLOCK_TIME",
    "DEFAULT_LOCK_TIME",
    "DEFAULT_NEXT_USE_DELAY",
    "LockKind",
    "MongoFields",
]

DEFAULT_NEXT_USE_DELAY = 3
"""Seconds a session stays unavailable right after a hand-out or a success."""

DEFAULT_LOCK_TIME = timedelta(minutes=30)
"""Default period of :meth:`~sessionlib.client.MongoSessions.session_lock` (a temporary ban)."""

DEFAULT_BLOCK_TIME = timedelta(days=1)
"""Default period of :meth:`~sessionlib.client.MongoSessions.session_block` (a long ban)."""


class LockKind:
    """Values of the ``lock_kind`` field: why a session is unavailable until ``next_use``.

    Documents written by the seed library have no ``lock_kind``; a future
    ``next_use`` without one counts as :attr:`LOCKED`.
    """

    IN_USE = "in_use"
    """Handed out (or just reported successful) and cooling down for ``next_use_delay``."""
    LOCKED = "locked"
    """Temporarily locked by ``session_lock``."""
    BLOCKED = "blocked"
    """Locked for long by ``session_block``."""

    ALL = (IN_USE, LOCKED, BLOCKED)


class MongoFields:
    """Names of the document fields and the pool's default periods, filter and projection.

    Args:
        next_use_delay: Seconds a session is held after ``get_session`` and
            ``session_success`` when no delay is passed.
        lock_time: Default period of ``session_lock``.
        block_time: Default period of ``session_block``.
        default_filter: Filter every selection starts from; default
            ``{"active": {"$ne": False}}``.
        projection: Fields returned by ``get_session``/``get_sessions``;
            ``None`` returns whole documents.

    Raises:
        ConfigurationError: a period or delay is negative or not a number.
    """

    def __init__(
        self,
        *,
        next_use_delay: float = DEFAULT_NEXT_USE_DELAY,
        lock_time: timedelta = DEFAULT_LOCK_TIME,
        block_time: timedelta = DEFAULT_BLOCK_TIME,
        default_filter: dict[str, Any] | None = None,
        projection: dict[str, Any] | None = None,
    ) -> None:
        try:
            delay_to_timedelta(next_use_delay, DEFAULT_NEXT_USE_DELAY)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        for name, value in (("lock_time", lock_time), ("block_time", block_time)):
            if not isinstance(value, timedelta) or value < timedelta():
                raise ConfigurationError(f"{name} must be a non-negative timedelta, not {value!r}")
        self._next_use_delay = next_use_delay
        self._lock_time = lock_time
        self._block_time = block_time
        self._default_filter: dict[str, Any] | None = deepcopy(default_filter)
        self._projection: dict[str, Any] | None = deepcopy(projection)

    @property
    def next_use(self) -> str:
        """Name of the field holding the instant before which the session is not handed out."""
        return "next_use"

    @property
    def active(self) -> str:
        """Name of the field that is ``False`` for a session disabled for good."""
        return "active"

    @property
    def session(self) -> str:
        """Name of the field holding the payload workers need (cookies, token...)."""
        return "session"

    @property
    def last_use(self) -> str:
        """Name of the field holding when the session was last handed out."""
        return "last_use"

    @property
    def count_use(self) -> str:
        """Name of the hand-out counter field."""
        return "count_use"

    @property
    def count_success(self) -> str:
        """Name of the success counter field."""
        return "count_success"

    @property
    def created(self) -> str:
        """Name of the insertion time field."""
        return "created"

    @property
    def lock_kind(self) -> str:
        """Name of the field recording why the session is unavailable (see :class:`LockKind`)."""
        return "lock_kind"

    @property
    def locked_at(self) -> str:
        """Name of the field recording when the current lock was set."""
        return "locked_at"

    @property
    def block_time(self) -> timedelta:
        """Default period of ``session_block``."""
        return self._block_time

    @property
    def lock_time(self) -> timedelta:
        """Default period of ``session_lock``."""
        return self._lock_time

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after a hand-out or success."""
        return self._next_use_delay

    @property
    def default_filter(self) -> dict[str, Any]:
        """Filter every selection starts from (settable); default: ``active`` is not ``False``."""
        if self._default_filter is None:
            return {self.active: {"$ne": False}}
        return self._default_filter

    @default_filter.setter
    def default_filter(self, value: dict[str, Any] | None) -> None:
        if value is not None and not isinstance(value, dict):
            raise ConfigurationError(f"default_filter must be a dict, not {type(value).__name__}")
        self._default_filter = value

    @property
    def projection(self) -> dict[str, Any] | None:
        """Fields returned by selections (settable); ``None`` returns whole documents."""
        return self._projection

    @projection.setter
    def projection(self, value: dict[str, Any] | None) -> None:
        if value is not None and not isinstance(value, dict):
            raise ConfigurationError(f"projection must be a dict, not {type(value).__name__}")
        self._projection = value
