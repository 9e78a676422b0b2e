"""Scale: statistics against the seed's counts, commands past MongoDB's limits, waiting.

Everything here is measured side by side in one run, on the wire backend:

* one pool's statistics, and a refresh of many pools of 50 sessions, ours
  against the seed design's four counts per pool (interleaved medians);
* the commands a refresh of 1 to 3,000 pools of one database sends, through
  a loopback proxy that refuses pipelines over 1,000 stages, as MongoDB 5.0
  and later do (the test server has no such limit);
* the commands an auto-release run sends, with and without expired locks;
* waiting: 50 waiters on a pool with nothing free, polling (the proxy refuses
  change streams, as a standalone mongod does) against change streams: what
  they send while nothing changes, and how soon a release made by another
  process is taken.

The wire proxy is the tests' (:mod:`tests.support.wire_proxy`).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sessionlib import MongoSessions, NoSessionAvailableError, PoolKey, SessionStore
from tests.support.wire_proxy import WireProxy

from .backends import Backend
from .pool import median_seconds, pool_on
from .report import Figure, Report
from .scrape import make_pools
from .seed import SeedPool

SECTION = "scale"
HANDSHAKES = {"ismaster", "hello", "endSessions"}
"""What the driver sends on its own (monitoring, sessions), not what the library asks."""

RELEASER = """
import asyncio, sys, time
from sessionlib import MongoSessions

