"""One operation's "now": read once from the clock, passed down as a value.

Every operation of a pool reads the clock once (see :mod:`sessionlib.clock`:
the server's clock, as an interval) and hands the resulting :class:`Now` to
the rules it calls. The rules never read a clock and never convert an
instant twice: a :class:`Now` carries the true instants and the pool's
:class:`~sessionlib.storedtime.StoredTime`, and gives the stored forms:

* :attr:`Now.at` — where states are judged (the earliest the server's clock
  can show: a hold is never believed over before it is);
* :attr:`Now.written` — what a write records as "now" (``last_use``,
  ``locked_at``, history entries);
* :meth:`Now.until` — the end of a hold of a given length, from the latest the
  server's clock can show, rounded up to the millisecond (never shorter than
  asked);
* :meth:`Now.hold_end` — the same, but when the pool decides on the server's
  clock, an expression the server evaluates when it applies the write
  (``$$NOW`` plus the hold): a hold is measured from the moment the server
  takes the session, however late the command reaches it.

The seed's filter hooks (``_filter_exclude_lock(offset)``) take no instant,
so an operation makes its :class:`Now` the current one (:meth:`Now.current`)
while it builds its command, and the default hooks read it from there. Outside
an operation they read the clock themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .clock import Clock, as_utc, ceil_ms, latest, shift
from .storedtime import StoredTime

__all__ = ["Now", "current"]

_CURRENT: ContextVar[Now | None] = ContextVar("sessionlib_now", default=None)


@dataclass(frozen=True, slots=True)
class Now:
    """The instant of one operation, as true UTC instants and their stored forms.

    Attributes:
        earliest: The earliest the clock can show now (true UTC).
        latest: The latest the clock can show now (true UTC).
        time: How the pool's documents hold instants.
    """

    earliest: datetime
    latest: datetime
    time: StoredTime = field(default_factory=StoredTime)
    on_server: bool = False
    """Whether the clock is the server's, so the server can measure holds itself."""

    @classmethod
    def read(cls, clock: Clock, time: StoredTime | None = None, *, on_server: bool = False) -> Now:
        """Read *clock* once (both ends of its interval)."""
        return cls(as_utc(clock()), as_utc(latest(clock)), time or StoredTime(), on_server)

    @classmethod
    def fixed(cls, instant: datetime, time: StoredTime | None = None) -> Now:
        """A now with no uncertainty at the true *instant* (tests, tools)."""
        instant = as_utc(instant)
        return cls(instant, instant, time or StoredTime())

    @property
    def at(self) -> datetime:
        """The stored instant at which states are judged."""
        return self.time.store(self.earliest)

    @property
    def written(self) -> datetime:
        """The stored instant a write records as now."""
        return self.time.store(self.latest)

    def until(self, delay: timedelta) -> datetime:
        """The stored end of a hold of *delay* from now (rounded up to the millisecond)."""
        return self.time.store(ceil_ms(shift(self.latest, delay)))

    def stamp(self) -> datetime | dict[str, Any]:
        """What a write records as now: the server's own time as it applies it, if it can.

        On the server's clock an expression (``$$NOW`` in the stored
        representation), else :attr:`written`.
        """
        return self.hold_end(timedelta(0)) if self.on_server else self.written

    def hold_end(self, delay: timedelta) -> datetime | dict[str, Any]:
        """The stored end of a hold of *delay*, measured by the server when it can.

        On the server's clock: an aggregation expression, ``$$NOW`` (the
        server's time when it applies the write) plus *delay*, in the pool's
        stored representation. Otherwise :meth:`until`.
        """
        if not self.on_server:
            return self.until(delay)
        offset = self.time.store(self.latest) - self.latest  # a legacy zone's, else 0
        milliseconds = math.ceil((offset + delay) / timedelta(milliseconds=1))
        # Through milliseconds since the epoch: the same instant, as a date every
        # server compares with stored dates (SecantusDB does not, with $$NOW's own).
        return {"$toDate": {"$add": [{"$toLong": "$$NOW"}, milliseconds]}}

    def store(self, instant: datetime) -> datetime:
        """The stored form of the true *instant*."""
        return self.time.store(instant)

    def load(self, value: datetime) -> datetime:
        """The true instant a stored *value* stands for."""
        return self.time.load(value)

    def shifted(self, seconds: float | timedelta) -> Now:
        """This now moved by *seconds* (the seed's ``offset``)."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        return Now(
            shift(self.earliest, delta), shift(self.latest, delta), self.time, self.on_server
        )

    @contextmanager
    def current(self) -> Iterator[Now]:
        """Make this the current operation's now, for the seed's filter hooks."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)


def current() -> Now | None:
    """The now of the operation under way in this task, or ``None`` outside one."""
    return _CURRENT.get()
