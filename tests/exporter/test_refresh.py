"""Discovery, refresh and the snapshot, in process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient

from exporter.config import Config
from exporter.daemon import open_store
from exporter.discovery import Discovery
from exporter.refresh import Refresher
from exporter.release import KINDS, AutoRelease
from exporter.snapshot import PoolKey, State
from sessionlib import MongoSessions
from sessionlib.discovery import looks_like_session, matches

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("key", "include", "exclude", "expected"),
    [
        (PoolKey("pools", "telegram"), [], [], True),
        (PoolKey("pools", "system.views"), [], [], False),
        (PoolKey("pools", "telegram"), ["tg*", "tele*"], [], True),
        (PoolKey("pools", "telegram"), ["tg*"], [], False),
        (PoolKey("pools", "telegram"), [], ["*gram"], False),
        (PoolKey("pools", "telegram"), ["pools.*"], ["other.*"], True),
        (PoolKey("other", "telegram"), ["pools.*"], [], False),
        (PoolKey("pools", "tg_1"), ["tg_*"], ["tg_1"], False),
    ],
)
def test_matches(key: PoolKey, include: list[str], exclude: list[str], expected: bool) -> None:
    assert expected is matches(key, include, exclude)


def test_looks_like_session() -> None:
    assert looks_like_session(None)  # an empty collection may be a new pool
    assert looks_like_session({"_id": 1, "session": {}})
    assert looks_like_session({"_id": 1, "next_use": None})
    assert not looks_like_session({"_id": 1, "name": "user", "active": True})


async def seed(client: Any) -> None:
    for db, collection, docs in [
        ("pools", "telegram", [{"_id": n, "session": {}} for n in range(3)]),
        ("pools", "users", [{"_id": 1, "name": "x"}]),
        ("shop", "tg_keys", [{"_id": 1, "session": {}, "last_use": None}]),
        ("admin", "hidden", [{"_id": 1, "session": {}}]),
    ]:
        await client[db][collection].insert_many(docs)
    await client["pools"].create_collection("fresh")


@pytest.fixture
async def mock_client() -> Any:
    client = AsyncMongoMockClient(tz_aware=True)
    await seed(client)
    return client


def refresher(client: Any, **settings: Any) -> Refresher:
    config = Config(mongo_url="mongodb://unused", **settings)
    return refresher_for(config, client)


def refresher_for(config: Config, client: Any = None) -> Refresher:
    store = open_store(config, client=client)
    discovery = Discovery(store, config)
    return Refresher(store, discovery, State(config.interval), config, wall_clock=lambda: NOW)


async def test_discovery_finds_session_collections_in_non_system_databases(
    mock_client: Any,
) -> None:
    subject = refresher(mock_client)

    await subject.reach()
    await subject.discovery.run()

    assert [
        PoolKey("pools", "fresh"),
        PoolKey("pools", "telegram"),
        PoolKey("shop", "tg_keys"),
    ] == list(subject.discovery.pools)


async def test_discovery_honours_databases_and_patterns(mock_client: Any) -> None:
    subject = refresher(
        mock_client, databases=("pools", "shop"), include=("t*",), exclude=("shop.*",)
    )

    await subject.reach()
    await subject.discovery.run()

    assert (PoolKey("pools", "telegram"),) == subject.discovery.pools


async def test_refresh_publishes_a_complete_snapshot(mock_client: Any) -> None:
    subject = refresher(mock_client, databases=("pools",))
    telegram = await MongoSessions(db="pools", collection="telegram", client=mock_client).connect()
    await telegram.session_block({"_id": 0})
    await telegram.get_session()

    snapshot = await subject.refresh()

    assert snapshot is subject.state.snapshot
    assert (True, True, NOW) == (snapshot.up, snapshot.complete, snapshot.taken_at)
    stats = snapshot.statistics[PoolKey("pools", "telegram")]
    assert (3, 1, 1, 1) == (stats.total, stats.available, stats.in_use, stats.blocked)
    assert stats == await telegram.statistics()
    assert 0 == snapshot.statistics[PoolKey("pools", "fresh")].total
    assert {PoolKey("pools", "fresh"): NOW, PoolKey("pools", "telegram"): NOW} == dict(
        snapshot.last_success
    )
    assert {PoolKey("pools", "fresh"): 0, PoolKey("pools", "telegram"): 0} == dict(snapshot.errors)


async def test_a_dropped_pool_loses_its_series(mock_client: Any) -> None:
    subject = refresher(mock_client, databases=("pools",))
    await subject.refresh()

    await mock_client["pools"].drop_collection("telegram")
    await subject.discovery.run()
    snapshot = await subject.refresh()

    assert (PoolKey("pools", "fresh"),) == snapshot.pools
    assert [PoolKey("pools", "fresh")] == list(snapshot.statistics)
    assert [PoolKey("pools", "fresh")] == list(snapshot.last_success)


@pytest.fixture
async def fault_pools(fault_server: Any, db_name: str) -> AsyncIterator[str]:
    async with MongoSessions(fault_server.url, db=db_name, collection="p0") as pool:
        for number in range(4):
            await pool.with_collection(f"p{number}").add({"_id": 1, "session": {}})
        yield fault_server.url
        await pool.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await pool.client.drop_database(db_name)


@pytest.mark.wire
async def test_a_slow_pool_fails_alone_within_its_timeout(fault_pools: str, db_name: str) -> None:
    config = Config(mongo_url=fault_pools, databases=(db_name,), pool_timeout=1, concurrency=4)
    subject = refresher_for(config)
    await subject.reach()
    await subject.discovery.run()
    async with MongoSessions(fault_pools, db=db_name, collection="p0") as admin:
        # The first aggregation (all four pools in one command) and the first
        # of the pool-by-pool ones that follow its failure are held up.
        await admin.client.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 2},
                "data": {
                    "failCommands": ["aggregate"],
                    "blockConnection": True,
                    "blockTimeMS": 5000,
                },
            }
        )

    started = time.monotonic()
    snapshot = await subject.refresh()
    elapsed = time.monotonic() - started
    await subject.close()

    # One time limit for the database's command, one for the slow pool.
    assert elapsed < 3.5, f"the refresh waited {elapsed:.1f} s for the slow pool"
    assert snapshot.up
    assert 3 == len(snapshot.statistics)
    assert [1, 0, 0, 0] == sorted(snapshot.errors.values(), reverse=True)
    slow = next(key for key, count in snapshot.errors.items() if count)
    assert slow not in snapshot.statistics
    assert slow not in snapshot.last_success


async def test_mongodb_down_gives_up_zero_and_no_pools(tmp_path: Path) -> None:
    from exporter.secantus import free_port

    config = Config(
        mongo_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", pool_timeout=0.5
    )
    subject = refresher_for(config)

    snapshot = await subject.refresh()
    await subject.close()

    assert (False, (), NOW) == (snapshot.up, snapshot.pools, snapshot.taken_at)


async def test_released_locks_count_from_zero_for_every_discovered_pool(
    mock_client: Any,
) -> None:
    """The first batch a pool's auto-release frees must show as an increase from 0."""
    config = Config(mongo_url="mongodb://unused", databases=("pools",), auto_release=True)
    store = open_store(config, client=mock_client)
    state = State(config.interval)
    release = AutoRelease(store, config, lambda: state.snapshot)
    subject = Refresher(
        store, Discovery(store, config), state, config, release=release, wall_clock=lambda: NOW
    )
    telegram = PoolKey("pools", "telegram")

    first = await subject.refresh()
    assert {(key, kind) for key in first.pools for kind in KINDS} == set(first.released)
    assert {0} == set(first.released.values())

    expired = datetime.now(UTC) - timedelta(seconds=1)
    await mock_client["pools"]["telegram"].update_one(
        {"_id": 0}, {"$set": {"next_use": expired, "lock_kind": "locked", "locked_at": expired}}
    )
    await subject.refresh()
    released = await release.run()
    assert {telegram: {**dict.fromkeys(KINDS, 0), "locked": 1}} == released
    after = await subject.refresh()
    assert 1 == after.released[(telegram, "locked")]
    assert 0 == after.released[(telegram, "blocked")]


