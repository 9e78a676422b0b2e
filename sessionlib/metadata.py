"""What operators and workers store about a pool beside it: its target and its breaker.

Each database that holds pools may hold one more collection,
``sessionpool.pools``, which discovery never takes for a pool (see
:data:`~sessionlib.discovery.METADATA_PREFIX`). It has at most one document
per pool, whose ``_id`` is the pool's collection name::

    {"_id": "telegram",
     "target": {"min_available": 20, "min_available_ratio": 0.1,
                "updated_at": <date>, "by": "sessionpool-cli"},
     "breaker": {"open": true, "error": "LoginFailed", "opened_at": <date>,
                 "until": <date>, "sessions": 7, "share": 0.8, "trips": 3},
     "failures": [{"at": <date>, "error": "LoginFailed", "session": <_id>}, ...]}

* the **target** is the pool's own alert threshold (``sessionpool target``;
  the exporter exports it and the alert rules compare against it, with a
  global default for pools that have none);
* the **breaker** and its recent **failures** are the state of the pool's
  circuit breaker (see :mod:`sessionlib.breaker`), shared by every worker.

Another program may write anything there: a value that is not what it should
be is read as absent, never as an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .discovery import METADATA_PREFIX
from .exceptions import InvalidInputError
from .now import Now

__all__ = [
    "CLOSED",
    "METADATA_COLLECTION",
    "BreakerState",
    "Target",
]

METADATA_COLLECTION = f"{METADATA_PREFIX}pools"
"""The collection of each database that holds its pools' metadata."""

MAX_MIN_AVAILABLE = 10**9
"""The largest ``min_available`` a target may set."""


def _whole(value: object) -> int | None:
    """*value* if it is a whole number a target can hold, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_MIN_AVAILABLE:
        return int(value)  # an Int64 becomes a plain int
    return None


def _share(value: object) -> float | None:
    """*value* if it is a finite number from 0 to 1, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= 1 else None


@dataclass(frozen=True, slots=True)
class Target:
    """A pool's alert threshold: at least *min_available* sessions, or *min_available_ratio*.

    Raises:
        InvalidInputError: neither is given, or one is out of range
            (``min_available`` is a whole number up to 10**9, the ratio from 0 to 1).
    """

    min_available: int | None = None
    min_available_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.min_available is None and self.min_available_ratio is None:
            raise InvalidInputError("a target needs min_available, min_available_ratio or both")
        if self.min_available is not None and _whole(self.min_available) is None:
            raise InvalidInputError(
                f"min_available must be a whole number from 0 to {MAX_MIN_AVAILABLE}, "
                f"not {self.min_available!r}"
            )
        if self.min_available_ratio is not None and _share(self.min_available_ratio) is None:
            ratio = self.min_available_ratio
            raise InvalidInputError(
                f"min_available_ratio must be a number from 0 to 1, not {ratio!r}"
            )
        object.__setattr__(self, "min_available", _whole(self.min_available))
        object.__setattr__(self, "min_available_ratio", _share(self.min_available_ratio))

    def as_document(self) -> dict[str, Any]:
        """The target's fields as stored (a threshold not given is stored as null)."""
        return {
            "min_available": self.min_available,
            "min_available_ratio": self.min_available_ratio,
        }

    @classmethod
    def from_document(cls, document: object) -> Target | None:
        """The target a stored ``target`` field holds, or ``None`` if it holds none."""
        if not isinstance(document, Mapping):
            return None
        count = _whole(document.get("min_available"))
        ratio = _share(document.get("min_available_ratio"))
        if count is None and ratio is None:
            return None
        return cls(count, ratio)


def _instant(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The state of a pool's circuit breaker, as stored (see :mod:`sessionlib.breaker`)."""

    open: bool = False
    """Whether it was open when read: tripped, and its cool-down not over."""
    error: str | None = None
    """The class name of the error that tripped it."""
    opened_at: datetime | None = None
    until: datetime | None = None
    sessions: int = 0
    """Distinct sessions that had failed with *error* within the window when it tripped."""
    share: float = 0.0
    """Their share of the sessions handed out within the window."""
    trips: int = 0
    """How many times it has tripped (a count kept across resets)."""

    def is_open(self, now: datetime) -> bool:
        """Whether it is open at *now*: tripped, and its cool-down not over."""
        return self.open and self.until is not None and self.until > now

    @classmethod
    def from_document(cls, document: object, now: Now) -> BreakerState:
        """The state a stored ``breaker`` field holds at *now*; closed if it holds none.

        :attr:`open` is judged at *now*: a breaker whose cool-down has ended
        reads closed, as the CLI and the exporter show it.
        """
        if not isinstance(document, Mapping):
            return CLOSED

        def when(name: str) -> datetime | None:
            value = _instant(document.get(name))
            return None if value is None else now.load(value)

        error = document.get("error")
        until = when("until")
        return cls(
            open=document.get("open") is True and until is not None and until > now.earliest,
            error=error if isinstance(error, str) else None,
            opened_at=when("opened_at"),
            until=until,
            sessions=_whole(document.get("sessions")) or 0,
            share=_share(document.get("share")) or 0.0,
            trips=_whole(document.get("trips")) or 0,
        )


CLOSED = BreakerState()
"""The state of a breaker that never tripped."""
