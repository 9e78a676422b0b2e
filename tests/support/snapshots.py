"""A fixed snapshot for collector and endpoint tests."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from exporter.snapshot import PoolKey, Snapshot
from sessionlib import BreakerState, PoolStatistics, Target

TELEGRAM = PoolKey("pools", "telegram")
BROKEN = PoolKey("pools", "broken")
TAKEN_AT = 1_800_000_000.5


def fixed_snapshot() -> Snapshot:
    """Two pools: telegram refreshed (10 sessions in every state, one locked for "search",
    a target, its breaker open), broken failing."""
    stats = PoolStatistics(
        total=10,
        available=4,
        in_use=2,
        locked=1,
        blocked=1,
        inactive=1,
        uses=40,
        successes=30,
        next_unlock=datetime(2027, 1, 15, 8, 0, tzinfo=UTC),
        oldest_lock=datetime(2027, 1, 15, 7, 0, tzinfo=UTC),
        scopes=MappingProxyType({"search": 1}),
        target=Target(min_available=5, min_available_ratio=0.25),
        breaker=BreakerState(
            open=True,
            error="LoginFailedError",
            opened_at=datetime.fromtimestamp(TAKEN_AT - 60, UTC),
            until=datetime.fromtimestamp(TAKEN_AT + 240, UTC),
            sessions=6,
            share=0.75,
            trips=2,
        ),
    )
    return Snapshot(
        taken_at=TAKEN_AT,
        duration=0.25,
        up=True,
        pools=(BROKEN, TELEGRAM),
        statistics=MappingProxyType({TELEGRAM: stats}),
        last_success=MappingProxyType({TELEGRAM: TAKEN_AT, BROKEN: 1_799_999_000.0}),
        errors=MappingProxyType({TELEGRAM: 0, BROKEN: 3}),
        released=MappingProxyType({(TELEGRAM, "locked"): 5}),
    )