async def test_auto_release_asks_only_pools_with_work(mock_client: Any) -> None:
    """No expired lock anywhere: no command. A lock that ended since the refresh: its pool."""
    config = Config(mongo_url="mongodb://unused", databases=("pools",), auto_release=True)
    store = open_store(config, client=mock_client)
    state = State(config.interval)
    later = timedelta()
    release = AutoRelease(
        store, config, lambda: state.snapshot, clock=lambda: datetime.now(UTC) + later
    )
    subject = Refresher(
        store, Discovery(store, config), state, config, release=release, wall_clock=lambda: NOW
    )
    telegram = await MongoSessions(db="pools", collection="telegram", client=mock_client).connect()
    await subject.refresh()
    asked: list[PoolKey] = []
    real = store.release_expired

    async def counting(keys: Sequence[PoolKey], **options: Any) -> Any:
        asked.extend(keys)
        return await real(keys, **options)

    store.release_expired = counting  # type: ignore[method-assign]

    assert {} == await release.run()
    assert [] == asked  # no pool had work

    # A lock the refresh saw unexpired; an hour later its pool has work.
    await telegram.session_lock({"_id": 0}, {"minutes": 30})
    await subject.refresh()
    assert 0 == state.snapshot.statistics[PoolKey("pools", "telegram")].expired
    assert {} == await release.run()
    assert [] == asked
    later = timedelta(hours=1)
    await release.run()

    assert [PoolKey("pools", "telegram")] == asked
