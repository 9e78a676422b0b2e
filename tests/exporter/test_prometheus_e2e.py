"""A real Prometheus scraping the exporter: targets, dashboard queries, alerts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support.deploy import dashboard_queries
from tests.support.documents import session
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus, grafana_to_promql

pytestmark = pytest.mark.wire


@pytest.fixture
def pools(wire_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    db = client[db_name]
    now = datetime.now(UTC)
    db["healthy"].insert_many([session(n) for n in range(20)])
    db["drained"].insert_many(
        [session(0)]
        + [
            session(n, next_use=now + timedelta(hours=2), lock_kind="blocked", locked_at=now)
            for n in range(1, 18)
        ]
        # Expired locks: available (3 in all, under the threshold of 5), and released.
        + [
            session(n, next_use=now - timedelta(minutes=1), lock_kind="locked", locked_at=now)
            for n in range(18, 20)
        ]
    )
    stop = threading.Event()

    def traffic() -> None:
        # Counters that move, so rates and the success ratio have data.
        while not stop.wait(0.3):
            db["healthy"].update_one({"_id": 1}, {"$inc": {"count_use": 2, "count_success": 1}})

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield db
    stop.set()
    thread.join()
    client.drop_database(db_name)
    client.close()


def test_prometheus_scrapes_queries_and_alerts(
    pools: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        "1",
        "--auto-release",
        "--auto-release-interval",
        "1",
    ]
    with (
        ExporterProcess(args, tmp_path / "exporter.log") as exporter,
        Prometheus(tmp_path / "prometheus", exporter.port) as prometheus,
    ):
        prometheus.wait_for(
            lambda: any(
                t["health"] == "up"
                for t in (prometheus.get("/api/v1/targets") or {"data": {"activeTargets": []}})[
                    "data"
                ]["activeTargets"]
            ),
            60,
            "the exporter target to be up",
        )
        # Rates need a few samples; the drained pool's expired locks get released.
        prometheus.wait_for(
            lambda: (
                bool(prometheus.query("sessionpool:success:ratio_rate5m"))
                and bool(prometheus.query("sessionpool_locks_released_total > 0"))
            ),
            60,
            "rates and released locks",
        )

        empty = [q for q in dashboard_queries() if not prometheus.query(grafana_to_promql(q))]
        assert [] == empty, "dashboard queries without data"

        for label in ("database", "collection"):
            values = prometheus.get(f"/api/v1/label/{label}/values?match[]=sessionpool_sessions")[
                "data"
            ]
            assert (db_name if label == "database" else "healthy") in values

        def firing(collection: str) -> bool:
            alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
            return any(
                a["labels"]["alertname"] == "SessionPoolFewAvailableSessions"
                and a["labels"].get("collection") == collection
                and a["state"] == "firing"
                for a in alerts
            )

        prometheus.wait_for(
            lambda: firing("drained"),
            60,
            "the drained pool's alert to fire; alerts: "
            + json.dumps(prometheus.get("/api/v1/alerts"))
            + "; available: "
            + json.dumps(prometheus.query("sessionpool:available:sum")),
        )
        alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
        healthy = [a for a in alerts if a["labels"].get("collection") == "healthy"]
        assert [] == healthy
        drained = next(
            a
            for a in alerts
            if a["labels"]["alertname"] == "SessionPoolFewAvailableSessions"
            and a["labels"]["collection"] == "drained"
        )
        assert (
            f"Few available sessions in pool {db_name}.drained" == drained["annotations"]["summary"]
        )
        assert "warning" == drained["labels"]["severity"]
        assert 0 == exporter.stop()
