"""The collector renders a snapshot as exactly this exposition text."""

from __future__ import annotations

import platform
from dataclasses import replace

import pymongo
from prometheus_client import CollectorRegistry, generate_latest

import sessionlib
from exporter.collector import SnapshotCollector
from exporter.snapshot import Snapshot, State
from tests.support.snapshots import TELEGRAM, fixed_snapshot

EXPECTED = """\
# HELP sessionpool_sessions Sessions in the pool by state; the states partition the pool, so sum by (database, collection) is its size. Refreshed every 15 seconds.
# TYPE sessionpool_sessions gauge
sessionpool_sessions{collection="telegram",database="pools",state="available"} 4.0
sessionpool_sessions{collection="telegram",database="pools",state="in_use"} 2.0
sessionpool_sessions{collection="telegram",database="pools",state="locked"} 1.0
sessionpool_sessions{collection="telegram",database="pools",state="blocked"} 1.0
sessionpool_sessions{collection="telegram",database="pools",state="budget"} 0.0
sessionpool_sessions{collection="telegram",database="pools",state="inactive"} 1.0
sessionpool_sessions{collection="telegram",database="pools",state="other"} 1.0
# HELP sessionpool_scope_sessions Sessions as hand-outs with a scope see the pool: available to that scope, or locked for it (globally or for the scope alone). Scopes beyond the limit are folded into scope "other" (the fewest available among them). Refreshed every 15 seconds.
# TYPE sessionpool_scope_sessions gauge
sessionpool_scope_sessions{collection="telegram",database="pools",scope="search",state="available"} 3.0
sessionpool_scope_sessions{collection="telegram",database="pools",scope="search",state="locked"} 5.0
# HELP sessionpool_session_uses_total Hand-outs of the pool's sessions (sum of count_use; deleting sessions looks like a counter reset). Refreshed every 15 seconds.
# TYPE sessionpool_session_uses_total counter
sessionpool_session_uses_total{collection="telegram",database="pools"} 40.0
# HELP sessionpool_session_successes_total Successes reported for the pool's sessions (sum of count_success). Refreshed every 15 seconds.
# TYPE sessionpool_session_successes_total counter
sessionpool_session_successes_total{collection="telegram",database="pools"} 30.0
# HELP sessionpool_next_unlock_timestamp_seconds Unix time at which the earliest locked session of the pool becomes available again; absent when none is locked. Refreshed every 15 seconds.
# TYPE sessionpool_next_unlock_timestamp_seconds gauge
sessionpool_next_unlock_timestamp_seconds{collection="telegram",database="pools"} 1.8e+09
# HELP sessionpool_oldest_lock_timestamp_seconds Unix time at which the oldest current lock of the pool was set; absent when none is locked. Refreshed every 15 seconds.
# TYPE sessionpool_oldest_lock_timestamp_seconds gauge
sessionpool_oldest_lock_timestamp_seconds{collection="telegram",database="pools"} 1.7999964e+09
# HELP sessionpool_target_min_available The pool's own alert target: fewest available sessions it should have (set with 'sessionpool target'); absent when it has none. Refreshed every 15 seconds.
# TYPE sessionpool_target_min_available gauge
sessionpool_target_min_available{collection="telegram",database="pools"} 5.0
# HELP sessionpool_target_min_available_ratio The pool's own alert target: least share of it that should be available; absent when it has none. Refreshed every 15 seconds.
# TYPE sessionpool_target_min_available_ratio gauge
sessionpool_target_min_available_ratio{collection="telegram",database="pools"} 0.25
# HELP sessionpool_breaker_open Whether the pool's circuit breaker is open (1): many sessions failed alike, so workers release failing sessions instead of blaming them. Refreshed every 15 seconds.
# TYPE sessionpool_breaker_open gauge
sessionpool_breaker_open{collection="telegram",database="pools"} 1.0
# HELP sessionpool_breaker_trips_total Times the pool's circuit breaker has tripped. Refreshed every 15 seconds.
# TYPE sessionpool_breaker_trips_total counter
sessionpool_breaker_trips_total{collection="telegram",database="pools"} 2.0
# HELP sessionpool_locks_released_total Expired locks released by the exporter's auto-release, by lock kind.
# TYPE sessionpool_locks_released_total counter
sessionpool_locks_released_total{collection="telegram",database="pools",kind="locked"} 5.0
# HELP sessionpool_refresh_errors_total Refreshes of the pool that failed or timed out. Refreshed every 15 seconds.
# TYPE sessionpool_refresh_errors_total counter
sessionpool_refresh_errors_total{collection="broken",database="pools"} 3.0
sessionpool_refresh_errors_total{collection="telegram",database="pools"} 0.0
# HELP sessionpool_last_success_timestamp_seconds Unix time of the pool's last successful refresh. Refreshed every 15 seconds.
# TYPE sessionpool_last_success_timestamp_seconds gauge
sessionpool_last_success_timestamp_seconds{collection="broken",database="pools"} 1.799999e+09
sessionpool_last_success_timestamp_seconds{collection="telegram",database="pools"} 1.8000000005e+09
# HELP sessionpool_up Whether MongoDB answered at the last refresh (1) or not (0). Refreshed every 15 seconds.
# TYPE sessionpool_up gauge
sessionpool_up 1.0
# HELP sessionpool_pools Pools (session collections) discovered. Refreshed every 15 seconds.
# TYPE sessionpool_pools gauge
sessionpool_pools 2.0
# HELP sessionpool_refresh_duration_seconds How long the last refresh of all pools took. Refreshed every 15 seconds.
# TYPE sessionpool_refresh_duration_seconds gauge
sessionpool_refresh_duration_seconds 0.25
# HELP sessionpool_last_refresh_timestamp_seconds Unix time at which the last refresh finished (0 before the first).
# TYPE sessionpool_last_refresh_timestamp_seconds gauge
sessionpool_last_refresh_timestamp_seconds 1.8000000005e+09
# HELP sessionpool_refresh_interval_seconds Configured time between two refreshes.
# TYPE sessionpool_refresh_interval_seconds gauge
sessionpool_refresh_interval_seconds 15.0
# HELP sessionpool_build_info Versions of the exporter, the MongoDB driver and Python.
# TYPE sessionpool_build_info gauge
"""


