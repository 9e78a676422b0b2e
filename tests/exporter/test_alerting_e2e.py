"""The alerting path end to end: exporter, Prometheus, Alertmanager and a webhook, all real.

On loopback, each with its own data folder: a SecantusDB of the test's own (so
the test can stop it), the exporter and a telemetry worker on it, a real
Prometheus with the shipped rules (every ``for:`` scaled by 1/15, as the
refresh, scrape and evaluation intervals are: 15 s to 1 s, so the alerts
keep their shipped order; 5 minutes become 20 s), a real Alertmanager
with the shipped configuration (waits cut to 1 s, inhibit rules untouched)
and the shipped webhook receiver. Pools:

* ``watched``: 20 sessions, its own target of 15 available;
* ``healthy``: 20 sessions, no target: it must never alert;
* ``expiring``: a lock that expires after Prometheus has seen the released-locks
  counter at 0, so the first auto-release shows as an increase;
* ``dry``: every session blocked (the worker asks in vain): per-pool alerts
  that are firing when MongoDB stops, so their muting shows.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import SecantusServer, free_port
from sessionlib import MongoSessions, Target
from tests.support.alertmanager import Alertmanager, WebhookReceiver
from tests.support.deploy import dashboard_queries
from tests.support.documents import session
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus, grafana_to_promql

pytestmark = pytest.mark.wire

REPOSITORY = Path(__file__).resolve().parents[2]
DB = "alerting"
WATCHED_TARGET = 15
LOCKED = 6  # of watched's 20: 14 available, under its target


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SecantusServer]:
    with SecantusServer(tmp_path / "mongo") as running:
        client: MongoClient[dict[str, Any]] = MongoClient(running.url, tz_aware=True)
        now = datetime.now(UTC)
        blocked = now + timedelta(hours=2)
        db = client[DB]
        db["watched"].insert_many([session(n) for n in range(20)])
        db["healthy"].insert_many([session(n) for n in range(20)])
        db["expiring"].insert_many([session(n) for n in range(5)])
        db["dry"].insert_many(
            [session(n, next_use=blocked, lock_kind="blocked", locked_at=now) for n in range(5)]
        )
        client.close()
        asyncio.run(set_target(running.url))
        yield running


async def set_target(url: str) -> None:
    async with MongoSessions(url, db=DB, collection="watched") as watched:
        await watched.set_target(Target(min_available=WATCHED_TARGET))


async def lock_watched(url: str, ids: range) -> None:
    async with MongoSessions(url, db=DB, collection="watched") as watched:
        for number in ids:
            await watched.session_lock({"_id": number}, {"hours": 1})


async def release_watched(url: str, ids: range) -> None:
    async with MongoSessions(url, db=DB, collection="watched") as watched:
        for number in ids:
            await watched.session_release({"_id": number})


def expire_a_lock(url: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    past = datetime.now(UTC) - timedelta(seconds=1)
    client[DB]["expiring"].update_one(
        {"_id": 0}, {"$set": {"next_use": past, "lock_kind": "locked", "locked_at": past}}
    )
    client.close()


@pytest.fixture
def worker(server: SecantusServer) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The telemetry worker, waiting for a line on stdin before its first event."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.telemetry_worker", server.url, DB, str(port)]
    process = subprocess.Popen(
        [*command, "--wait"],
        cwd=REPOSITORY,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield port, process
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err


def notified(
    receiver: WebhookReceiver, alertname: str, status: str, **labels: str
) -> list[dict[str, Any]]:
    """The alerts named *alertname* with *status* that reached the receiver, with *labels*."""
    return [
        alert
        for _, alert in receiver.alerts()
        if alert["labels"]["alertname"] == alertname
        and alert["status"] == status
        and labels.items() <= alert["labels"].items()
    ]


def value(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    assert 1 == len(result), (expr, result)
    return float(result[0]["value"][1])


def test_alerts_reach_a_person_and_the_cause_speaks_alone(
    server: SecantusServer, worker: tuple[int, subprocess.Popen[str]], tmp_path: Path
) -> None:
    worker_port, worker_process = worker
    args = ["--mongo-url", server.url, "--database", DB, "--interval", "1"]
    args += ["--auto-release", "--auto-release-interval", "1", "--pool-timeout", "2"]
    with (
        WebhookReceiver(tmp_path / "webhook") as receiver,
        Alertmanager(tmp_path / "alertmanager", receiver.url) as alertmanager,
        ExporterProcess(args, tmp_path / "exporter.log") as exporter,
        Prometheus(
            tmp_path / "prometheus",
            exporter.port,
            workers=(worker_port,),
            alertmanager=alertmanager.port,
            rule_scale=1 / 15,
        ) as prometheus,
    ):
        # 1. Counters exist at 0 before their first event, so increase() sees it.
        zero = {
            "released": 'sessionpool_locks_released_total{collection="expiring",kind="locked"}',
            "empty": 'sessionpool_worker_handouts_total{collection="dry",result="empty"}',
            "stale": 'sessionpool_worker_stale_leases_total{collection="healthy"}',
            "error": 'sessionpool_worker_errors_total{collection="healthy",'
            'error="DuplicateSessionError"}',
        }
        prometheus.wait_for(
            lambda: all(
                [float(s["value"][1]) for s in prometheus.query(q)] == [0.0] for q in zero.values()
            ),
            60,
            "every counter scraped at 0",
        )
        expire_a_lock(server.url)
        assert worker_process.stdin is not None
        worker_process.stdin.write("go\n")
        worker_process.stdin.flush()
        prometheus.wait_for(
            lambda: all(prometheus.query(f"increase({q}[1m]) > 0.5") for q in zero.values()),
            60,
            "the first release, empty hand-out, stale lease and error to show as increases",
        )
        assert 1 == value(prometheus, f"max_over_time({zero['released']}[1m])")

        # 2. Every dashboard query has data.
        prometheus.wait_for(
            lambda: all(prometheus.query(grafana_to_promql(q)) for q in dashboard_queries()),
            60,
            "every dashboard query to have data: "
            + str([q for q in dashboard_queries() if not prometheus.query(grafana_to_promql(q))]),
        )

        # 3. A pool under its own target: the notification names it, then "resolved".
        locked_at = time.time()
        asyncio.run(lock_watched(server.url, range(LOCKED)))
        few = "SessionPoolFewAvailableSessions"
        prometheus.wait_for(
            lambda: bool(notified(receiver, few, "firing", collection="watched")),
            60,
            "the notification for the watched pool",
        )
        time_to_alert = time.time() - locked_at
        (alert,) = notified(receiver, few, "firing", collection="watched")
        assert {"database": DB, "collection": "watched", "layer": "pool"}.items() <= alert[
            "labels"
        ].items()
        assert (
            f"Only 14 sessions of pool {DB}.watched are available; the threshold is 15"
            in alert["annotations"]["description"]
        )
        assert alert["annotations"]["runbook_url"].endswith("#sessionpoolfewavailablesessions")

        released_at = time.time()
        asyncio.run(release_watched(server.url, range(LOCKED)))
        prometheus.wait_for(
            lambda: bool(notified(receiver, few, "resolved", collection="watched")),
            60,
            "the watched pool's alert to resolve",
        )
        time_to_resolve = time.time() - released_at
        assert [] == [a for _, a in receiver.alerts() if a["labels"].get("collection") == "healthy"]
        print(f"time to alert {time_to_alert:.1f} s, to resolve {time_to_resolve:.1f} s")

        # 4. MongoDB stops: only the cause is delivered; the pools' alerts are muted.
        prometheus.wait_for(
            lambda: bool(notified(receiver, "SessionPoolEmpty", "firing", collection="dry")),
            60,
            "the dry pool's alert, firing before MongoDB stops",
        )
        before = len(receiver.alerts())
        server.stop()
        unreachable = "SessionPoolMongoDBUnreachable"
        prometheus.wait_for(
            lambda: bool(notified(receiver, unreachable, "firing")),
            60,
            "the MongoDB-unreachable notification",
        )

        def muted() -> list[str]:
            return sorted(
                a["labels"]["alertname"]
                for a in alertmanager.alerts()
                if a["labels"].get("collection") == "dry"
                and a["labels"].get("layer") == "pool"
                and a["status"]["state"] == "suppressed"
                and a["status"]["inhibitedBy"]
            )

        prometheus.wait_for(
            lambda: "SessionPoolEmpty" in muted(),
            30,
            "the dry pool's alerts to be inhibited: " + str(alertmanager.alerts()),
        )
        time.sleep(3)  # several group intervals (1 s): anything not muted would be sent
        after = [a for _, a in receiver.alerts()[before:]]
        assert [unreachable] == sorted(
            {a["labels"]["alertname"] for a in after if a["labels"].get("layer") != "workers"}
        ), after
        assert 0 == exporter.stop()
