"""Two exporters watching one MongoDB, both auto-releasing, scraped by one Prometheus.

Each expired lock is released once, by one of them, and their counters add
up; the recording rules count each pool once, and an alert fires once per
pool, not once per exporter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support.documents import session
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.wire

EXPIRED = 30


@pytest.fixture
def pools(wire_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    db = client[db_name]
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=1), now + timedelta(hours=2)
    db["busy"].insert_many(
        [session(n, next_use=past, lock_kind="locked", locked_at=past) for n in range(EXPIRED)]
    )
    db["drained"].insert_many(
        [session(0)]
        + [session(n, next_use=future, lock_kind="blocked", locked_at=now) for n in range(1, 20)]
    )
    yield db
    client.drop_database(db_name)
    client.close()


def test_two_replicas_release_each_lock_once_and_alert_once_per_pool(
    pools: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.5"]
    args += ["--auto-release", "--auto-release-interval", "0.3"]
    pool = f'database="{db_name}"'
    with (
        ExporterProcess(args, tmp_path / "a.log") as first,
        ExporterProcess(args, tmp_path / "b.log") as second,
        Prometheus(tmp_path / "prometheus", first.port, second.port) as prometheus,
    ):

        def released() -> float:
            result = prometheus.query(f"sum(sessionpool_locks_released_total{{{pool}}})")
            return float(result[0]["value"][1]) if result else -1.0

        prometheus.wait_for(lambda: released() == EXPIRED, 60, "all expired locks released")

        def alerts() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = prometheus.get("/api/v1/alerts")["data"]["alerts"]
            return [
                a
                for a in found
                if a["labels"]["alertname"] == "SessionPoolFewAvailableSessions"
                and a["labels"].get("database") == db_name
                and a["state"] == "firing"
            ]

        prometheus.wait_for(lambda: bool(alerts()), 60, "the drained pool's alert")
        available = prometheus.query(f'sessionpool:available:sum{{database="{db_name}"}}')
        per_instance = prometheus.query(
            f'sessionpool_sessions{{database="{db_name}",state="available"}}'
        )
        firing = alerts()
        # Both exporters took part in releasing, or one did it all: either way once each.
        counts = prometheus.query(f"sum by (instance) (sessionpool_locks_released_total{{{pool}}})")
        assert 0 == first.stop()
        assert 0 == second.stop()

    assert 0 == pools["busy"].count_documents({"lock_kind": {"$exists": True}})
    assert EXPIRED == sum(float(row["value"][1]) for row in counts)
    assert 4 == len(per_instance)  # two pools, seen by two exporters
    assert {("busy", "30"), ("drained", "1")} == {
        (row["metric"]["collection"], row["value"][1]) for row in available
    }
    assert all("instance" not in row["metric"] for row in available)
    assert ["drained"] == [a["labels"]["collection"] for a in firing], json.dumps(firing)
