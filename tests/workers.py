"""Code run in child processes by the multi-process tests (importable under spawn)."""

from __future__ import annotations

import asyncio
from typing import Any

from sessionlib import MongoSessions


async def _drain(
    url: str, db: str, collection: str, delay: float, barrier: Any
) -> tuple[list[Any], bool]:
    taken: list[Any] = []
    async with MongoSessions(url, db=db, collection=collection, timeout=30) as pool:
        await pool.count_active()  # connected and warm: now start together
        barrier.wait()
        while True:
            session = await pool.get_session(next_use_delay=delay)
            if session is None:
                return taken, True
            taken.append(session["_id"])


def drain_pool(
    url: str, db: str, collection: str, delay: float, barrier: Any
) -> tuple[list[Any], bool]:
    """Take sessions until the pool returns None; return the ids taken and that None came.

    All workers pass *barrier* (a ``multiprocessing`` barrier) once connected,
    so they really take sessions at the same time.
    """
    return asyncio.run(_drain(url, db, collection, delay, barrier))
