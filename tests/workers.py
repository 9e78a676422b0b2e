"""Code run in child processes by the multi-process tests (importable under spawn)."""

from __future__ import annotations

import asyncio
from typing import Any

from sessionlib import MongoSessions


async def _drain(url: str, db: str, collection: str, delay: float) -> tuple[list[Any], bool]:
    taken: list[Any] = []
    async with MongoSessions(url, db=db, collection=collection, timeout=30) as pool:
        while True:
            session = await pool.get_session(next_use_delay=delay)
            if session is None:
                return taken, True
            taken.append(session["_id"])


def drain_pool(
    url: str, db: str, collection: str, delay: float, start: Any
) -> tuple[list[Any], bool]:
    """Take sessions until the pool returns None; return the ids taken and that None came."""
    start.wait()
    return asyncio.run(_drain(url, db, collection, delay))
