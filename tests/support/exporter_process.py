"""Run the exporter as a real subprocess and scrape it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from prometheus_client.parser import text_string_to_metric_families

from exporter.secantus import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def up_is(value: int) -> Callable[[Samples], bool]:
    """A condition for :meth:`ExporterProcess.wait_for_sample`: ``sessionpool_up`` is *value*."""
    return lambda samples: samples.get(("sessionpool_up", frozenset())) == value


def pool_value(samples: Samples, name: str, database: str, collection: str, **labels: str) -> float:
    key = frozenset({"database": database, "collection": collection, **labels}.items())
    return samples[(name, key)]


class ExporterProcess:
    """``python -m exporter ARGS`` on a free loopback port, its log in *log_path*.

    *env* replaces the environment (default: this process's); *command*
    replaces ``python -m exporter`` (e.g. the console script).
    """

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.command = command or [sys.executable, "-m", "exporter"]
        self.args = ["--listen", "127.0.0.1", "--port", str(self.port), *args]
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        self.wait_for(lambda: self.get("/healthz")[0] == 200, ready_timeout, "the endpoint")
        return self

    def get(
        self, path: str, timeout: float = 5, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, ""

    def scrape(self) -> Samples:
        status, text = self.get("/metrics")
        assert 200 == status, text
        return parse(text)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll *condition* until true; fail with the exporter's log after *timeout* s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited ({self.process.returncode}):\n{self.log()}")
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; exporter log:\n{self.log()}")

    def wait_for_sample(
        self, condition: Callable[[Samples], bool], timeout: float, what: str
    ) -> Samples:
        found: list[Samples] = []

        def check() -> bool:
            samples = self.scrape()
            found[:] = [samples]
            return condition(samples)

        self.wait_for(check, timeout, what)
        return found[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then wait; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"exporter did not stop on SIGTERM:\n{self.log()}") from None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
