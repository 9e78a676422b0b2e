"""Statistics of many pools stay a few commands past MongoDB's limits (emulated over the wire).

The test server enforces neither of MongoDB's limits, so a loopback proxy
(:class:`~tests.support.wire_proxy.WireProxy`) refuses what a real MongoDB
would: a pipeline of more than 1,000 stages, or a command larger than a size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.secantus import SecantusServer
from sessionlib import PoolKey, PoolStatistics, SessionStore
from sessionlib.store import POOLS_PER_COMMAND
from tests.support.wire_proxy import WireProxy

pytestmark = pytest.mark.wire

HANDSHAKES = {"ismaster", "hello"}
"""What the driver sends on its own (monitoring, new connections), not the library."""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireProxy]:
    folder = Path(tmp_path_factory.mktemp("scale"))
    with SecantusServer(folder / "db") as server, WireProxy(server.port) as running:
        running.max_stages = 1000  # MongoDB 5.0 and later
        asyncio.run(fill(server.url, FILLED))
        yield running


FILLED = 1000
"""Pools p0000 to p0999 hold a session: each gives rows, so a batch's reply is large."""


async def fill(url: str, pools: int) -> None:
    async with SessionStore(url) as store:
        db = store.client["scale"]
        for number in range(1, pools - 1):
            await db[f"p{number:04d}"].insert_one({"_id": 1, "session": {}})


async def read(proxy: WireProxy, pools: int) -> tuple[dict[PoolKey, object], int]:
    """The statistics of *pools* pools (the first and last have 2 sessions), and the commands."""
    async with SessionStore(proxy.url) as store:
        first, last = store.pool("scale", "p0000"), store.pool("scale", f"p{pools - 1:04d}")
        for pool in (first, last):
            await pool.sessions.delete_many({})
            await pool.add({"_id": 1, "session": {}})
            await pool.add({"_id": 2, "session": {}, "active": False})
        keys = [PoolKey("scale", f"p{number:04d}") for number in range(pools)]
        proxy.commands.clear()
        found = await store.statistics(keys)
        sent = proxy.commands.count("aggregate") + proxy.commands.count("getMore")
    return dict(found), sent


@pytest.mark.parametrize(("pools", "most"), [(499, 2), (1000, 3), (3000, 8)])
async def test_a_database_of_many_pools_is_read_in_a_few_commands(
    proxy: WireProxy, pools: int, most: int
) -> None:
    found, sent = await read(proxy, pools)

    assert most >= sent  # one per POOLS_PER_COMMAND pools, never one per pool
    assert pools == len(found)
    assert all(isinstance(value, PoolStatistics) for value in found.values())
    for name in ("p0000", f"p{pools - 1:04d}"):
        statistics = found[PoolKey("scale", name)]
        assert (2, 1, 1) == (statistics.total, statistics.available, statistics.inactive)  # type: ignore[attr-defined]
    assert 1 == found[PoolKey("scale", "p0001")].total  # type: ignore[attr-defined]


async def test_a_refused_batch_is_split_not_read_one_pool_at_a_time(proxy: WireProxy) -> None:
    _, whole = await read(proxy, POOLS_PER_COMMAND)
    proxy.max_message = 800_000  # refuses a batch of 400 pools (1.3 MB), takes one of 200
    try:
        found, sent = await read(proxy, 1000)
    finally:
        proxy.max_message = None

    assert 1 == whole
    assert 1000 == len(found)
    assert all(isinstance(value, PoolStatistics) for value in found.values())
    assert 2 + 8 + 1 == sent  # batches of 400, 400, 200: the two refused, read in quarters
    assert 0 < proxy.refused


async def test_discovery_asks_a_database_s_collections_in_one_command_per_batch(
    proxy: WireProxy,
) -> None:
    """Each collection's first document, asked on the server: no find per collection."""
    count = POOLS_PER_COMMAND + 50
    async with SessionStore(proxy.url) as store:
        db = store.client["discover"]
        for number in range(count):
            name = f"c{number:04d}"
            if number % 10 == 3:
                await db[name].insert_one({"_id": 1, "name": "a user, not a session"})
            elif number % 10 == 7:
                await db.create_collection(name)  # empty: may become a pool
            else:
                await db[name].insert_one({"_id": 1, "session": {"token": "SECRET"}})
        keys = await store.list_collections(["discover"])
        proxy.commands.clear()
        verdicts = await store.classify(keys)
        asked = list(proxy.commands)

        proxy.max_stages = 10  # now the batches are refused: asked one by one
        try:
            proxy.commands.clear()
            again = await store.classify(keys)
            one_by_one = list(proxy.commands)
        finally:
            proxy.max_stages = 1000

    assert count == len(verdicts)
    expected = {key: int(key.collection[1:]) % 10 != 3 for key in keys}
    assert expected == verdicts
    assert ["aggregate", "aggregate"] == asked
    assert expected == again
    assert count == one_by_one.count("find")


async def test_auto_release_counts_in_one_command_per_database_and_writes_once_per_pool(
    proxy: WireProxy,
) -> None:
    """200 pools asked, 10 with ended locks of every kind: 1 count + 10 writes, counts exact."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    future = datetime.now(UTC) + timedelta(hours=1)
    kinds = ("in_use", "locked", "blocked", "budget")
    async with SessionStore(proxy.url) as store:
        db = store.client["expiry"]
        for number in range(200):
            documents: list[dict[str, object]] = [{"_id": 0, "session": {}}]
            if number % 20 == 5:  # ten pools with work, of every kind, and one still held
                documents += [
                    {"_id": 1 + i, "session": {}, "next_use": past, "lock_kind": kind}
                    for i, kind in enumerate(kinds)
                ]
                documents.append(
                    {"_id": 9, "session": {}, "next_use": future, "lock_kind": "locked"}
                )
                documents.append(
                    {"_id": 10, "session": {}, "scopes": {"search": past, "x": future}}
                )
            await db[f"p{number:03d}"].insert_many(documents)
        keys = [PoolKey("expiry", f"p{number:03d}") for number in range(200)]
        keys.append(PoolKey("expiry", "dropped"))
        proxy.commands.clear()
        released = await store.release_expired(keys)
        sent = [name for name in proxy.commands if name.lower() not in HANDSHAKES]
        names = await db.list_collection_names()
        held = await db["p005"].find_one({"_id": 9})
        scoped = await db["p005"].find_one({"_id": 10})
        again = await store.release_expired(keys)

    busy = [
        key for key in keys if key.collection[1:].isdigit() and int(key.collection[1:]) % 20 == 5
    ]
    assert 1 == sent.count("aggregate")
    assert 10 == sent.count("update")
    assert [] == [name for name in sent if name not in ("aggregate", "update")]
    assert set(busy) == set(released)
    for key in busy:
        assert {**dict.fromkeys(kinds, 1), "scope": 1, "requeue": 0} == released[key]
    assert "dropped" not in names  # a dropped pool is not brought back
    assert held is not None
    assert "locked" == held["lock_kind"]
    assert scoped is not None
    assert ["x"] == list(scoped["scopes"])
    assert {} == again  # nothing left to do
