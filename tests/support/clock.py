"""A clock tests move by hand, so nothing waits for a lock to expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class MovableClock:
    """A clock tests move by hand; starts at :data:`START`."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def utc(value: datetime | None) -> datetime | None:
    """*value* as aware UTC (Motor without tz_aware returns naive UTC datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
