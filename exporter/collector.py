"""The Prometheus collector: renders the latest snapshot, never touches MongoDB."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from datetime import UTC, datetime

import pymongo
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import sessionlib
from sessionlib import FOLDED_SCOPE as FOLDED
from sessionlib import PoolStatistics
from sessionlib import State as SessionState

from .snapshot import State

__all__ = ["STATES", "SnapshotCollector", "scope_figures"]

STATES = tuple(state.value for state in SessionState)
"""Values of the ``state`` label of ``sessionpool_sessions``; they partition a pool."""

POOL_LABELS = ["database", "collection"]


def scope_figures(stats: PoolStatistics, limit: int) -> list[tuple[str, int, int]]:
    """``(scope, available, locked)`` for each scope in use, at most *limit* of them.

    A scope sees as available what is available to all but the sessions it
    has locked; as locked, every other active session. Beyond *limit* (the
    scopes with the most locked first), the rest are folded into one scope
    named ``other`` that shows the fewest available among them.
    """
    active = stats.total - stats.inactive - stats.other
    figures = sorted(
        (
            (scope, stats.available - locked, active - stats.available + locked)
            for scope, locked in stats.scopes.items()
        ),
        key=lambda row: (-row[2], row[0]),
    )
    kept, folded = figures[:limit], figures[limit:]
    if folded:
        worst = min(folded, key=lambda row: row[1])
        kept.append((FOLDED, worst[1], worst[2]))
    return kept


class SnapshotCollector(Collector):
    """Yields the metrics of the current snapshot, built fresh on every scrape.

    Sample output (one pool, refreshed every 15 s)::

        # HELP sessionpool_sessions Sessions in the pool by state; the states partition the
        #   pool, so sum by (database, collection) is its size. Refreshed every 15 seconds.
        # TYPE sessionpool_sessions gauge
        sessionpool_sessions{collection="telegram",database="pools",state="available"} 41.0
        sessionpool_sessions{collection="telegram",database="pools",state="in_use"} 3.0
        ...
        # HELP sessionpool_up Whether MongoDB answered at the last refresh (1) or not (0). ...
        # TYPE sessionpool_up gauge
        sessionpool_up 1.0
    """

    def __init__(self, state: State) -> None:
        self.state = state

    def describe(self) -> Iterator[Metric]:
        # Nothing to describe up front: families appear with the pools.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snapshot = self.state.snapshot  # read once: one consistent snapshot per scrape
        every = f"Refreshed every {self.state.interval:g} seconds."

        sessions = GaugeMetricFamily(
            "sessionpool_sessions",
            "Sessions in the pool by state; the states partition the pool, so sum by "
            f"(database, collection) is its size. {every}",
            labels=[*POOL_LABELS, "state"],
        )
        scopes = GaugeMetricFamily(
            "sessionpool_scope_sessions",
            "Sessions as hand-outs with a scope see the pool: available to that scope, or "
            "locked for it (globally or for the scope alone). Scopes beyond the limit are "
            f'folded into scope "{FOLDED}" (the fewest available among them). {every}',
            labels=[*POOL_LABELS, "scope", "state"],
        )
        uses = CounterMetricFamily(
            "sessionpool_session_uses",
            "Hand-outs of the pool's sessions (sum of count_use; deleting sessions "
            f"looks like a counter reset). {every}",
            labels=POOL_LABELS,
        )
        successes = CounterMetricFamily(
            "sessionpool_session_successes",
            f"Successes reported for the pool's sessions (sum of count_success). {every}",
            labels=POOL_LABELS,
        )
        next_unlock = GaugeMetricFamily(
            "sessionpool_next_unlock_timestamp_seconds",
            "Unix time at which the earliest locked session of the pool becomes available "
            f"again; absent when none is locked. {every}",
            labels=POOL_LABELS,
        )
        oldest_lock = GaugeMetricFamily(
            "sessionpool_oldest_lock_timestamp_seconds",
            "Unix time at which the oldest current lock of the pool was set; absent when "
            f"none is locked. {every}",
            labels=POOL_LABELS,
        )
        min_available = GaugeMetricFamily(
            "sessionpool_target_min_available",
            "The pool's own alert target: fewest available sessions it should have (set with "
            f"'sessionpool target'); absent when it has none. {every}",
            labels=POOL_LABELS,
        )
        min_ratio = GaugeMetricFamily(
            "sessionpool_target_min_available_ratio",
            "The pool's own alert target: least share of it that should be available; absent "
            f"when it has none. {every}",
            labels=POOL_LABELS,
        )
        breaker_open = GaugeMetricFamily(
            "sessionpool_breaker_open",
            "Whether the pool's circuit breaker is open (1): many sessions failed alike, so "
            f"workers release failing sessions instead of blaming them. {every}",
            labels=POOL_LABELS,
        )
        trips = CounterMetricFamily(
            "sessionpool_breaker_trips",
            f"Times the pool's circuit breaker has tripped. {every}",
            labels=POOL_LABELS,
        )
        # The breaker's end is a server instant: judge it on the server's clock.
        server_now = datetime.fromtimestamp(snapshot.taken_at + (snapshot.clock_offset or 0), UTC)
        for key, stats in sorted(snapshot.statistics.items()):
            labels = [key.database, key.collection]
            target = stats.target
            if target is not None and target.min_available is not None:
                min_available.add_metric(labels, target.min_available)
            if target is not None and target.min_available_ratio is not None:
                min_ratio.add_metric(labels, target.min_available_ratio)
            breaker_open.add_metric(labels, 1 if stats.breaker.is_open(server_now) else 0)
            trips.add_metric(labels, stats.breaker.trips)
            counts = (
                stats.available,
                stats.in_use,
                stats.locked,
                stats.blocked,
                stats.budget,
                stats.inactive,
                stats.other,
            )
            for state, count in zip(STATES, counts, strict=True):
                sessions.add_metric([*labels, state], count)
            for scope, available, locked in scope_figures(stats, self.state.scope_limit):
                scopes.add_metric([*labels, scope, "available"], available)
                scopes.add_metric([*labels, scope, "locked"], locked)
            uses.add_metric(labels, stats.uses)
            successes.add_metric(labels, stats.successes)
            if stats.next_unlock is not None:
                next_unlock.add_metric(labels, stats.next_unlock.timestamp())
            if stats.oldest_lock is not None:
                oldest_lock.add_metric(labels, stats.oldest_lock.timestamp())
        yield from (sessions, scopes, uses, successes, next_unlock, oldest_lock)
        yield from (min_available, min_ratio, breaker_open, trips)

        released = CounterMetricFamily(
            "sessionpool_locks_released",
            "Expired locks released by the exporter's auto-release, by lock kind.",
            labels=[*POOL_LABELS, "kind"],
        )
        for (key, kind), count in sorted(snapshot.released.items()):
            released.add_metric([key.database, key.collection, kind], count)
        yield released

        errors = CounterMetricFamily(
            "sessionpool_refresh_errors",
            f"Refreshes of the pool that failed or timed out. {every}",
            labels=POOL_LABELS,
        )
        last_success = GaugeMetricFamily(
            "sessionpool_last_success_timestamp_seconds",
            f"Unix time of the pool's last successful refresh. {every}",
            labels=POOL_LABELS,
        )
        for key in snapshot.pools:
            labels = [key.database, key.collection]
            errors.add_metric(labels, snapshot.errors.get(key, 0))
            if key in snapshot.last_success:
                last_success.add_metric(labels, snapshot.last_success[key])
        yield errors
        yield last_success

        yield GaugeMetricFamily(
            "sessionpool_up",
            f"Whether MongoDB answered at the last refresh (1) or not (0). {every}",
            value=1 if snapshot.up else 0,
        )
        yield GaugeMetricFamily(
            "sessionpool_pools",
            f"Pools (session collections) discovered. {every}",
            value=len(snapshot.pools),
        )
        yield GaugeMetricFamily(
            "sessionpool_refresh_duration_seconds",
            f"How long the last refresh of all pools took. {every}",
            value=snapshot.duration,
        )
        yield GaugeMetricFamily(
            "sessionpool_last_refresh_timestamp_seconds",
            "Unix time at which the last refresh finished (0 before the first).",
            value=snapshot.taken_at,
        )
        yield GaugeMetricFamily(
            "sessionpool_refresh_interval_seconds",
            "Configured time between two refreshes.",
            value=self.state.interval,
        )
        if snapshot.clock_offset is not None:
            yield GaugeMetricFamily(
                "sessionpool_clock_offset_seconds",
                "The MongoDB server's clock minus the exporter's, as last measured; sessionpool "
                "decides on the server's clock, so this shows how far local clocks drift. "
                "It is right within sessionpool_clock_offset_error_seconds (the reading with "
                f"the shortest round trip is kept). {every}",
                value=snapshot.clock_offset,
            )
        if snapshot.clock_error is not None:
            yield GaugeMetricFamily(
                "sessionpool_clock_offset_error_seconds",
                "How far sessionpool_clock_offset_seconds may be off: half the round trip of "
                f"the reading it comes from, widened by the reading's age. {every}",
                value=snapshot.clock_error,
            )
        info = InfoMetricFamily(
            "sessionpool_build",
            "Versions of the exporter, the MongoDB driver and Python.",
        )
        info.add_metric(
            [],
            {
                "version": sessionlib.__version__,
                "pymongo_version": pymongo.version,
                "python_version": platform.python_version(),
            },
        )
        yield info
