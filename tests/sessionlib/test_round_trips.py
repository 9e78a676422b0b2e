"""Every hand-out and per-session write is one command; statistics are one per pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from benchmarks.backends import CommandCounter
from sessionlib import MongoSessions
from tests.support.clock import MovableClock

pytestmark = pytest.mark.wire


@pytest.fixture
async def counted(
    wire_url: str, db_name: str, clock: MovableClock
) -> AsyncIterator[tuple[MongoSessions, CommandCounter]]:
    commands = CommandCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        wire_url, tz_aware=True, event_listeners=[commands]
    )
    async with MongoSessions(db=db_name, collection="pool", client=client, clock=clock) as pool:
        for number in range(3):
            await pool.add({"_id": number, "session": {}})
        yield pool, commands
    await client.drop_database(db_name)
    await client.close()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("get_session", ["findAndModify"]),
        ("session_success", ["update"]),
        ("session_lock", ["update"]),
        ("session_block", ["update"]),
        ("session_inactive", ["update"]),
        ("session_release", ["update"]),
        ("session_activate", ["update"]),
        ("count_active", ["aggregate"]),
        ("aggregate_statistics", ["aggregate"]),
    ],
)
async def test_one_command_per_operation(
    counted: tuple[MongoSessions, CommandCounter], call: str, expected: list[str]
) -> None:
    pool, commands = counted
    method = getattr(pool, call)
    args = () if call in {"get_session", "count_active", "aggregate_statistics"} else ({"_id": 1},)
    commands.names.clear()

    await method(*args)

    assert expected == commands.names
