"""The exporter's lifecycle: start everything, serve until told to stop, stop cleanly.

Data flows one way::

    Discovery ──pools──▶ Refresher ──Snapshot──▶ State ──▶ collector ──▶ /metrics
                             ▲
    AutoRelease ──totals─────┘

The scheduler runs the three jobs; the HTTP server reads the published
snapshot from its own threads and never touches MongoDB.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry

from sessionlib import Client, SessionStore, redact_url

from .collector import SnapshotCollector
from .config import Config
from .demo import DEMO_DATABASE, DEMO_POOLS
from .discovery import Discovery
from .embedded import EmbeddedDemo
from .refresh import Refresher
from .release import AutoRelease
from .scheduler import JobTracker, build_scheduler
from .server import MetricsServer, make_app
from .snapshot import State

__all__ = ["SHUTDOWN_GRACE", "Exporter", "open_store"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0
"""Seconds in-flight jobs get to finish after a stop is requested, before they are cancelled."""


def open_store(config: Config, client: Client | None = None) -> SessionStore:
    """The exporter's connection to MongoDB, not opened yet (the first refresh opens it)."""
    return SessionStore(
        config.mongo_url,
        client=client,
        timeout=config.pool_timeout,
        max_allowed_reconnect=0,  # the next scheduled run is the retry
        app_name="sessionpool-exporter",
        legacy_timezone=config.legacy_timezone,
    )


class Exporter:
    """The daemon: embedded demo (optional), HTTP endpoint, scheduled jobs.

    Args:
        config: Validated settings.
        registry: Where the collector is registered; a fresh one by default.
        wall_clock: Returns Unix time.
    """

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.wall_clock = wall_clock
        self.state = State(config.interval, config.scope_limit)
        self.registry.register(SnapshotCollector(self.state))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until *stop* is set, then shut down within :data:`SHUTDOWN_GRACE` seconds.

        Raises:
            OSError: the HTTP port could not be bound.
            ServerStartError: the embedded server did not start.
        """
        config = self.config
        demo: EmbeddedDemo | None = None
        if config.embedded:
            log.info(
                "no --mongo-url given: starting the embedded demo (SecantusDB child process, "
                "data in %s, database %s with pools %s%s%s)",
                config.embedded_dir,
                DEMO_DATABASE,
                ", ".join(DEMO_POOLS),
                ", simulated workers" if config.demo_traffic else "",
                ", payloads encrypted" if config.demo_encrypted else "",
            )
            demo = EmbeddedDemo(
                config.embedded_dir,
                traffic=config.demo_traffic,
                registry=self.registry,
                encrypted=config.demo_encrypted,
            )
            url = await demo.start()
            # Demo data only: releasing its expired locks shows that metric moving too.
            config = replace(config, mongo_url=url, auto_release=True)
        server: MetricsServer | None = None
        store = open_store(config)
        try:
            server = MetricsServer(
                config, make_app(self.state, self.registry, config, self.wall_clock)
            )
            server.start()
            log.info(
                "serving metrics at %s/metrics for %s (refresh every %g s%s)",
                server.url,
                redact_url(config.mongo_url),
                config.interval,
                f", auto-release every {config.auto_release_interval:g} s"
                if config.auto_release
                else "",
            )
            discovery = Discovery(store, config)
            release = (
                AutoRelease(store, config, lambda: self.state.snapshot)
                if config.auto_release
                else None
            )
            refresher = Refresher(
                store, discovery, self.state, config, release=release, wall_clock=self.wall_clock
            )
            tracker = JobTracker()
            scheduler = build_scheduler(
                config, refresher=refresher, discovery=discovery, release=release, tracker=tracker
            )
            scheduler.start()
            await stop.wait()
            log.info("stopping")
            scheduler.pause()
            cancelled = await tracker.drain(SHUTDOWN_GRACE)
            if cancelled:
                log.warning(
                    "cancelled %d job(s) still running after %g s", cancelled, SHUTDOWN_GRACE
                )
            scheduler.shutdown(wait=False)
        finally:
            await store.close()
            if server is not None:
                server.stop()
            if demo is not None:
                await demo.stop()
        log.info("stopped")