def registry_for(snapshot: Snapshot, interval: float = 15) -> CollectorRegistry:
    state = State(interval)
    state.snapshot = snapshot
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(state))
    return registry


def test_exposition_text_of_a_fixed_snapshot() -> None:
    registry = registry_for(fixed_snapshot())

    lines = generate_latest(registry).decode().splitlines(keepends=True)

    assert EXPECTED == "".join(lines[:-1])
    assert lines[-1].startswith("sessionpool_build_info{")
    assert 1.0 == registry.get_sample_value(
        "sessionpool_build_info",
        {
            "version": sessionlib.__version__,
            "pymongo_version": pymongo.version,
            "python_version": platform.python_version(),
        },
    )


def test_states_sum_to_the_pool_size() -> None:
    registry = registry_for(fixed_snapshot())
    states = ("available", "in_use", "locked", "blocked", "budget", "inactive", "other")

    total = sum(
        registry.get_sample_value(
            "sessionpool_sessions", {"database": "pools", "collection": "telegram", "state": s}
        )
        or 0
        for s in states
    )

    assert 10 == total


def test_before_the_first_refresh_only_health_is_exported() -> None:
    registry = registry_for(Snapshot(), interval=30)

    assert 0 == registry.get_sample_value("sessionpool_up")
    assert 0 == registry.get_sample_value("sessionpool_pools")
    assert 30 == registry.get_sample_value("sessionpool_refresh_interval_seconds")
    assert "sessionpool_sessions{" not in generate_latest(registry).decode()


def test_a_breaker_is_open_only_until_its_end_on_the_servers_clock() -> None:
    snapshot = fixed_snapshot()  # open until TAKEN_AT + 240 s
    labels = {"database": "pools", "collection": "telegram"}

    def open_at(offset: float | None, later: float = 0) -> float | None:
        moved = replace(snapshot, clock_offset=offset, taken_at=snapshot.taken_at + later)
        found: float | None = registry_for(moved).get_sample_value(
            "sessionpool_breaker_open", labels
        )
        return found

    assert 1 == open_at(None)
    assert 0 == open_at(None, later=240)  # its very end: closed
    assert 0 == open_at(300.0)  # the server's clock is 5 minutes ahead: over there
    assert 1 == open_at(-300.0, later=240)


def test_a_pool_without_a_target_exports_none() -> None:
    snapshot = fixed_snapshot()
    stats = snapshot.statistics[TELEGRAM]
    bare = replace(snapshot, statistics={TELEGRAM: replace(stats, target=None)})

    text = generate_latest(registry_for(bare)).decode()

    assert "sessionpool_target_min_available{" not in text
    assert "sessionpool_target_min_available_ratio{" not in text
    assert 'sessionpool_breaker_trips_total{collection="telegram",database="pools"} 2.0' in text
