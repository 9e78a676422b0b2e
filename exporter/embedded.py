"""The embedded default: a local SecantusDB child process with the demo on it.

With no MongoDB URL the exporter starts SecantusDB (data in
``.sessionpool-demo/`` by default) and runs :class:`~exporter.demo.DemoTraffic`
on it, so every metric and dashboard panel moves on a fresh machine.

A lock file in the data folder (``demo.lock``) names the exporter and the
server that use it. An exporter killed with ``kill -9`` cannot stop its
server, which then holds the data folder; the next start finds the lock,
stops that server (after checking it is SecantusDB on this folder), and
starts afresh. A folder in use by a live exporter is refused, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from .demo import DemoTraffic
from .secantus import SecantusServer, ServerStartError

__all__ = ["LOCK_FILE", "EmbeddedDemo"]

log = logging.getLogger(__name__)

LOCK_FILE = "demo.lock"
"""The lock file's name in the data folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, not ours to stop
        return True
    return True


def _command_line(pid: int) -> str:
    """The process's command line, or "" where /proc does not tell (not Linux, or gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class DemoLock:
    """The lock file of a demo data folder: who uses it, and which server they started."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE

    def read(self) -> dict[str, int] | None:
        try:
            found = json.loads(self.path.read_text())
            return {"owner": int(found["owner"]), "server": int(found["server"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def recover(self) -> None:
        """Stop the server a killed exporter left behind; refuse a folder a live one uses.

        Raises:
            ServerStartError: a live exporter uses the folder.
        """
        found = self.read()
        if found is None:
            return
        owner, server = found["owner"], found["server"]
        if owner != os.getpid() and _alive(owner) and "exporter" in _command_line(owner):
            raise ServerStartError(
                f"another sessionpool-exporter (pid {owner}) runs the demo in {self.data_dir}; "
                "stop it, or give this one --embedded-dir"
            )
        line = _command_line(server)
        if _alive(server) and "secantus" in line and str(self.data_dir) in line:
            log.warning(
                "stopping the demo server (pid %d) that an exporter which did not stop "
                "cleanly left running on %s",
                server,
                self.data_dir,
            )
            _stop_group(server)
        self.path.unlink(missing_ok=True)

    def write(self, server: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"owner": os.getpid(), "server": server}))

    def remove(self) -> None:
        found = self.read()
        if found is not None and found["owner"] == os.getpid():
            self.path.unlink(missing_ok=True)


def _stop_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid) and "secantus" in _command_line(pid):
        time.sleep(0.1)
    if _alive(pid) and "secantus" in _command_line(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


class EmbeddedDemo:
    """The demo server and its simulated traffic.

    Args:
        data_dir: Folder of the server's data; kept between runs.
        traffic: Whether to simulate workers.
        registry: Where the simulated workers' telemetry goes (the exporter's
            own, so its ``/metrics`` shows the workers' series too).
        encrypted: Whether the demo pools' payloads are encrypted, with the
            master key file ``demo.key`` in *data_dir* (made if missing).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        traffic: bool = True,
        registry: CollectorRegistry | None = None,
        encrypted: bool = False,
    ) -> None:
        self.server = SecantusServer(Path(data_dir).resolve())
        self.lock = DemoLock(Path(data_dir).resolve())
        self.traffic = traffic
        self.registry = registry
        self.key_file = Path(data_dir).resolve() / "demo.key" if encrypted else None
        self._demo: DemoTraffic | None = None

    async def start(self) -> str:
        """Start the server and the demo; return the server's URL.

        Raises:
            ServerStartError: the server did not start, or another exporter
                runs the demo in the same folder.
            SessionPoolError: the demo pools could not be created.
        """
        await asyncio.to_thread(self.lock.recover)
        await asyncio.to_thread(self.server.start)
        assert self.server.pid is not None
        self.lock.write(self.server.pid)
        try:
            self._demo = DemoTraffic(
                self.server.url,
                traffic=self.traffic,
                registry=self.registry,
                key_file=self.key_file,
            )
            await self._demo.start()
        except BaseException:
            await asyncio.to_thread(self.server.stop)
            self.lock.remove()
            raise
        return self.server.url

    async def stop(self) -> None:
        """Stop the demo and the server."""
        if self._demo is not None:
            await self._demo.stop()
            self._demo = None
        await asyncio.to_thread(self.server.stop)
        self.lock.remove()
