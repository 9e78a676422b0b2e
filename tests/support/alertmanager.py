"""A real Alertmanager on loopback with the shipped configuration, and the shipped receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporter.secantus import free_port
from tests.support.deploy import ALERTMANAGER, DEPLOY
from tests.support.prometheus import http_get, stop


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


class WebhookReceiver:
    """``deploy/alertmanager/webhook_log.py`` on a free loopback port, writing to a file."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.output = folder / "notifications.jsonl"
        self.log = folder / "webhook.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sessionpool"

    def __enter__(self) -> WebhookReceiver:
        script = DEPLOY / "alertmanager" / "webhook_log.py"
        command = [sys.executable, str(script), "--listen", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--output", str(self.output)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: b"listening" in self.log.read_bytes(), 30, "the receiver", self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.process)

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received so far: Alertmanager's webhook payloads."""
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]

    def alerts(self) -> list[tuple[float, dict[str, Any]]]:
        """Every alert of every notification, with the time its notification was read."""
        return [(time.time(), alert) for n in self.notifications() for alert in n["alerts"]]


def fast_config(target: Path, receiver_url: str) -> None:
    """The shipped configuration, its receiver at *receiver_url* and its waits cut to 1 s.

    Routes, grouping and inhibit rules are untouched.
    """
    config = yaml.safe_load(ALERTMANAGER.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = receiver_url
    target.write_text(yaml.safe_dump(config, sort_keys=False))


class Alertmanager:
    """``prometheus-alertmanager`` on a free loopback port with its own data folder."""

    def __init__(self, folder: Path, receiver_url: str) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        assert binary, "alertmanager is not installed: apt-get install prometheus-alertmanager"
        folder.mkdir(parents=True, exist_ok=True)
        fast_config(folder / "alertmanager.yml", receiver_url)
        self.port = free_port()
        self.log = folder / "alertmanager.log"
        self.command = [
            binary,
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Alertmanager:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.get("/-/ready") is not None, 60, "Alertmanager", self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.process)

    def get(self, path: str) -> Any:
        return http_get(self.port, path)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds, with their state (active or suppressed) and inhibitors."""
        found: list[dict[str, Any]] = self.get("/api/v2/alerts") or []
        return found
