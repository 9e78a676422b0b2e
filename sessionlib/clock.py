"""Time: whose clock decides, and how sure we are of it.

Every instant sessionlib handles is timezone-aware UTC. Which clock says
"now" matters: a hold is written by one process and tested by another, so
two clocks that disagree by 20 s let a worker take a session another still
holds. sessionlib therefore decides on **the server's clock**:

* :class:`ServerClock` estimates the server's time from the ``localTime`` of
  its ``hello`` replies. A reply read at local monotonic time ``m`` bounds
  the server's time: the server read its clock after the request was sent and
  before the reply arrived, and ``localTime`` is truncated to the millisecond.
  So at any later local time the server's time lies in a known interval,
  widened by an allowance for the two clocks' rates (:data:`DRIFT`).
* Availability is judged at the **earliest** possible server time
  (``clock()``): a hold is never believed over before it is.
* Ends of holds are written from the **latest** possible server time
  (:func:`latest`): a hold never lasts less than asked.

The interval's width is the round trip of the ``hello`` plus 1 ms (loopback:
about 1 ms), so the guarantee rests on one thing only: the server's clock.

A clock passed in by the caller (``clock=``; tests pass one they move) is
trusted as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "DRIFT",
    "FIRST",
    "LAST",
    "NEVER",
    "PLAUSIBLE_OFFSET",
    "Clock",
    "ClockSample",
    "ServerClock",
    "as_utc",
    "ceil_ms",
    "latest",
    "shift",
    "utcnow",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time as an aware UTC datetime."""

DRIFT = 1e-4
"""How far the local and the server's clock may drift apart, per second (100 ppm)."""

NEVER = datetime(9999, 1, 1, tzinfo=UTC)
"""An instant past every real one: the order key of a session disabled for good."""

FIRST = datetime.min.replace(tzinfo=UTC)
"""The earliest instant a ``datetime`` (and so a date read from BSON) can hold."""
LAST = datetime.max.replace(tzinfo=UTC)
"""The latest instant a ``datetime`` can hold."""

PLAUSIBLE_OFFSET = 86400.0
"""Seconds the server's clock may be off this machine's before a reading is refused.

Workers whose clocks are off by minutes, even hours, are what deciding on the
server's clock is for; a server a day or more away (year 1, 9999, 1970) has a
broken clock, and holds written from it would be meaningless.
"""

_SKEW_LOG_EVERY = 600.0  # seconds between two warnings about the same skew


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return *value* as an aware UTC datetime; naive datetimes are read as UTC.

    Total: an instant within a day of the calendar's ends is clamped to it.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return FIRST if value.year == 1 else LAST


def shift(instant: datetime, delta: timedelta) -> datetime:
    """Return *instant* + *delta*, clamped to the instants a ``datetime`` can hold.

    Arithmetic on times read from documents or from a server whose clock is
    absurd (year 1, year 9999) must never raise ``OverflowError``.
    """
    try:
        return instant + delta
    except OverflowError:
        return LAST if delta > timedelta() else FIRST


