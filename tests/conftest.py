"""Shared fixtures: a movable clock, the real wire server, and pools on every backend.

Backends:

* ``mock``: mongomock-motor, in process (fast, Python only);
* ``pymongo``: PyMongo's ``AsyncMongoClient`` over the MongoDB wire protocol;
* ``motor``: a Motor client (without ``tz_aware``, as existing workers create it).

The wire server is SecantusDB started as a child process on a free loopback
port, or the server named by the ``MONGO_URL`` environment variable. Each
test gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient

from exporter.secantus import SecantusServer
from sessionlib import MongoSessions

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class MovableClock:
    """A clock tests move by hand; starts at :data:`START`."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="session")
def wire_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the real wire server: ``MONGO_URL`` or a SecantusDB child process."""
    url = os.environ.get("MONGO_URL")
    if url:
        yield url
        return
    server = SecantusServer(Path(tmp_path_factory.mktemp("secantus")))
    with server:
        yield server.url


def new_client(backend: str, url: str | None) -> Any:
    if backend == "mock":
        return AsyncMongoMockClient(tz_aware=True)
    if backend == "pymongo":
        return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    if backend == "motor":
        # As existing workers create it: no tz_aware; sessionlib must cope.
        return AsyncIOMotorClient(url, serverSelectionTimeoutMS=10_000)
    raise AssertionError(backend)


async def close_client(client: Any) -> None:
    result = client.close()
    if hasattr(result, "__await__"):
        await result


BACKENDS = [
    "mock",
    pytest.param("pymongo", marks=pytest.mark.wire),
    pytest.param("motor", marks=pytest.mark.wire),
]
WIRE_BACKENDS = [
    pytest.param("pymongo", marks=pytest.mark.wire),
    pytest.param("motor", marks=pytest.mark.wire),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(backend: str, request: pytest.FixtureRequest, db_name: str) -> AsyncIterator[Any]:
    """A client of the test's backend; its test database is dropped afterwards."""
    url = request.getfixturevalue("wire_url") if backend != "mock" else None
    client = new_client(backend, url)
    try:
        yield client
    finally:
        await client.drop_database(db_name)
        await close_client(client)


@pytest.fixture
async def pool(client: Any, db_name: str, clock: MovableClock) -> AsyncIterator[MongoSessions]:
    """A connected pool ``<fresh db>.telegram`` on the test's backend, with a movable clock."""
    async with MongoSessions(
        db=db_name, collection="telegram", client=client, clock=clock, timeout=15
    ) as pool:
        yield pool


async def documents(pool: MongoSessions) -> list[dict[str, Any]]:
    """Every document of the pool's collection, read directly, sorted by _id."""
    return list(await pool.sessions.find({}).sort("_id", 1).to_list(None))


def utc(value: datetime | None) -> datetime | None:
    """*value* as aware UTC (Motor without tz_aware returns naive UTC datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed resource fails the test that leaked it."""
    yield
    gc.collect()
