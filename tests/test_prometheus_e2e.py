"""A real Prometheus scraping the exporter: targets, dashboard queries, alerts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from exporter.secantus import free_port
from tests.documents import session
from tests.exporter_process import ExporterProcess
from tests.test_deploy import RULES, dashboard_queries

pytestmark = pytest.mark.wire


def fast_rules(target: Path) -> None:
    """The shipped rules with every ``for:`` shortened to 1 s; expressions untouched."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))


class Prometheus:
    """``prometheus`` on a free loopback port, with its own data folder."""

    def __init__(self, folder: Path, exporter_port: int) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: apt-get install prometheus (see .ci/run)"
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        fast_rules(folder / "rules.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {
                    "job_name": "sessionpool",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.command = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.get("/-/ready") is not None, 60, "Prometheus to be ready")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read().decode()
        except (OSError, ValueError):
            return None
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer is not None, expr
        assert "success" == answer["status"], (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.log.read_text()[-3000:]}")


def grafana_to_promql(expr: str) -> str:
    """Replace the dashboard's variables as Grafana would with "All" selected."""
    expr = expr.replace("$database", ".+").replace("$collection", ".+")
    return re.sub(r"\$__rate_interval", "10s", expr)


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
