"""How a pool's documents hold instants: UTC, or the seed's naive local wall clock.

The seed library wrote ``datetime.now()``: naive local wall-clock time, which
BSON stores as if it were UTC. Its users run it on Moscow time, so its
3-second hold reads back three hours in the future. A pool created with
``legacy_timezone="Europe/Moscow"`` reads every stored instant as that zone's
wall clock and writes instants the same way, so both kinds of worker can share
one pool during a migration:

* :meth:`StoredTime.store` turns a true instant into what the document holds;
* :meth:`StoredTime.load` turns what the document holds into a true instant.

Without a legacy zone both are the identity (on aware UTC datetimes). Both
are total over every ``datetime`` a document can hold: an instant that the
conversion would carry past year 1 or year 9999 (``datetime.min``, .NET's
``DateTime.MinValue``) is clamped to the calendar's end, never an error.
``zoneinfo`` does the conversion, so daylight-saving changes are right, except
in the hour a zone repeats each autumn, which naive wall-clock times cannot
tell apart (Moscow has no daylight saving).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .clock import FIRST, LAST, NEVER, as_utc
from .exceptions import ConfigurationError

__all__ = ["StoredTime", "zone_of"]


def zone_of(name: object) -> ZoneInfo | None:
    """Return the zone called *name* (an IANA name such as ``"Europe/Moscow"``), or ``None``.

    Raises:
        ConfigurationError: *name* is not a known zone.
    """
    if name is None:
        return None
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ConfigurationError(
            f"legacy_timezone must be a zone name such as 'Europe/Moscow', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"legacy_timezone: unknown time zone {name!r}") from None


class StoredTime:
    """Converts instants to and from a pool's stored representation.

    Args:
        zone: The zone whose naive wall-clock times the documents hold, or
            ``None`` for UTC (the default).
    """

    __slots__ = ("zone",)

    def __init__(self, zone: ZoneInfo | None = None) -> None:
        self.zone = zone

    def __repr__(self) -> str:
        return f"StoredTime({self.zone.key if self.zone else 'UTC'})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredTime) and self.zone == other.zone

    def __hash__(self) -> int:
        return hash(self.zone)

    def store(self, instant: datetime) -> datetime:
        """Return what a document holds for the true *instant*."""
        instant = as_utc(instant)
        if self.zone is None or instant >= NEVER:
            return instant
        try:
            return instant.astimezone(self.zone).replace(tzinfo=UTC)
        except OverflowError:
            return FIRST if instant.year == 1 else LAST

    def load(self, value: datetime) -> datetime:
        """Return the true instant a document's *value* stands for (aware UTC)."""
        value = as_utc(value)
        if self.zone is None or value >= NEVER:
            return value
        try:
            return value.replace(tzinfo=self.zone).astimezone(UTC)
        except OverflowError:
            return FIRST if value.year == 1 else LAST

    def load_fields(self, document: MutableMapping[str, Any], names: Iterable[str]) -> None:
        """Replace the datetimes under *names* in *document* by true aware instants."""
        for name in names:
            value = document.get(name)
            if isinstance(value, datetime):
                document[name] = self.load(value)
