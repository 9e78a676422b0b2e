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


def fast_rules(target: Path) -> None:
    """The shipped rules with every ``for:`` shortened to 1 s; expressions untouched."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))


class Prometheus:
    """``prometheus`` on a free loopback port, with its own data folder, scraping exporters.

    *workers* are ports of worker processes serving sessionlib's ``PoolMetrics``
    (scraped as the job ``workers``).
    """

    def __init__(self, folder: Path, *exporter_ports: int, workers: tuple[int, ...] = ()) -> None:
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
