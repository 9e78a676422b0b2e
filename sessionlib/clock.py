"""Time: every instant sessionlib handles is timezone-aware UTC.

The clock is a parameter (``clock=utcnow``) of every object that reads the
time, so tests move time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "as_utc", "ceil_ms", "utcnow"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time as an aware UTC datetime."""


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return *value* as an aware UTC datetime.

    Naive datetimes are read as UTC: that is how MongoDB stores them, and how
    documents written by the seed library (naive local time) must be read.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ceil_ms(value: datetime) -> datetime:
    """Return *value* rounded up to the millisecond, the precision BSON dates keep.

    Lock ends are rounded up, so a hold is never shorter than asked.
    """
    return value + timedelta(microseconds=-value.microsecond % 1000)
