"""The job tracker under APScheduler: no overlapping runs, one warning per overrun, quiet stops."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.scheduler import JobTracker


async def test_a_job_cancelled_at_shutdown_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tracker = JobTracker()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        tracker.track("refresh", 60, forever),
        "interval",
        seconds=60,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)

    cancelled = await tracker.drain(0.1)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)

    assert 1 == cancelled
    assert [] == [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "stopped the refresh job, still running at shutdown" in caplog.text


async def test_an_overrun_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    now = [0.0]
    tracker = JobTracker(monotonic=lambda: now[0])
    release = asyncio.Event()
    runs: list[str] = []

    async def slow() -> None:
        runs.append("slow")
        await release.wait()

    async def quick() -> None:
        runs.append("quick")

    job = tracker.track("refresh", 1.0, slow)
    first = asyncio.create_task(job())
    await asyncio.sleep(0)
    for tick in range(1, 6):  # five runs fall due while the first goes on
        now[0] = float(tick)
        await job()
    release.set()
    await first

    assert ["slow"] == runs
    assert 1 == caplog.text.count("the refresh job has been running for 1.0 s")
    now[0] = 10.0
    await tracker.track("refresh", 1.0, quick)()
    assert "the refresh job runs within its interval again" in caplog.text


async def test_a_run_asked_for_early_while_one_goes_on_is_skipped_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Discovery asks for a refresh at once; one that started 0.0 s ago is no overrun."""
    caplog.set_level(logging.DEBUG)
    now = [0.0]
    tracker = JobTracker(monotonic=lambda: now[0])
    release = asyncio.Event()
    runs: list[float] = []

    async def refresh() -> None:
        runs.append(now[0])
        await release.wait()

    job = tracker.track("refresh", 15.0, refresh)
    first = asyncio.create_task(job())
    await asyncio.sleep(0)
    await job()  # asked for at once, while the first run goes on
    now[0] = 14.9
    await job()
    release.set()
    await first

    assert [0.0] == runs
    assert [] == [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert 2 == caplog.text.count("the refresh job is running already; this run is skipped")
