"""Waiting on a pool's change stream, over the wire: no polls while nothing changes.

Waiters share one change stream per pool (see :mod:`sessionlib.watching`).
The loopback proxy (:class:`~tests.support.wire_proxy.WireProxy`) counts what
they send and, told to, refuses ``$changeStream`` as a standalone mongod does.
Releases come from another process, straight to the server.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.secantus import SecantusServer
from sessionlib import MongoSessions, NoSessionAvailableError
from tests.support.wire_proxy import WireProxy

pytestmark = pytest.mark.wire

LOCKED = 5
WAITERS = 50

RELEASER = """
import asyncio, sys, time
from sessionlib import MongoSessions

async def main(url, collection, count, spacing):
    async with MongoSessions(url, "waiting", collection) as pool:
        for number in range(count):
            await asyncio.sleep(spacing)
            print(number, time.time(), flush=True)
            await pool.session_release({"_id": number})

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    with SecantusServer(Path(tmp_path_factory.mktemp("waiting")) / "db") as running:
        yield running


@pytest.fixture
def proxy(server: SecantusServer) -> Iterator[WireProxy]:
    with WireProxy(server.port) as running:
        yield running


async def locked_pool(url: str, collection: str, sessions: int = LOCKED) -> None:
    async with MongoSessions(url, "waiting", collection) as pool:
        for number in range(sessions):
            await pool.add({"_id": number, "session": {"n": number}})
            await pool.session_lock({"_id": number}, {"hours": 1})


def release_from_another_process(url: str, collection: str, spacing: float) -> dict[int, float]:
    """Release sessions 0..LOCKED-1 one by one; return when each was released (epoch seconds)."""
    done = subprocess.run(
        [sys.executable, "-c", RELEASER, url, collection, str(LOCKED), str(spacing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {int(n): float(t) for n, t in (line.split() for line in done.stdout.splitlines())}


async def wait_on(pool: MongoSessions, wait: float, got: list[tuple[int, float, str]]) -> None:
    try:
        async with pool.lease(wait=wait, hold=3600, success_delay=3600) as lease:
            got.append((lease["_id"], time.time(), lease.token))
    except NoSessionAvailableError:
        pass


async def test_waiters_send_nothing_while_nothing_changes_and_wake_one_per_release(
    server: SecantusServer, proxy: WireProxy
) -> None:
    await locked_pool(server.url, "idle")
    got: list[tuple[int, float, str]] = []
    async with MongoSessions(proxy.url, "waiting", "idle") as pool:
        waiters = [asyncio.create_task(wait_on(pool, 8, got)) for _ in range(WAITERS)]
        await asyncio.sleep(1.5)  # every waiter asked once and waits
        proxy.commands.clear()
        await asyncio.sleep(1.5)
        idle = list(proxy.commands)

        releaser = asyncio.to_thread(release_from_another_process, server.url, "idle", 0.3)
        released = await releaser
        await asyncio.sleep(0.5)
        attempts = proxy.commands.count("findAndModify") - len(got)  # the winners' reports
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    assert 0 == idle.count("findAndModify") + idle.count("find")
    assert sorted(released) == sorted(number for number, _, _ in got)  # each taken once
    assert LOCKED == len({token for _, _, token in got})
    wakes = [at - released[number] for number, at, _ in got]
    assert statistics.median(wakes) < 0.050, wakes
    assert attempts <= 2 * LOCKED  # one per release (and the reports' own changes)


async def test_a_lock_that_ends_wakes_a_waiter_without_any_change(
    server: SecantusServer, proxy: WireProxy
) -> None:
    async with MongoSessions(server.url, "waiting", "unlock") as pool:
        await pool.add({"_id": 0, "session": {}})
        await pool.session_lock({"_id": 0}, {"seconds": 1})
    got: list[tuple[int, float, str]] = []

    async def between(start: float, end: float) -> list[str]:
        await asyncio.sleep(start)
        proxy.commands.clear()
        await asyncio.sleep(end - start)
        return list(proxy.commands)

    async with MongoSessions(proxy.url, "waiting", "unlock") as pool:
        started = time.time()
        waiting = asyncio.gather(*(wait_on(pool, 2.5, got) for _ in range(10)))
        sent, _ = await asyncio.gather(between(0.5, 2.3), waiting)

    assert [0] == [number for number, _, _ in got]
    assert 0.9 < got[0][1] - started < 1.6
    # While waiting: the unlock's attempt, and one more for locks that ended with it.
    assert 2 == sent.count("findAndModify")
    assert 2 >= sent.count("find")  # what each of them learnt of the next lock's end


@pytest.mark.parametrize(
    "refusal",
    [
        (40573, "The $changeStream stage is only supported on replica sets"),
        (13, "not authorized on waiting to execute command { aggregate: ... $changeStream }"),
    ],
    ids=["standalone", "unauthorized"],
)
async def test_without_change_streams_waiters_poll_and_say_so_once(
    server: SecantusServer,
    proxy: WireProxy,
    caplog: pytest.LogCaptureFixture,
    refusal: tuple[int, str],
) -> None:
    proxy.no_change_streams = True
    proxy.change_stream_refusal = refusal
    collection = f"standalone_{refusal[0]}"
    await locked_pool(server.url, collection)
    got: list[tuple[int, float, str]] = []
    caplog.set_level(logging.INFO, logger="sessionlib.watching")
    async with MongoSessions(proxy.url, "waiting", collection) as pool:
        waiters = [asyncio.create_task(wait_on(pool, 10, got)) for _ in range(3)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(release_from_another_process, server.url, collection, 0.1)
        await asyncio.wait_for(asyncio.gather(*waiters), 10)

    assert 3 == len({number for number, _, _ in got})
    refused = [r for r in caplog.records if "no change streams" in r.getMessage()]
    assert 1 == len(refused)
    assert 0 < proxy.refused
    assert f"code {refusal[0]}" in refused[0].getMessage()


async def test_a_stream_cut_by_the_network_resumes_and_misses_no_release(
    server: SecantusServer, proxy: WireProxy
) -> None:
    await locked_pool(server.url, "blip", sessions=1)
    got: list[tuple[int, float, str]] = []
    async with MongoSessions(proxy.url, "waiting", "blip") as pool:
        waiters = [asyncio.create_task(wait_on(pool, 8, got)) for _ in range(3)]
        await asyncio.sleep(1.0)
        proxy.drop_connections()
        async with MongoSessions(server.url, "waiting", "blip") as other:
            released = time.time()
            await other.session_release({"_id": 0})
        await asyncio.wait_for(asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), 5)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    assert [0] == [number for number, _, _ in got]
    assert got[0][1] - released < 0.5  # the stream resumed after its last change
