"""What ``/metrics`` serves: immutable snapshots, swapped in whole.

The refresh job builds a complete :class:`Snapshot` and assigns it to
:attr:`State.snapshot` in one step; the HTTP threads read whatever snapshot
is current. Nothing here is mutated after it is published, so readers need no
lock and never see half a refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from sessionlib import PoolStatistics

__all__ = ["PoolKey", "Snapshot", "State"]


class PoolKey(NamedTuple):
    """A pool: one collection of one database."""

    database: str
    collection: str

    def __str__(self) -> str:
        return f"{self.database}.{self.collection}"


K = TypeVar("K")
V = TypeVar("V")


def _frozen(mapping: Mapping[K, V] | None = None) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of one refresh, plus the counters accumulated so far.

    Attributes:
        taken_at: Unix time the refresh finished (0 before the first one).
        duration: Seconds the refresh took.
        up: Whether MongoDB answered at this refresh.
        pools: Every pool currently discovered.
        statistics: The pools refreshed successfully this time, with their figures.
        last_success: Unix time of each pool's last successful refresh.
        errors: Failed refreshes per pool since the exporter started.
        released: Locks auto-released per pool and lock kind since start.
    """

    taken_at: float = 0.0
    duration: float = 0.0
    up: bool = False
    pools: tuple[PoolKey, ...] = ()
    statistics: Mapping[PoolKey, PoolStatistics] = field(default_factory=_frozen)
    last_success: Mapping[PoolKey, float] = field(default_factory=_frozen)
    errors: Mapping[PoolKey, int] = field(default_factory=_frozen)
    released: Mapping[tuple[PoolKey, str], int] = field(default_factory=_frozen)

    @property
    def complete(self) -> bool:
        """Whether MongoDB answered and every discovered pool was refreshed."""
        return self.up and len(self.statistics) == len(self.pools)


class State:
    """The currently published snapshot: written by the event loop, read by HTTP threads."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.snapshot = Snapshot()
