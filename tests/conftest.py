"""Shared fixtures: a movable clock, the real wire server, and pools on every backend.

The wire server is SecantusDB started as a child process on a free loopback
port, or the server named by the ``MONGO_URL`` environment variable. Each
test gets a fresh database, dropped afterwards. Helpers live in
:mod:`tests.support`; this file holds fixtures only.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.secantus import SecantusServer
from sessionlib import MongoSessions
from tests.support.backends import BACKENDS, close_client, new_client
from tests.support.clock import MovableClock
from tests.support.faults import BlackholeProxy


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


@pytest.fixture(scope="session")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    """A SecantusDB of the tests' own, with fail points enabled."""
    with SecantusServer(Path(tmp_path_factory.mktemp("faults")), test_commands=True) as server:
        yield server


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[SecantusServer, BlackholeProxy]]:
    """A SecantusDB behind a loopback proxy that can turn into a black hole."""
    with SecantusServer(tmp_path / "db") as server, BlackholeProxy(server.port) as proxy:
        yield server, proxy


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


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed resource fails the test that leaked it."""
    yield
    gc.collect()
