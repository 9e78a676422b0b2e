"""The embedded default: a local SecantusDB child process with the demo on it.

With no MongoDB URL the exporter starts SecantusDB (data in
``.sessionpool-demo/`` by default) and runs :class:`~exporter.demo.DemoTraffic`
on it, so every metric and dashboard panel moves on a fresh machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from .demo import DemoTraffic
from .secantus import SecantusServer

__all__ = ["EmbeddedDemo"]


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
        self.traffic = traffic
        self.registry = registry
        self.key_file = Path(data_dir).resolve() / "demo.key" if encrypted else None
        self._demo: DemoTraffic | None = None

    async def start(self) -> str:
        """Start the server and the demo; return the server's URL.

        Raises:
            ServerStartError: the server did not start.
            SessionPoolError: the demo pools could not be created.
        """
        await asyncio.to_thread(self.server.start)
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
            raise
        return self.server.url

    async def stop(self) -> None:
        """Stop the demo and the server."""
        if self._demo is not None:
            await self._demo.stop()
            self._demo = None
        await asyncio.to_thread(self.server.stop)
