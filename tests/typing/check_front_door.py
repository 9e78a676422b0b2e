"""Checked by mypy in CI, never run: the front door takes the README's calls and refuses typos.

Each refused call carries a ``type: ignore`` for the error it must raise;
mypy's ``warn_unused_ignores`` (part of ``--strict``) fails the check if the
call ever stops being an error, for instance if the constructor went back to
``**kwargs: Any``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient, ReadPreference, WriteConcern

from sessionlib import (
    Block,
    Deactivate,
    EscalationPolicy,
    Lock,
    MongoSessions,
    PoolStatistics,
    Release,
    SessionStore,
)

MONGO_URL = "mongodb://127.0.0.1:27017"


class RateLimitedError(Exception):
    pass


class BannedError(Exception):
    pass


async def the_seed_snippet() -> None:
    mongo = await MongoSessions(
        MONGO_URL, db="pools", collection="telegram", max_allowed_reconnect=5
    ).connect()
    session = await mongo.get_session()
    if session is not None:
        await mongo.session_success(session)
        await mongo.session_lock(session, {"hours": 10})
    mongo.default_filter = {"active": False}
    mongo.projection = {"_id": 1, "session": 1}
    dead: list[dict[str, Any]] = await mongo.get_sessions()
    await mongo.sessions.count_documents({"active": True, **mongo._filter_exclude_lock(offset=10)})
    mongo.switch_collection("truecaller")
    names = await mongo.db.list_collection_names()
    stats: dict[str, Any] = await mongo.aggregate_statistics()
    await mongo.close()
    print(dead, names, stats)


class MyPool(MongoSessions):
    def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
        return super()._filter_exclude_lock(30)


async def the_readme_examples() -> None:
    async with MongoSessions(MONGO_URL, db="pools", collection="telegram") as pool:
        on_error = {RateLimitedError: Lock({"minutes": 10}), BannedError: Block()}
        async with pool.lease(hold=60, wait=30, on_error=on_error) as lease:
            print(lease["session"], lease.fence, lease.held_until)
        lease2 = await pool.acquire(count_use=2, hold=5)
        if lease2 is not None:
            await lease2.success()
        await pool.session_lock({"_id": 1}, {"minutes": 5})
        statistics: PoolStatistics = await pool.statistics(offset=5)
        print(statistics.available, await pool.count_active(offset=5))
    mapping = {ValueError: Deactivate(), ConnectionError: Release()}
    escalating = MongoSessions(
        MONGO_URL,
        db="pools",
        collection="tg",
        escalation=EscalationPolicy(base=timedelta(minutes=2)),
        write_concern=WriteConcern(j=True),
        stats_read_preference=ReadPreference.SECONDARY_PREFERRED,
        legacy_timezone="Europe/Moscow",
        allow_reconnect=True,
    )
    print(mapping, escalating)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO_URL, tz_aware=True)
    shared = await MongoSessions(db="pools", collection="telegram", client=client).connect()
    print(shared.with_collection("truecaller"))
    store = await SessionStore.connect(MONGO_URL, timeout=5, legacy_timezone="Europe/Moscow")
    for key in await store.list_pools(["pools"]):
        print(await store.pool(*key).statistics())
    await store.close()


def typos_and_wrong_types() -> None:
    MongoSessions(MONGO_URL, db="a", colection="typo")  # type: ignore[call-arg]
    MongoSessions(MONGO_URL, db="a", collection="b", timeout="ten")  # type: ignore[arg-type]
    MongoSessions(MONGO_URL, "a", "b", 10.0)  # type: ignore[call-arg, arg-type]
    MongoSessions(MONGO_URL, db="a", collection="b", fenced="yes")  # type: ignore[arg-type]
    MongoSessions(MONGO_URL, db="a", collection="b", lock_time=60)  # type: ignore[arg-type]


async def typos_at_the_store_door(store: SessionStore) -> None:
    await SessionStore.connect("mongodb://x", timout=5)  # type: ignore[call-arg]
    await SessionStore.connect("mongodb://x", next_use_delay="3")  # type: ignore[arg-type]
    SessionStore("mongodb://x", legacy_timezon="Europe/Moscow")  # type: ignore[call-arg]
    store.pool("pools", "telegram", next_use_dealy=5)  # type: ignore[call-arg]
    store.pool("pools", "telegram", timeout=5)  # type: ignore[call-arg]


async def wrong_calls(pool: MongoSessions) -> None:
    await pool.get_session(count_use="1")  # type: ignore[arg-type]
    await pool.session_lock({"_id": 1}, period=10)  # type: ignore[arg-type]
    pool.lease(wiat=5)  # type: ignore[call-arg]
