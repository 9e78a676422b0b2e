"""What ``/metrics`` serves: immutable snapshots, and the one function that makes the next.

The refresh job is the snapshot's only writer: it computes the next one with
:func:`refreshed`, a pure function of the previous snapshot and what the
refresh found, and assigns it to :attr:`State.snapshot` in one step. The HTTP
threads read whatever snapshot is current. Nothing here is mutated after it is
published, so readers need no lock and never see half a refresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from sessionlib import PoolKey, PoolStatistics

__all__ = ["PoolKey", "Released", "Snapshot", "State", "refreshed"]

K = TypeVar("K")
V = TypeVar("V")

Released = Mapping[tuple[PoolKey, str], int]
"""Locks auto-released since start, per pool and lock kind."""


def _frozen(mapping: Mapping[K, V] | None = None) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of one refresh, plus the counters accumulated so far.

    Attributes:
        taken_at: Unix time the refresh finished (0 before the first one).
        duration: Seconds the refresh took.
        up: Whether MongoDB answered at this refresh.
        pools: Every pool known at this refresh.
        statistics: The pools refreshed successfully this time, with their figures.
        last_success: Unix time of each pool's last successful refresh.
        errors: Failed refreshes per pool since the exporter started.
        released: Locks auto-released per pool and lock kind since start.
        clock_offset: The MongoDB server's clock minus the exporter's, in
            seconds, or ``None`` where it cannot be read.
        clock_error: How far *clock_offset* may be off, in seconds (half the
            round trip of the reading, widened by its age).
    """

    taken_at: float = 0.0
    duration: float = 0.0
    up: bool = False
    pools: tuple[PoolKey, ...] = ()
    statistics: Mapping[PoolKey, PoolStatistics] = field(default_factory=_frozen)
    last_success: Mapping[PoolKey, float] = field(default_factory=_frozen)
    errors: Mapping[PoolKey, int] = field(default_factory=_frozen)
    released: Released = field(default_factory=_frozen)
    clock_offset: float | None = None
    clock_error: float | None = None

    @property
    def complete(self) -> bool:
        """Whether MongoDB answered and every known pool was refreshed."""
        return self.up and len(self.statistics) == len(self.pools)

    @property
    def failed(self) -> tuple[PoolKey, ...]:
        """The pools whose refresh failed this time."""
        return tuple(key for key in self.pools if key not in self.statistics)


def refreshed(
    previous: Snapshot,
    *,
    pools: Sequence[PoolKey],
    statistics: Mapping[PoolKey, PoolStatistics],
    up: bool,
    now: float,
    duration: float,
    released: Released,
    clock_offset: float | None,
    clock_error: float | None = None,
) -> Snapshot:
    """Return the snapshot after a refresh: a pure function, tested without MongoDB.

    *pools* are the pools known now; those left out lose all their series.
    Each known pool missing from *statistics* counts one more error (all of
    them when MongoDB did not answer), and keeps its last success time.
    """
    keys = tuple(sorted(pools))
    known = set(keys)
    fresh = {key: value for key, value in statistics.items() if key in known}
    errors = {key: previous.errors.get(key, 0) + (key not in fresh) for key in keys}
    last_success = {key: previous.last_success[key] for key in keys if key in previous.last_success}
    last_success.update(dict.fromkeys(fresh, now))
    return Snapshot(
        taken_at=now,
        duration=duration,
        up=up,
        pools=keys,
        statistics=_frozen(fresh),
        last_success=_frozen(last_success),
        errors=_frozen(errors),
        released=_frozen({key: n for key, n in released.items() if key[0] in known}),
        clock_offset=clock_offset,
        clock_error=clock_error,
    )


class State:
    """The currently published snapshot: written by the refresh job, read by HTTP threads.

    Args:
        interval: Seconds between refreshes (the metrics' help text says so).
        scope_limit: Scopes exported per pool before the rest are folded.
    """

    def __init__(self, interval: float, scope_limit: int = 20) -> None:
        self.interval = interval
        self.scope_limit = scope_limit
        self.snapshot = Snapshot()
