"""The exporter's schedule: refresh, discovery and auto-release as APScheduler jobs.

Each job runs as one instance at a time. A run that falls due while the last
one is still going (a refresh slower than its interval, during an outage) is
skipped, and the overrun is logged once, when it starts, not at every skipped
run. A discovery that finds new or dropped pools asks for a refresh at once,
so a new pool's series appear without waiting for the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config
from .discovery import Discovery
from .refresh import Refresher
from .release import AutoRelease

__all__ = ["JobTracker", "build_scheduler"]

log = logging.getLogger(__name__)


class JobTracker:
    """Knows which jobs run, so runs never overlap and a shutdown can let them finish.

    (APScheduler's own ``shutdown`` cancels running coroutine jobs at once,
    and its ``max_instances`` warning repeats at every skipped run.)
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.running: dict[str, asyncio.Task[Any]] = {}
        self._monotonic = monotonic
        self._started: dict[str, float] = {}
        self._overrun: set[str] = set()
        self.stopping = False

    def track(
        self, name: str, interval: float, func: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        """Return a job that runs *func* as *name*, unless a run of *name* is still going.

        The first run found still going is logged; the next are not, until a
        run ends within *interval* seconds again.
        """

        async def job() -> None:
            if name in self.running:
                elapsed = self._monotonic() - self._started[name]
                if elapsed < interval:
                    # A run asked for early (discovery found new pools) while one goes on.
                    log.debug("the %s job is running already; this run is skipped", name)
                elif name not in self._overrun:
                    # Once per episode: an outage makes every run overrun.
                    self._overrun.add(name)
                    log.warning(
                        "the %s job has been running for %.1f s, longer than its interval; "
                        "runs are skipped while it overruns",
                        name,
                        elapsed,
                    )
                return
            task = asyncio.current_task()
            assert task is not None
            self.running[name] = task
            self._started[name] = started = self._monotonic()
            try:
                await func()
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
                log.info("stopped the %s job, still running at shutdown", name)
            finally:
                del self.running[name]
            if name in self._overrun and self._monotonic() - started < interval:
                self._overrun.discard(name)
                log.info("the %s job runs within its interval again", name)

        job.__name__ = name
        return job

    async def drain(self, grace: float) -> int:
        """Wait up to *grace* seconds for running jobs, cancel the rest; return how many."""
        self.stopping = True
        if not self.running:
            return 0
        _, pending = await asyncio.wait(set(self.running.values()), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


def build_scheduler(
    config: Config,
    *,
    refresher: Refresher,
    discovery: Discovery,
    release: AutoRelease | None,
    tracker: JobTracker,
) -> AsyncIOScheduler:
    """Return a scheduler (not started) with the exporter's jobs.

    The first refresh runs at once (it discovers the pools on its way);
    discovery then repeats on its own interval and asks for a refresh when
    the pools changed; auto-release runs only when enabled.
    """
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)

    def every(
        job_id: str, seconds: float, first: datetime, func: Callable[[], Awaitable[Any]]
    ) -> None:
        scheduler.add_job(
            tracker.track(job_id, seconds, func),
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            next_run_time=first,
            # The tracker skips overlapping runs itself, quietly; APScheduler
            # would warn at each one.
            max_instances=2,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )

    async def discover() -> None:
        if await discovery.run():
            scheduler.modify_job("refresh", next_run_time=datetime.now(UTC))

    every("refresh", config.interval, now, refresher.refresh)
    every(
        "discovery",
        config.discovery_interval,
        now + timedelta(seconds=config.discovery_interval),
        discover,
    )
    if release is not None:
        every(
            "auto_release",
            config.auto_release_interval,
            now + timedelta(seconds=min(config.auto_release_interval, config.interval)),
            release.run,
        )
    return scheduler
