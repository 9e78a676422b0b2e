"""Waiting for a session, and holding one for the body of an ``async with``.

Waiting polls with exponential backoff and full jitter, never sleeping past
the moment the earliest locked session frees up, nor past the deadline. Time
comes from the pool's clock and pauses from its ``sleep``, so tests move a
clock instead of sleeping.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from .exceptions import NoSessionAvailableError, SessionPoolError
from .lease import Lease, Report, report_for
from .validation import delay_to_timedelta

if TYPE_CHECKING:
    from .client import MongoSessions

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "hold_lease", "wait_for_session"]

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.05
"""Seconds of the first pause while waiting; doubles each time."""
BACKOFF_CAP = 2.0
"""The longest pause while waiting, in seconds."""


def _describe(pool: MongoSessions, next_at: datetime | None, now: datetime) -> str:
    where = f"{pool.db_name}.{pool.collection_name}"
    if next_at is None:
        return (
            f"no session available in {where}, and none is locked either: "
            "the pool is empty or all its sessions are inactive"
        )
    seconds = max(0.0, (next_at - now).total_seconds())
    return (
        f"no session available in {where}; the next one frees up at "
        f"{next_at.isoformat(timespec='seconds')} (in {seconds:.0f} s)"
    )


async def wait_for_session(
    pool: MongoSessions, *, wait: float, count_use: int = 1, hold: float | None = None
) -> Lease:
    """Return a lease on a session of *pool*, polling for up to *wait* seconds.

    Raises:
        NoSessionAvailableError: none became available in time.
        InvalidInputError: *wait* is negative or not a number.
    """
    budget = delay_to_timedelta(wait, 0)  # validates: a finite, non-negative number
    deadline = pool.clock() + budget
    attempt = 0
    while True:
        lease = await pool.acquire(count_use, hold)
        if lease is not None:
            return lease
        next_at = await pool.next_available_at()
        now = pool.clock()
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            raise NoSessionAvailableError(_describe(pool, next_at, now), next_available_at=next_at)
        pause = random.uniform(0.5, 1.0) * min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
        if next_at is not None:
            # Wake when the next session frees up, if that is sooner.
            pause = min(pause, max((next_at - now).total_seconds(), 0.0) + 0.001)
        await pool.sleep(min(pause, remaining))
        attempt += 1


@asynccontextmanager
async def hold_lease(
    pool: MongoSessions,
    *,
    hold: float | None,
    count_use: int,
    wait: float | None,
    on_error: Mapping[type[BaseException] | tuple[type[BaseException], ...], Report],
    success_delay: float | None,
) -> AsyncIterator[Lease]:
    """The context manager behind :meth:`MongoSessions.lease`."""
    lease = await wait_for_session(pool, wait=wait or 0, count_use=count_use, hold=hold)
    try:
        yield lease
    except BaseException as error:
        report = report_for(on_error, error)
        if report is not None and lease.reported is None:
            try:
                await report.apply(lease)
            except SessionPoolError as exc:
                # The body's exception is what the caller must see; say why the report failed.
                log.warning(
                    "could not report %s for session %r after %s: %s",
                    type(report).__name__,
                    lease.get("_id"),
                    type(error).__name__,
                    exc,
                )
        raise
    if lease.reported is None:
        await lease.success(next_use_delay=success_delay)
