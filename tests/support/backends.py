"""The backends the behavioural suite runs on, and direct reads of a pool's documents.

* ``mock``: mongomock-motor, in process (fast, Python only);
* ``pymongo``: PyMongo's ``AsyncMongoClient`` over the MongoDB wire protocol;
* ``motor``: a Motor client (without ``tz_aware``, as existing workers create it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient

from sessionlib import MongoSessions

BACKENDS = [
    "mock",
    pytest.param("pymongo", marks=pytest.mark.wire),
    pytest.param("motor", marks=pytest.mark.wire),
]


def new_client(backend: str, url: str | None) -> Any:
    """A client of *backend* (``mock``, ``pymongo`` or ``motor``) for the server at *url*."""
    if backend == "mock":
        return AsyncMongoMockClient(tz_aware=True)
    if backend == "pymongo":
        return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    if backend == "motor":
        # As existing workers create it: no tz_aware; sessionlib must cope.
        return AsyncIOMotorClient(url, serverSelectionTimeoutMS=10_000)
    raise AssertionError(backend)


async def close_client(client: Any) -> None:
    """Close *client*, whose ``close`` is a coroutine on PyMongo's async client only."""
    result = client.close()
    if hasattr(result, "__await__"):
        await result


def run_with_client(new_client: Callable[[], Any], body: Callable[[Any], Awaitable[None]]) -> None:
    """Run *body* with a fresh client in a fresh event loop (a property test's example)."""

    async def scenario() -> None:
        client = new_client()
        try:
            await body(client)
        finally:
            await close_client(client)

    asyncio.run(scenario())


async def documents(pool: MongoSessions) -> list[dict[str, Any]]:
    """Every document of the pool's collection, read directly, sorted by _id."""
    return list(await pool.sessions.find({}).sort("_id", 1).to_list(None))
