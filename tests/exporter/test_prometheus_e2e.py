"""A real Prometheus scraping the exporter and a worker: dashboard queries, alerts per pool.

The pools are each made to fire one alert, or none:

* ``healthy``: 20 available and no target: the default threshold (5) holds;
* ``drained``: 3 available, under the default: few-available fires;
* ``own``: 20 available, but its own target is 30: few-available fires for it;
* ``tripped``: workers failed alike on it and tripped its circuit breaker;
* ``dry``: every session blocked, and a worker asks for one in vain: the
  workers starve.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import free_port
from sessionlib import Block, CircuitBreaker, MongoSessions, Target
from tests.support.deploy import dashboard_queries
from tests.support.documents import session
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus, grafana_to_promql

pytestmark = pytest.mark.wire

REPOSITORY = Path(__file__).resolve().parents[2]


class LoginFailedError(Exception):
    pass


async def set_target_and_trip_breaker(url: str, db: str) -> None:
    """Give ``own`` its target, and have workers fail alike on ``tripped``."""
    async with MongoSessions(url, db=db, collection="own") as own:
        await own.set_target(Target(min_available=30))
    breaker = CircuitBreaker(min_sessions=3, cooldown={"hours": 1})
    async with MongoSessions(url, db=db, collection="tripped", breaker=breaker) as tripped:
        for _ in range(3):
            try:
                async with tripped.lease(on_error={LoginFailedError: Block()}):
                    raise LoginFailedError
            except LoginFailedError:
                pass
        assert (await tripped.breaker_state()).open


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
    db["own"].insert_many([session(n) for n in range(20)])
    db["tripped"].insert_many([session(n) for n in range(8)])
    blocked = now + timedelta(hours=2)
    db["dry"].insert_many(
        [session(n, next_use=blocked, lock_kind="blocked", locked_at=now) for n in range(5)]
    )
    asyncio.run(set_target_and_trip_breaker(wire_url, db_name))
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


@pytest.fixture
def worker(pools: Any, wire_url: str, db_name: str) -> Iterator[int]:
    """A worker process serving its PoolMetrics; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.telemetry_worker", wire_url, db_name, str(port)],
        cwd=REPOSITORY,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield port
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err


def firing(prometheus: Prometheus, alertname: str) -> set[str]:
    """The pools (collections) for which *alertname* fires."""
    alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
    return {
        alert["labels"].get("collection", "")
        for alert in alerts
        if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
    }


EXPECTED_FIRING = {
    "SessionPoolFewAvailableSessions": {"drained", "own", "dry"},
    "SessionPoolBreakerOpen": {"tripped"},
    "SessionPoolWorkersStarving": {"dry"},
}


def test_prometheus_scrapes_queries_and_alerts_per_pool(
    pools: Any, worker: int, wire_url: str, db_name: str, tmp_path: Path
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
        Prometheus(tmp_path / "prometheus", exporter.port, workers=(worker,)) as prometheus,
    ):
        prometheus.wait_for(
            lambda: all(
                t["health"] == "up"
                for t in (prometheus.get("/api/v1/targets") or {"data": {"activeTargets": []}})[
                    "data"
                ]["activeTargets"]
            ),
            60,
            "the exporter and worker targets to be up",
        )
        # Rates need a few samples; the drained pool's expired locks get released.
        prometheus.wait_for(
            lambda: (
                bool(prometheus.query("sessionpool:success:ratio_rate5m"))
                and bool(prometheus.query("sessionpool_locks_released_total > 0"))
                and bool(prometheus.query("sessionpool:worker_empty:ratio_rate5m"))
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

        prometheus.wait_for(
            lambda: all(
                firing(prometheus, name) >= pools for name, pools in EXPECTED_FIRING.items()
            ),
            60,
            "the alerts to fire; alerts: " + json.dumps(prometheus.get("/api/v1/alerts")),
        )
        # Each fires for its pools and only there.
        assert EXPECTED_FIRING == {name: firing(prometheus, name) for name in EXPECTED_FIRING}
        targets = {
            sample["metric"]["collection"]: float(sample["value"][1])
            for sample in prometheus.query("sessionpool:target:min_available")
        }
        assert {"healthy": 5, "drained": 5, "own": 30, "tripped": 5, "dry": 5} == targets
        alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
        assert [] == [a for a in alerts if a["labels"].get("collection") == "healthy"]
        own = next(
            a
            for a in alerts
            if a["labels"]["alertname"] == "SessionPoolFewAvailableSessions"
            and a["labels"]["collection"] == "own"
        )
        assert f"Few available sessions in pool {db_name}.own" == own["annotations"]["summary"]
        assert "warning" == own["labels"]["severity"]
        assert 0 == exporter.stop()
