"""The hand-out order: the order key, documents without one, and sessions edited by hand.

"Least recently used" means the session that became available the longest
ago (see docs/library.md, "The hand-out order"). Each runs on mongomock and over
the wire with PyMongo and Motor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sessionlib import MongoSessions
from sessionlib.fields import DEFAULT_NEXT_USE_DELAY
from sessionlib.indexes import LEGACY_INDEXES
from sessionlib.states import NEVER
from tests.support.backends import documents
from tests.support.clock import START, MovableClock, utc


async def taken(pool: MongoSessions, count: int) -> list[Any]:
    """The ``_id`` of the next *count* hand-outs (``None`` for an empty one)."""
    order = []
    for _ in range(count):
        session = await pool.get_session()
        order.append(None if session is None else session["_id"])
    return order


async def test_a_session_back_from_a_lock_waits_behind_those_idle_longer(
    pool: MongoSessions, clock: MovableClock
) -> None:
    for number in range(3):
        await pool.add({"_id": number, "session": {}})
    assert [0] == await taken(pool, 1)
    await pool.session_lock({"_id": 0}, {"minutes": 10})  # back at START + 10 min
    clock.advance(minutes=1)
    assert [1] == await taken(pool, 1)
    clock.advance(minutes=1)
    assert [2] == await taken(pool, 1)

    clock.advance(minutes=20)  # all three free again

    # 0 was handed out first, but became available last (its lock ended at
    # START + 10 min; 1 and 2 at the end of their 3-second holds).
    assert [1, 2, 0, None] == await taken(pool, 4)


async def test_documents_without_an_order_key_come_first_in_last_use_order(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "ours", "session": {}, "last_use": START - timedelta(hours=9)})
    seed = [
        {"_id": "seed-recent", "session": {}, "last_use": START - timedelta(minutes=5)},
        {"_id": "seed-old", "session": {}, "last_use": START - timedelta(hours=1)},
    ]
    await pool.sessions.insert_many(seed)  # as the seed library writes them: no ready_at

    order = await taken(pool, 3)

    assert ["seed-old", "seed-recent", "ours"] == order
    hold_ends = START + timedelta(seconds=DEFAULT_NEXT_USE_DELAY)  # each has its key now
    assert [hold_ends] * 3 == [utc(doc.get("ready_at")) for doc in await documents(pool)]


async def test_migrate_gives_seed_documents_their_key_once_and_drops_old_indexes(
    pool: MongoSessions, clock: MovableClock
) -> None:
    later = START + timedelta(hours=2)
    await pool.sessions.insert_many(
        [
            {"_id": "inactive", "session": {}, "active": False, "last_use": START},
            {"_id": "locked", "session": {}, "next_use": later, "last_use": START},
            {"_id": "used", "session": {}, "next_use": None, "last_use": START},
            {"_id": "never", "session": {}, "next_use": None, "last_use": None},
        ]
    )
    await pool.add({"_id": "keyed", "session": {}, "next_use": later})
    await pool.sessions.create_index([("last_use", 1)], name=LEGACY_INDEXES[0])

    first = await pool.migrate()
    second = await pool.migrate()

    keys = {doc["_id"]: utc(doc.get("ready_at")) for doc in await documents(pool)}
    assert {"order_keys": 3, "dropped_indexes": [LEGACY_INDEXES[0]]} == first
    assert {"order_keys": 0, "dropped_indexes": []} == second
    assert {
        "inactive": NEVER,  # never handed out while inactive
        "locked": later,  # free when its lock ends
        "used": START,
        "never": None,  # nothing to say: it stays first in line
        "keyed": later,  # left as it was
    } == keys
    assert LEGACY_INDEXES[0] not in await pool.index_information()


async def release_by_hand(pool: MongoSessions, session_id: Any) -> None:
    """What an operator does in the shell: clear ``next_use``, nothing else."""
    await pool.sessions.update_one({"_id": session_id}, {"$set": {"next_use": None}})


async def test_a_session_released_by_hand_is_handed_out_at_once_every_time(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": 0, "session": {}})
    for _ in range(3):  # a second edit soon after the first is taken at once too
        await pool.session_block({"_id": 0}, {"days": 1})
        await release_by_hand(pool, 0)
        assert 1 == (await pool.statistics()).available
        assert [0] == await taken(pool, 1)
        clock.advance(seconds=10)


async def test_a_session_released_by_hand_waits_behind_sessions_keyed_earlier(
    pool: MongoSessions, clock: MovableClock
) -> None:
    for number in range(2):
        await pool.add({"_id": number, "session": {}})
    await pool.session_block({"_id": 0}, {"days": 1})
    await release_by_hand(pool, 0)  # its key still says: in a day
    clock.advance(seconds=5)

    assert [1, 0, None] == await taken(pool, 3)


async def test_auto_release_requeues_sessions_released_or_activated_by_hand(
    pool: MongoSessions, clock: MovableClock
) -> None:
    for number in range(3):
        await pool.add({"_id": number, "session": {}})
    await pool.session_block({"_id": 0}, {"days": 1})
    await pool.session_inactive({"_id": 1})
    await pool.session_lock({"_id": 2}, {"hours": 1})
    await release_by_hand(pool, 0)
    await pool.sessions.update_one({"_id": 1}, {"$set": {"active": True}})

    await pool.release_expired_locks()

    keys = {doc["_id"]: utc(doc["ready_at"]) for doc in await documents(pool)}
    assert {0: START, 1: START, 2: START + timedelta(hours=1)} == keys