async def main(url, db, collection, count, spacing):
    async with MongoSessions(url, db, collection) as pool:
        for number in range(count):
            await asyncio.sleep(spacing)
            print(number, time.time(), flush=True)
            await pool.session_release({"_id": number})

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4]), float(sys.argv[5])))
"""


async def populate_varied(collection: Any, size: int) -> None:
    """*size* sessions as a busy pool has them: half held or locked, each until its own instant."""
    now = datetime.now(UTC)
    kinds = ("in_use", "locked", "blocked")
    documents = []
    for number in range(size):
        document: dict[str, Any] = {
            "_id": number,
            "session": {"token": f"t{number}"},
            "active": number % 20 != 0,
            "count_use": number % 97,
            "count_success": number % 89,
            "last_use": now - timedelta(seconds=number),
            "next_use": None,
        }
        if number % 2:
            document.update(
                next_use=now + timedelta(seconds=number),
                lock_kind=kinds[number % 3],
                locked_at=now - timedelta(seconds=number),
            )
        documents.append(document)
    for start in range(0, size, 1000):
        await collection.insert_many(documents[start : start + 1000])


async def statistics_against_seed(
    backend: Backend, report: Report, sizes: list[int], repeat: int
) -> None:
    """One pool's statistics, ours over the seed's four counts, at each size (half locked)."""
    for size in sizes:
        collection = backend.database()["stats"]
        await populate_varied(collection, size)
        ours = await pool_on(backend, collection)
        seed = SeedPool(collection)
        mine, theirs = [], []
        for _ in range(repeat):  # interleaved, so the machine's load falls on both
            mine.append(await median_seconds(ours.aggregate_statistics, 1))
            theirs.append(await median_seconds(seed.aggregate_statistics, 1))
        ratio = statistics.median(mine) / statistics.median(theirs)
        name = f"statistics of one pool of {size:,} sessions, ours / seed's 4 counts"
        report.add(backend.name, Figure(SECTION, name, ratio, "ratio", "<= 1.0"))
        await ours.close()


async def refresh_against_seed(backend: Backend, report: Report, pools: int, repeat: int) -> None:
    """Statistics of *pools* pools of 50 sessions: one store call against 4 counts per pool."""
    database = backend.database()
    await make_pools(database, pools, size=50)
    keys = [PoolKey(database.name, f"pool{number:04d}") for number in range(pools)]
    store = await SessionStore(client=backend.client, timeout=120).open()
    semaphore = asyncio.Semaphore(16)

    async def seed() -> None:
        async def one(key: PoolKey) -> None:
            async with semaphore:
                await SeedPool(database[key.collection]).aggregate_statistics()

        await asyncio.gather(*(one(key) for key in keys))

    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(await median_seconds(lambda: store.statistics(keys), 1))
        theirs.append(await median_seconds(seed, 1))
    await store.close()
    ratio = statistics.median(ours) / statistics.median(theirs)
    name = f"statistics of {pools} pools x 50 sessions, ours / seed's 4 counts"
    report.add(backend.name, Figure(SECTION, name, ratio, "ratio", "<= 1.0"))


async def commands_past_limits(backend: Backend, report: Report, counts: list[int]) -> None:
    """Commands for the statistics of N pools of one database, pipelines over 1,000 refused."""
    assert backend.server is not None
    with WireProxy(backend.server.port) as proxy:
        proxy.max_stages = 1000
        async with SessionStore(proxy.url, timeout=120) as store:
            database = backend.database()
            await database["p0000"].insert_one({"_id": 0, "session": {}})
            for pools in counts:
                keys = [PoolKey(database.name, f"p{number:04d}") for number in range(pools)]
                await store.ping()
                proxy.commands.clear()
                await store.statistics(keys)
                sent = [name for name in proxy.commands if name not in HANDSHAKES]
                name = f"commands for the statistics of {pools:,} pools (stage limit 1,000)"
                goal = "<= 4" if pools == 1000 else "<= 10" if pools == 3000 else ""
                report.add(backend.name, Figure(SECTION, name, len(sent), "commands", goal))


async def auto_release_commands(backend: Backend, report: Report, pools: int, busy: int) -> None:
    """Commands of one auto-release run over *pools* pools, *busy* of them with expired locks."""
    database = backend.database()
    past = datetime.now(UTC) - timedelta(minutes=1)
    for number in range(pools):
        documents: list[dict[str, Any]] = [{"_id": 0, "session": {}}]
        if number < busy:
            documents.append({"_id": 1, "session": {}, "next_use": past, "lock_kind": "in_use"})
        await database[f"p{number:04d}"].insert_many(documents)
    keys = [PoolKey(database.name, f"p{number:04d}") for number in range(pools)]
    assert backend.counter is not None
    async with SessionStore(client=backend.client, timeout=120) as store:
        await store.ping()
        for label, expected in ((f"{busy} with expired locks", busy), ("none expired", 0)):
            backend.counter.reset()
            await store.release_expired(keys)
            sent = [name for name in backend.counter.names if name not in HANDSHAKES]
            name = f"auto-release commands, {pools} pools, {label}"
            goal = f"<= {expected} + 1 per database"
            report.add(backend.name, Figure(SECTION, name, len(sent), "commands", goal))


async def _waiter(pool: MongoSessions, wait: float, got: list[tuple[int, float]]) -> None:
    try:
        async with pool.lease(wait=wait, hold=3600, success_delay=3600) as lease:
            got.append((lease["_id"], time.time()))
    except NoSessionAvailableError:
        pass


def _release(
    url: str, database: str, collection: str, count: int, spacing: float
) -> dict[int, float]:
    done = subprocess.run(
        [sys.executable, "-c", RELEASER, url, database, collection, str(count), str(spacing)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return {int(n): float(t) for n, t in (line.split() for line in done.stdout.splitlines())}


async def waiting(
    backend: Backend, report: Report, waiters: int, idle: float, releases: int
) -> None:
    """Waiters on an empty pool: what they send while idle, and how soon a release is taken."""
    assert backend.server is not None
    assert backend.url is not None
    for label, streams in (("polling", False), ("change streams", True)):
        database = backend.database()
        async with MongoSessions(backend.url, database.name, "empty") as owner:
            for number in range(releases):
                await owner.add({"_id": number, "session": {}})
                await owner.session_lock({"_id": number}, {"hours": 1})
        with WireProxy(backend.server.port) as proxy:
            proxy.no_change_streams = not streams
            got: list[tuple[int, float]] = []
            async with MongoSessions(proxy.url, database.name, "empty", timeout=30) as pool:
                wait = idle + releases * 0.2 + 5
                tasks = [asyncio.create_task(_waiter(pool, wait, got)) for _ in range(waiters)]
                await asyncio.sleep(1.0)  # each asked once
                proxy.commands.clear()
                await asyncio.sleep(idle)
                quiet = list(proxy.commands)
                released = await asyncio.to_thread(
                    _release, backend.url, database.name, "empty", releases, 0.2
                )
                await asyncio.sleep(0.5)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        asked = quiet.count("findAndModify") + quiet.count("find")
        name = f"{waiters} waiters, {idle:.0f} s with nothing free: commands sent, {label}"
        report.add(backend.name, Figure(SECTION, name, asked, "commands", "0 with streams"))
        # Each session is held for an hour once taken: one take per release.
        wakes = sorted(at - released[number] for number, at in got if number in released)
        if wakes:
            median = statistics.median(wakes) * 1000
            p99 = wakes[min(len(wakes) - 1, int(len(wakes) * 0.99))] * 1000
            name = f"wake-up after a release in another process, {label} (median / p99)"
            report.add(backend.name, Figure(SECTION, name, f"{median:.1f} / {p99:.1f}", "ms"))
