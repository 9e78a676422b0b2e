"""Field names and defaults of a session pool (the seed's ``MongoFields``).

Subclasses may override any name property, as users of the seed library do,
and every query reads the names through these properties. The periods, the
filter and the projection come from the pool's
:class:`~sessionlib.options.PoolOptions`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError
from .options import (
    DEFAULT_BLOCK_TIME,
    DEFAULT_LOCK_TIME,
    DEFAULT_NEXT_USE_DELAY,
    PoolOptions,
)
from .states import LockKind

__all__ = [
    "DEFAULT_BLOCK_TIME",
    "DEFAULT_LOCK_TIME",
    "DEFAULT_NEXT_USE_DELAY",
    "LockKind",
    "MongoFields",
]


class MongoFields:
    """Names of the document fields and the pool's default periods, filter and projection.

    Args:
        options: The pool's settings; the defaults without.
    """

    _options: PoolOptions

    def __init__(self, options: PoolOptions | None = None) -> None:
        self._options = options or PoolOptions()

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
    def ready_at(self) -> str:
        """Name of the hand-out order key: when the session may next be handed out.

        See :mod:`sessionlib.indexes` for why it exists.
        """
        return "ready_at"

    @property
    def time_fields(self) -> tuple[str, ...]:
        """Names of the fields that hold instants."""
        return (self.last_use, self.next_use, self.created, self.locked_at, self.ready_at)

    @property
    def block_time(self) -> timedelta:
        """Default period of ``session_block``."""
        return self._options.block_time

    @property
    def lock_time(self) -> timedelta:
        """Default period of ``session_lock``."""
        return self._options.lock_time

    @property
    def next_use_delay(self) -> float:
        """Seconds a session is held right after a hand-out or success."""
        return self._options.next_use_delay

    @property
    def default_filter(self) -> dict[str, Any]:
        """Filter every selection starts from (settable); default: ``active`` is not ``False``."""
        value = self._options.default_filter
        if value is None:
            return {self.active: {"$ne": False}}
        return value

    @default_filter.setter
    def default_filter(self, value: dict[str, Any] | None) -> None:
        self._options = _replace(self._options, default_filter=value)

    @property
    def projection(self) -> dict[str, Any] | None:
        """Fields returned by selections (settable); ``None`` returns whole documents."""
        return self._options.projection

    @projection.setter
    def projection(self, value: dict[str, Any] | None) -> None:
        self._options = _replace(self._options, projection=value)


def _replace(options: PoolOptions, **changes: Any) -> PoolOptions:
    """A validated copy of *options* with *changes*.

    Raises:
        ConfigurationError: a change is invalid.
    """
    try:
        return replace(options, **changes)
    except TypeError as exc:  # an unknown setting: a bug in the caller
        raise ConfigurationError(str(exc)) from None
