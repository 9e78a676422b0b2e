"""A real Prometheus on loopback, with the shipped rules, for end-to-end tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporter.secantus import free_port
from tests.support.deploy import RULES

UNITS = {"s": 1, "m": 60, "h": 3600}


def http_get(port: int, path: str) -> Any:
    """GET *path* on a loopback port: JSON for ``/api/`` paths, else text; ``None`` if down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            body = r.read().decode()
    except (OSError, ValueError):
        return None
    return json.loads(body) if path.startswith("/api/") else body


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a child, then kill it if it lingers."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def fast_rules(target: Path, scale: float | None = None) -> None:
    """The shipped rules with every ``for:`` shortened; expressions untouched.

    Without *scale*, every ``for:`` becomes 1 s. With it, each is multiplied
    by *scale* (at least 1 s), so the alerts keep their order: scale the
    refresh, scrape and evaluation intervals alike (15 s to 1 s is 1/15).
    """
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                seconds = int(rule["for"][:-1]) * UNITS[rule["for"][-1]]
                rule["for"] = "1s" if scale is None else f"{max(1, round(seconds * scale))}s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))


class Prometheus:
    """``prometheus`` on a free loopback port, with its own data folder, scraping exporters.

    *workers* are ports of worker processes serving sessionlib's ``PoolMetrics``
    (scraped as the job ``workers``); *alertmanager* is the port of an
    Alertmanager to send alerts to; *rule_scale* scales the rules' ``for:``
    (see :func:`fast_rules`; default: all 1 s).
    """

    def __init__(
        self,
        folder: Path,
        *exporter_ports: int,
        workers: tuple[int, ...] = (),
        alertmanager: int | None = None,
        rule_scale: float | None = None,
    ) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: apt-get install prometheus (see .ci/run)"
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        fast_rules(folder / "rules.yml", rule_scale)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {
                    "job_name": "sessionpool",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}" for port in exporter_ports]}
                    ],
                },
                {
                    "job_name": "workers",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in workers]}],
                },
            ],
        }
        if alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager}"]}]}]
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
        stop(self.process)

    def get(self, path: str) -> Any:
        return http_get(self.port, path)

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