def ceil_ms(value: datetime) -> datetime:
    """Return *value* rounded up to the millisecond, the precision BSON dates keep.

    Lock ends are rounded up, so a hold is never shorter than asked.
    """
    return shift(value, timedelta(microseconds=-value.microsecond % 1000))


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One ``hello`` reply: the server's ``localTime`` and when we asked and heard.

    Attributes:
        server_time: The server's ``localTime`` (milliseconds).
        sent: Local monotonic seconds when the command was sent.
        received: Local monotonic seconds when the reply arrived.
        wall: Local Unix time when the reply arrived.
    """

    server_time: datetime
    sent: float
    received: float
    wall: float

    @property
    def round_trip(self) -> float:
        """Seconds between sending the command and reading the reply."""
        return max(0.0, self.received - self.sent)

    @property
    def offset(self) -> float:
        """The server's clock minus this process's wall clock, in seconds (best estimate)."""
        middle = as_utc(self.server_time).timestamp() + 0.0005 + self.round_trip / 2
        return middle - self.wall

    @property
    def error(self) -> float:
        """How far :attr:`offset` may be off, in seconds: half the width of the interval."""
        return (self.round_trip + 0.001) / 2

    @property
    def plausible(self) -> bool:
        """Whether the server's clock is within :data:`PLAUSIBLE_OFFSET` of this machine's."""
        return abs(self.offset) <= PLAUSIBLE_OFFSET


class ServerClock:
    """The server's time, estimated from ``hello`` samples; a :data:`Clock`.

    Calling it returns the earliest time the server's clock can show now;
    :meth:`latest` the latest. Until the first sample it reads the local
    clock, and :meth:`needs_sample` is true.

    Args:
        refresh: Seconds after which a new sample is due.
        warn_above: Log a warning when this process's clock is more than this
            many seconds off the server's.
        monotonic: Local monotonic clock (tests pass one they move).
        wall: Local Unix time (tests pass one they move).
    """

    def __init__(
        self,
        *,
        refresh: float = 60.0,
        warn_above: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.refresh = refresh
        self.warn_above = warn_above
        self._monotonic = monotonic
        self._wall = wall
        self._sample: ClockSample | None = None
        self._tried_at: float | None = None
        self._warned_at: float | None = None

    @property
    def sample(self) -> ClockSample | None:
        """The sample in use, or ``None`` before the first."""
        return self._sample

    @property
    def offset(self) -> float | None:
        """The server's clock minus this process's, in seconds, or ``None`` before a sample."""
        return None if self._sample is None else self._sample.offset

    @property
    def error(self) -> float | None:
        """How far :attr:`offset` may be off now, in seconds, or ``None`` before a sample."""
        return None if self._sample is None else self.uncertainty() / 2

    def needs_sample(self) -> bool:
        """Whether no sample was taken yet or the last try is older than :attr:`refresh`."""
        last = self._tried_at if self._sample is not None else None
        return last is None or self._monotonic() - last > self.refresh

    def tried(self) -> None:
        """Note that a reading is being taken, so no other is due before :attr:`refresh`."""
        self._tried_at = self._monotonic()

    def add(self, sample: ClockSample) -> bool:
        """Keep *sample* if it bounds the server's time at least as well as the one held.

        Cristian's rule: a reading is as good as its round trip is short. The
        held sample's bound widens with its age (:data:`DRIFT`); a new one
        replaces it only if its own bound is no wider, so a reading taken
        during a stall (a 5 s round trip) is never trusted over a fresh one.
        Warns if this process's clock is far off the server's.

        Returns:
            Whether *sample* is used from now on.
        """
        self._tried_at = self._monotonic()
        if self._sample is not None and sample.error * 2 > self.uncertainty():
            log.debug(
                "kept the clock reading of ±%.3f s over one of ±%.3f s",
                self.uncertainty() / 2,
                sample.error,
            )
            return False
        self._sample = sample
        skew = sample.offset
        if abs(skew) > self.warn_above:
            now = self._monotonic()
            if self._warned_at is None or now - self._warned_at >= _SKEW_LOG_EVERY:
                self._warned_at = now
                log.warning(
                    "this process's clock is %+.3f s off the MongoDB server's (more than %g s); "
                    "sessionlib decides on the server's clock, but other programs reading "
                    "this machine's clock may not",
                    -skew,
                    self.warn_above,
                )
        return True

    def _bounds(self) -> tuple[datetime, datetime]:
        sample = self._sample
        if sample is None:
            now = utcnow()
            return now, now
        elapsed = max(0.0, self._monotonic() - sample.received)
        drift = DRIFT * elapsed
        base = as_utc(sample.server_time)
        earliest = shift(base, timedelta(seconds=elapsed - drift))
        latest = shift(base, timedelta(seconds=elapsed + sample.round_trip + 0.001 + drift))
        return earliest, latest

    def __call__(self) -> datetime:
        """Return the earliest time the server's clock can show now."""
        return self._bounds()[0]

    def latest(self) -> datetime:
        """Return the latest time the server's clock can show now."""
        return self._bounds()[1]

    def uncertainty(self) -> float:
        """Seconds between the earliest and the latest estimate of the server's time now."""
        earliest, latest_ = self._bounds()
        return (latest_ - earliest).total_seconds()


def latest(clock: Clock) -> datetime:
    """Return the latest time *clock* can show now: the base of a hold's end."""
    if isinstance(clock, ServerClock):
        return clock.latest()
    return clock()
