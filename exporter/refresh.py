"""The refresh: read every pool's statistics and publish the next snapshot.

This is the only writer of :attr:`~exporter.snapshot.State.snapshot`. A
refresh pings MongoDB (``sessionpool_up`` means "MongoDB answered"; the ping
also reads the server's clock), reads the statistics of every known pool in
one command per database, and publishes the snapshot that
:func:`~exporter.snapshot.refreshed` computes. A pool that fails counts an
error against that pool only; the others are published as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sessionlib import PoolKey, PoolStatistics, SessionPoolError, SessionStore

from .config import Config
from .discovery import Discovery
from .release import AutoRelease
from .snapshot import Snapshot, State, refreshed

__all__ = ["Refresher"]

log = logging.getLogger(__name__)


class Refresher:
    """Refreshes the statistics of the pools discovery found.

    Args:
        store: The connection to MongoDB (opened here when needed).
        discovery: Which pools there are.
        state: Where snapshots are published.
        config: The exporter's settings.
        release: The auto-release job, whose totals each snapshot carries.
        wall_clock: Returns Unix time (a parameter so tests can fix it).
    """

    def __init__(
        self,
        store: SessionStore,
        discovery: Discovery,
        state: State,
        config: Config,
        *,
        release: AutoRelease | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.discovery = discovery
        self.state = state
        self.config = config
        self.release = release
        self.wall_clock = wall_clock
        self._was_up: bool | None = None
        self._failing: set[PoolKey] = set()

    async def reach(self) -> bool:
        """Connect if needed and ping; log only when reachability changes."""
        try:
            if self.store.connected:
                await self.store.ping()
            else:
                await self.store.open()
        except SessionPoolError as exc:
            if self._was_up is not False:
                log.warning(
                    "MongoDB at %s is unreachable: %s; serving sessionpool_up 0 and retrying "
                    "every %g s",
                    self.store.mongo_url,
                    exc,
                    self.config.interval,
                )
            self._was_up = False
            return False
        if self._was_up is False:
            log.info("MongoDB at %s is reachable again", self.store.mongo_url)
        self._was_up = True
        return True

    async def refresh(self) -> Snapshot:
        """Refresh every pool's statistics and publish the new snapshot.

        Returns:
            The published snapshot.
        """
        started = time.monotonic()
        up = await self.reach()
        if up and not self.discovery.succeeded:
            await self.discovery.run()  # first run, or MongoDB was down at start
        pools = self.discovery.pools
        outcomes: dict[PoolKey, PoolStatistics | SessionPoolError] = {}
        if up and pools:
            outcomes = await self.store.statistics(
                pools, offset=self.config.active_offset, concurrency=self.config.concurrency
            )
        statistics = {k: v for k, v in outcomes.items() if isinstance(v, PoolStatistics)}
        self._log_pool_changes(up, outcomes)
        snapshot = refreshed(
            self.state.snapshot,
            pools=pools,
            statistics=statistics,
            up=up,
            now=self.wall_clock(),
            duration=time.monotonic() - started,
            released=self.release.totals(pools) if self.release is not None else {},
            clock_offset=self.store.clock.offset if up else None,
            clock_error=self.store.clock.error if up else None,
        )
        self.state.snapshot = snapshot
        return snapshot

    def _log_pool_changes(
        self, up: bool, outcomes: dict[PoolKey, PoolStatistics | SessionPoolError]
    ) -> None:
        if not up:
            return  # reachability is logged once, by reach()
        failed = {key for key, outcome in outcomes.items() if isinstance(outcome, SessionPoolError)}
        for key in sorted(failed - self._failing):
            log.warning("refreshing pool %s failed: %s", key, outcomes[key])
        for key in sorted(self._failing - failed):
            if key in outcomes:
                log.info("pool %s refreshes again", key)
        self._failing = failed

    async def close(self) -> None:
        """Close the connection to MongoDB."""
        await self.store.close()
