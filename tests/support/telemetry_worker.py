"""A worker process that serves sessionlib's ``PoolMetrics``, for the Prometheus end-to-end test.

``python -m tests.support.telemetry_worker URL DB PORT`` takes sessions from
the pool ``healthy`` (and reports successes) and waits in vain for one from
the pool ``dry``, until it is terminated; it serves its metrics on
``127.0.0.1:PORT``. It makes one error and one stale report first, so that
every series the dashboard draws moves.

With ``--wait``, it serves its metrics (every counter at 0) and waits for a
line on its standard input before it does anything: a test can then see the
counters at 0 before their first event, as ``increase()`` needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from prometheus_client import CollectorRegistry, start_http_server

from sessionlib import (
    DuplicateSessionError,
    MongoSessions,
    NoSessionAvailableError,
    PoolMetrics,
    SessionPoolError,
    StaleLeaseError,
)


async def work(url: str, db: str, port: int, wait: bool) -> None:
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry=registry)
    async with MongoSessions(
        url, db=db, collection="healthy", metrics=metrics, fenced=True, timeout=10
    ) as healthy:
        dry = healthy.with_collection("dry")
        start_http_server(port, addr="127.0.0.1", registry=registry)
        if wait:
            await asyncio.to_thread(sys.stdin.readline)
        with contextlib.suppress(DuplicateSessionError):
            await healthy.add({"_id": 0, "session": {}})  # taken: an error
        first = await healthy.get_session(next_use_delay=0)
        assert first is not None, "the healthy pool gave no session"
        with contextlib.suppress(StaleLeaseError):
            await healthy.session_success({**first, "lease": "not-its-lease"})
        while True:
            try:
                session = await healthy.get_session(next_use_delay=0)
                if session is not None:
                    await healthy.session_success(session, next_use_delay=0)
                async with dry.lease(wait=0.2):
                    pass
            except NoSessionAvailableError:
                pass
            except SessionPoolError:  # the server is gone: go on, as a real worker would
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    url, db, port = sys.argv[1:4]
    asyncio.run(work(url, db, int(port), "--wait" in sys.argv[4:]))
