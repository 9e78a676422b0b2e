"""The exporter's schedule: refresh, discovery and auto-release as APScheduler jobs.

Each job runs as one instance at a time (``max_instances=1``); runs missed
while one was still going are coalesced into one, and dropped once they are
more than one interval late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config
from .refresh import Refresher

__all__ = ["JobTracker", "build_scheduler"]


class JobTracker:
    """Knows which jobs are running, so a shutdown can let them finish within a bound.

    (APScheduler's own ``shutdown`` cancels running coroutine jobs at once.)
    """

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()

    def track(self, func: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """Return a job that runs *func* while registered as running."""

        async def job() -> None:
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                await func()
            finally:
                self.running.discard(task)

        job.__name__ = getattr(func, "__name__", "job")
        return job

    async def drain(self, grace: float) -> int:
        """Wait up to *grace* seconds for running jobs, cancel the rest; return how many."""
        if not self.running:
            return 0
        _, pending = await asyncio.wait(set(self.running), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


def build_scheduler(config: Config, refresher: Refresher, tracker: JobTracker) -> AsyncIOScheduler:
    """Return a scheduler (not started) with the exporter's jobs.

    The first refresh runs at once (it discovers the pools on its way);
    discovery then repeats on its own interval; auto-release runs only when
    enabled.
    """
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)

    def every(
        job_id: str, seconds: float, first: datetime, func: Callable[[], Awaitable[Any]]
    ) -> None:
        scheduler.add_job(
            tracker.track(func),
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )

    every("refresh", config.interval, now, refresher.refresh)
    every(
        "discovery",
        config.discovery_interval,
        now + timedelta(seconds=config.discovery_interval),
        refresher.discover,
    )
    if config.auto_release:
        every(
            "auto_release",
            config.auto_release_interval,
            now + timedelta(seconds=min(config.auto_release_interval, config.interval)),
            refresher.release,
        )
    return scheduler
