"""Late, lost and slow answers, over the wire: a hand-out is never held by nobody or by two.

Each test runs a SecantusDB of its own, which it stops (``SIGSTOP``) or puts
behind a loopback proxy that delays replies or rewrites the server's clock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from exporter.secantus import SecantusServer
from sessionlib import MongoSessions, OperationTimeoutError, ServerClockError
from tests.support.wire_proxy import WireProxy

pytestmark = pytest.mark.wire


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SecantusServer]:
    with SecantusServer(tmp_path / "db") as running:
        yield running


@pytest.fixture
def proxy(server: SecantusServer) -> Iterator[WireProxy]:
    with WireProxy(server.port) as running:
        yield running


class Stopped:
    """The server stopped with SIGSTOP (it hangs: connections stay open), then resumed."""

    def __init__(self, server: SecantusServer) -> None:
        assert server.pid is not None
        self.pid = server.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *_: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


async def one_session(url: str, **settings: Any) -> MongoSessions:
    pool = await MongoSessions(url, db="replies", collection="pool", **settings).connect()
    await pool.sessions.delete_many({})
    await pool.add({"_id": 1, "session": {}})
    return pool


async def raw(url: str) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        return await client["replies"]["pool"].find_one({"_id": 1}) or {}
    finally:
        await client.close()


# -- 1. a late reply ------------------------------------------------------------------


async def test_a_hold_is_measured_from_when_the_server_takes_the_session(
    server: SecantusServer,
) -> None:
    first = await one_session(server.url)
    second = await MongoSessions(server.url, db="replies", collection="pool").connect()
    try:
        with Stopped(server):  # the command waits in the socket for 4.5 s; the hold is 3 s
            asking = asyncio.create_task(first.get_session(next_use_delay=3))
            await asyncio.sleep(4.5)
        taken = await asking
        assert taken is not None
        assert await second.get_session() is None  # the first holds it: not two at once
        left = (taken["next_use"] - datetime.now(UTC)).total_seconds()
        assert 2.0 < left <= 3.0
    finally:
        await first.close()
        await second.close()


async def test_a_reply_that_arrives_after_the_hold_is_held_again_before_it_is_handed_over(
    server: SecantusServer, proxy: WireProxy
) -> None:
    first = await one_session(proxy.url)
    second = await MongoSessions(server.url, db="replies", collection="pool").connect()
    try:
        proxy.delays["findAndModify"] = 3.5  # the server answers at once; the reply is late
        proxy.once.add("findAndModify")
        taken = await first.get_session(next_use_delay=3)
        assert taken is not None
        assert await second.get_session() is None
        # Held again for the hold and twice the time the late reply took.
        left = (taken["next_use"] - datetime.now(UTC)).total_seconds()
        assert 3.0 <= left <= 3.0 + 2 * 4.0
        assert taken["lease"] == (await raw(server.url))["lease"]
    finally:
        await first.close()
        await second.close()


async def test_a_session_is_given_back_when_holding_it_again_is_late_too(
    server: SecantusServer, proxy: WireProxy
) -> None:
    first = await one_session(proxy.url)
    second = await MongoSessions(server.url, db="replies", collection="pool").connect()
    try:
        # Late by 1.2 s against a 1 s hold; held again for 1 + 2.4 s, whose reply
        # takes 3.5 s: late again.
        proxy.delays["findAndModify"] = [1.2, 3.5]
        assert await first.get_session(next_use_delay=1) is None
        stored = await raw(server.url)
        assert stored["next_use"] is None  # released, fenced by the lost hand-out's lease
        assert await second.get_session() is not None
    finally:
        proxy.delays.clear()
        await first.close()
        await second.close()


# -- 2. a lost reply -------------------------------------------------------------------


async def lost_hand_out(server: SecantusServer, pool: MongoSessions) -> None:
    """A hand-out whose reply is lost (timeout), and which the server applies later."""
    with Stopped(server), pytest.raises(OperationTimeoutError):
        await pool.get_session(next_use_delay=600)  # a 10-minute lease
    deadline = time.monotonic() + 10
    while not (await raw(server.url)).get("lease"):  # the server applied it after all
        assert time.monotonic() < deadline, "the lost command was never applied"
        await asyncio.sleep(0.05)


async def test_a_lost_hand_out_is_given_back_at_the_next_contact(
    server: SecantusServer,
) -> None:
    pool = await one_session(server.url, timeout=1, max_allowed_reconnect=0)
    try:
        await lost_hand_out(server, pool)
        assert 0 == await pool.count_active()  # held for 10 minutes by nobody...

        taken = await pool.get_session(next_use_delay=0)  # ...until this pool's next hand-out

        assert taken is not None
        assert "the reply to its hand-out was lost" == (await raw(server.url))["reason"]
    finally:
        await pool.close()


async def test_close_gives_back_a_lost_hand_out(server: SecantusServer) -> None:
    pool = await one_session(server.url, timeout=1, max_allowed_reconnect=0)
    await lost_hand_out(server, pool)

    await pool.close()

    assert (await raw(server.url))["next_use"] is None


async def test_a_give_back_never_touches_a_later_holder(server: SecantusServer) -> None:
    pool = await one_session(server.url, timeout=1, max_allowed_reconnect=0)
    other = await MongoSessions(server.url, db="replies", collection="pool").connect()
    try:
        await lost_hand_out(server, pool)
        await other.sessions.update_one({"_id": 1}, {"$set": {"next_use": None}})
        later = await other.get_session(next_use_delay=60)  # handed to someone else meanwhile
        assert later is not None

        assert await pool.get_session() is None  # gives back nothing: the lease is not its own

        assert later["lease"] == (await raw(server.url))["lease"]
    finally:
        await pool.close()
        await other.close()


# -- 3. a clock reading taken during a stall -------------------------------------------


async def test_a_clock_reading_with_a_long_round_trip_is_not_trusted(
    proxy: WireProxy,
) -> None:
    pool = await one_session(proxy.url, clock_sync_interval=0.1)
    try:
        clock = pool.connector.clock  # type: ignore[union-attr]
        before = clock.offset
        proxy.delays["hello"] = 2.0
        await asyncio.sleep(0.2)
        await pool.count_active()  # the reading is due: it starts, and takes 2 s
        await asyncio.sleep(2.5)
        assert clock.uncertainty() < 0.1  # the quick reading is kept
        assert before == clock.offset
    finally:
        proxy.delays.clear()
        await pool.close()


# -- 4. the time bound holds, clock reading included ------------------------------------


@pytest.mark.parametrize(
    "call",
    ["get_session", "aggregate_statistics", "count_active"],
)
async def test_a_due_clock_reading_does_not_extend_the_time_bound(
    server: SecantusServer, call: str
) -> None:
    pool = await one_session(
        server.url, timeout=1, max_allowed_reconnect=0, clock_sync_interval=0.1
    )
    try:
        await asyncio.sleep(0.2)  # a reading is due
        with Stopped(server):
            started = time.monotonic()
            with pytest.raises(OperationTimeoutError):
                await getattr(pool, call)()
            took = time.monotonic() - started
        assert took < 1.5, f"{call} took {took:.2f} s (bound: 1 s)"
    finally:
        await pool.close()


# -- 5. a server whose clock is absurd ---------------------------------------------------


@pytest.mark.parametrize(
    "reads",
    [datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1)],
)
async def test_a_server_whose_clock_is_absurd_is_refused(proxy: WireProxy, reads: datetime) -> None:
    proxy.local_time = reads
    pool = MongoSessions(proxy.url, db="replies", collection="pool")
    with pytest.raises(ServerClockError, match=f"server's clock reads {reads.year:04d}"):
        await pool.connect()
    assert not pool.connected


async def test_a_later_absurd_reading_is_ignored(proxy: WireProxy) -> None:
    pool = await one_session(proxy.url, clock_sync_interval=0.1)
    try:
        proxy.local_time = datetime(1970, 1, 1)
        await asyncio.sleep(0.2)
        await pool.count_active()  # starts the reading
        await asyncio.sleep(0.5)
        taken = await pool.get_session(next_use_delay=3)
        assert taken is not None
        assert abs(pool.connector.clock.offset or 0) < 1  # type: ignore[union-attr]
        left = taken["next_use"] - datetime.now(UTC)
        assert timedelta(seconds=2) < left <= timedelta(seconds=3)
    finally:
        await pool.close()
