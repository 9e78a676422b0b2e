"""The MongoSessions API, on mongomock-motor and over the real wire protocol."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sessionlib import LockKind, MongoSessions, NotConnectedError
from sessionlib.fields import DEFAULT_BLOCK_TIME, DEFAULT_LOCK_TIME, DEFAULT_NEXT_USE_DELAY
from tests.support.backends import documents
from tests.support.clock import START, MovableClock, utc


async def add_sessions(pool: MongoSessions, count: int) -> None:
    for number in range(count):
        await pool.add({"_id": number, "session": {"token": f"t{number}"}})


async def test_add_writes_defaults_that_data_overrides(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "a", "session": {"token": "x"}})
    await pool.add({"_id": "b", "session": {}, "active": False, "count_use": 7})

    a, b = await documents(pool)
    assert {
        "_id": "a",
        "session": {"token": "x"},
        "active": True,
        "count_use": 0,
        "count_success": 0,
        "last_use": None,
        "next_use": None,
    } == {key: value for key, value in a.items() if key != "created"}
    assert START == utc(a["created"])
    assert (False, 7) == (b["active"], b["count_use"])


async def test_get_session_hands_out_never_used_first_then_least_recently_used(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "old", "session": {}, "last_use": START - timedelta(hours=2)})
    await pool.add({"_id": "older", "session": {}, "last_use": START - timedelta(hours=5)})
    await pool.add({"_id": "never", "session": {}})
    await pool.add({"_id": "recent", "session": {}, "last_use": START - timedelta(minutes=1)})

    order = [(await pool.get_session())["_id"] for _ in range(4)]  # type: ignore[index]

    assert ["never", "older", "old", "recent"] == order
    assert await pool.get_session() is None


async def test_get_session_marks_the_session_atomically(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 1)

    session = await pool.get_session(count_use=3, next_use_delay=20)

    assert session is not None
    assert START == session["last_use"]
    assert START + timedelta(seconds=20) == session["next_use"]
    assert (3, LockKind.IN_USE, START) == (
        session["count_use"],
        session["lock_kind"],
        session["locked_at"],
    )
    # The returned datetimes are aware UTC on every client, Motor without tz_aware included.
    assert session["last_use"].tzinfo is not None


async def test_holds_round_up_to_the_millisecond_bson_keeps(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 1)
    clock.advance(microseconds=1_500)  # START + 1.5 ms

    await pool.get_session(next_use_delay=1)

    (doc,) = await documents(pool)
    assert START + timedelta(seconds=1, milliseconds=2) == utc(doc["next_use"])


async def test_handed_out_session_returns_after_the_default_delay(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 1)
    assert await pool.get_session() is not None
    assert await pool.get_session() is None

    clock.advance(seconds=DEFAULT_NEXT_USE_DELAY - 0.001)
    assert await pool.get_session() is None
    clock.advance(seconds=0.002)
    again = await pool.get_session()
    assert again is not None
    assert 2 == again["count_use"]


async def test_projection_applies_to_hand_outs_and_listings(pool: MongoSessions) -> None:
    await add_sessions(pool, 2)
    pool.projection = {"_id": 1, "session": 1}

    session = await pool.get_session()
    listed = await pool.get_sessions()

    assert {"_id": 0, "session": {"token": "t0"}} == session
    assert [
        {"_id": 0, "session": {"token": "t0"}},
        {"_id": 1, "session": {"token": "t1"}},
    ] == sorted(listed, key=lambda s: s["_id"])


async def test_session_success_counts_and_holds(pool: MongoSessions, clock: MovableClock) -> None:
    await add_sessions(pool, 1)
    session = await pool.get_session()
    assert session is not None
    clock.advance(seconds=10)

    result = await pool.session_success(session, count_success=2, next_use_delay=30)

    assert 1 == result.modified_count
    (doc,) = await documents(pool)
    assert 2 == doc["count_success"]
    assert START + timedelta(seconds=40) == utc(doc["next_use"])
    clock.advance(seconds=30)  # exactly next_use: still held
    assert await pool.get_session() is None
    clock.advance(milliseconds=1)
    assert await pool.get_session() is not None


@pytest.mark.parametrize(
    ("method", "period", "expected", "kind"),
    [
        ("session_lock", None, DEFAULT_LOCK_TIME, LockKind.LOCKED),
        ("session_lock", {"hours": 10}, timedelta(hours=10), LockKind.LOCKED),
        ("session_block", None, DEFAULT_BLOCK_TIME, LockKind.BLOCKED),
        (
            "session_block",
            {"days": 2, "minutes": 1},
            timedelta(days=2, minutes=1),
            LockKind.BLOCKED,
        ),
    ],
)
async def test_lock_and_block_hold_for_the_period(
    pool: MongoSessions,
    clock: MovableClock,
    method: str,
    period: dict[str, float] | None,
    expected: timedelta,
    kind: str,
) -> None:
    await add_sessions(pool, 1)

    await getattr(pool, method)({"_id": 0}, period)

    (doc,) = await documents(pool)
    assert (START + expected, kind) == (utc(doc["next_use"]), doc["lock_kind"])
    clock.advance(seconds=expected.total_seconds() - 1)
    assert await pool.get_session() is None
    clock.advance(seconds=2)
    assert 0 == (await pool.get_session())["_id"]  # type: ignore[index]


async def test_inactive_sessions_are_not_handed_out_until_activated(pool: MongoSessions) -> None:
    await add_sessions(pool, 1)

    await pool.session_inactive({"_id": 0})
    assert await pool.get_session() is None
    assert [] == await pool.get_sessions()

    await pool.session_activate({"_id": 0})
    assert 0 == (await pool.get_session())["_id"]  # type: ignore[index]


async def test_release_makes_a_locked_session_available_now(pool: MongoSessions) -> None:
    await add_sessions(pool, 1)
    await pool.session_block({"_id": 0})

    await pool.session_release({"_id": 0})

    (doc,) = await documents(pool)
    assert (None, None, None) == (doc["next_use"], doc["lock_kind"], doc["locked_at"])
    assert 1 == await pool.count_active()


async def test_session_update_sets_dotted_fields_and_unsets(pool: MongoSessions) -> None:
    await pool.add({"_id": 1, "session": {"phone": "+7000", "token": "t"}, "note": "x"})

    await pool.session_update({"_id": 1}, {"session.phone": "+7999"}, unset_payload={"note": ""})
    await pool.session_update({"_id": 1}, {}, unset_payload=["session.token"])

    (doc,) = await documents(pool)
    assert {"phone": "+7999"} == doc["session"]
    assert "note" not in doc


async def test_session_delete_removes_only_that_session(pool: MongoSessions) -> None:
    await add_sessions(pool, 3)

    result = await pool.session_delete({"_id": 1})

    assert 1 == result.deleted_count
    assert [0, 2] == [doc["_id"] for doc in await documents(pool)]


async def test_count_active_counts_available_sessions_with_offset(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 4)
    await pool.session_lock({"_id": 0}, {"seconds": 5})
    await pool.session_block({"_id": 1})
    await pool.session_inactive({"_id": 2})

    assert 1 == await pool.count_active()
    assert 2 == await pool.count_active(offset=10)  # session 0 is free again by then


async def test_default_filter_is_settable(pool: MongoSessions) -> None:
    await add_sessions(pool, 3)
    await pool.session_inactive({"_id": 1})

    pool.default_filter = {"active": False}
    pool.projection = {"_id": 1}

    assert [{"_id": 1}] == await pool.get_sessions()
    assert 1 == (await pool.get_session())["_id"]  # type: ignore[index]


async def test_statistics_partition_the_pool(pool: MongoSessions, clock: MovableClock) -> None:
    await add_sessions(pool, 8)
    for _ in range(2):
        await pool.get_session(next_use_delay=60)  # 0, 1 in use
    await pool.session_success({"_id": 1}, count_success=3, next_use_delay=60)
    await pool.session_lock({"_id": 2}, {"minutes": 5})
    await pool.session_block({"_id": 3}, {"days": 1})
    await pool.session_block({"_id": 4}, {"days": 2})
    await pool.session_inactive({"_id": 5})
    # A lock written by the seed library: a future next_use without lock_kind.
    await pool.sessions.update_one({"_id": 6}, {"$set": {"next_use": START + timedelta(hours=1)}})

    stats = await pool.aggregate_statistics()

    assert {
        "count_active": 1,  # 7
        "count_blocked": 1,  # 5, inactive: the seed's name
        "count_locked": 6,  # 0, 1, 2, 3, 4, 6
        "count_total": 8,
        "locked_by_kind": {"in_use": 2, "locked": 2, "blocked": 2, "budget": 0},
        "sum_count_use": 2,
        "sum_count_success": 3,
        "next_unlock": START + timedelta(minutes=1),
        "oldest_lock": START,
    } == stats
    detail = await pool.statistics()
    assert 0 == detail.other
    assert detail.total == detail.available + detail.unavailable + detail.inactive


async def test_statistics_of_an_empty_pool(pool: MongoSessions) -> None:
    stats = await pool.statistics()

    assert (0, 0, 0, None) == (stats.total, stats.available, stats.uses, stats.next_unlock)


async def test_statistics_offset_moves_sessions_between_states(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 2)
    await pool.session_lock({"_id": 0}, {"seconds": 30})

    now = await pool.statistics()
    later = await pool.statistics(offset=60)

    assert (1, 1) == (now.available, now.locked)
    assert (2, 0) == (later.available, later.locked)


async def test_release_expired_locks_counts_by_kind_and_spares_live_locks(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await add_sessions(pool, 6)
    await pool.get_session(next_use_delay=5)  # 0: in use, expires
    await pool.session_lock({"_id": 1}, {"seconds": 5})  # expires
    await pool.session_lock({"_id": 2}, {"hours": 1})  # still locked
    await pool.session_block({"_id": 3}, {"seconds": 5})  # expires
    # Seed-style expired lock: left alone.
    await pool.sessions.update_one({"_id": 4}, {"$set": {"next_use": START}})
    clock.advance(seconds=10)

    released = await pool.release_expired_locks()

    assert {"in_use": 1, "locked": 1, "blocked": 1, "budget": 0} == released
    by_id = {doc["_id"]: doc for doc in await documents(pool)}
    for number in (0, 1, 3):
        assert (None, None) == (by_id[number]["next_use"], by_id[number].get("lock_kind"))
    assert LockKind.LOCKED == by_id[2]["lock_kind"]
    assert START == utc(by_id[4]["next_use"])
    assert {
        "in_use": 0,
        "locked": 0,
        "blocked": 0,
        "budget": 0,
    } == await pool.release_expired_locks()


async def test_ensure_indexes_creates_the_documented_keys(pool: MongoSessions) -> None:
    names = await pool.ensure_indexes()
    again = await pool.ensure_indexes()

    info = await pool.index_information()
    assert names == again == ["sessionpool_order", "sessionpool_states", "sessionpool_scopes"]
    assert [("ready_at", 1), ("last_use", 1), ("next_use", 1), ("active", 1)] == [
        tuple(key) for key in info["sessionpool_order"]["key"]
    ]
    assert [
        ("active", 1),
        ("next_use", 1),
        ("lock_kind", 1),
        ("locked_at", 1),
        ("count_use", 1),
        ("count_success", 1),
    ] == [tuple(key) for key in info["sessionpool_states"]["key"]]


async def test_documents_written_by_the_seed_library_still_work(
    pool: MongoSessions, clock: MovableClock
) -> None:
    # Naive local datetimes, null next_use, fields missing altogether.
    await pool.sessions.insert_many(
        [
            {
                "_id": "naive",
                "session": {},
                "active": True,
                "next_use": None,
                "last_use": datetime(2025, 12, 31, 10, 0),
                "count_use": 4,
                "count_success": 1,
            },
            {"_id": "bare", "session": {}},
            {
                "_id": "naive-locked",
                "session": {},
                "active": True,
                "next_use": datetime(2026, 1, 1, 15, 0),
                "last_use": datetime(2025, 1, 1),
            },
        ]
    )

    stats = await pool.statistics()
    first = await pool.get_session()
    second = await pool.get_session()

    assert (3, 2, 1, 4) == (stats.total, stats.available, stats.locked, stats.uses)
    assert ["bare", "naive"] == [first["_id"], second["_id"]]  # type: ignore[index]
    assert second["last_use"].tzinfo is not None  # type: ignore[index]
    listed = {doc["_id"]: doc for doc in await pool.get_sessions()}
    assert (
        datetime(2026, 1, 1, 15, 0).replace(tzinfo=START.tzinfo)
        == listed["naive-locked"]["next_use"]
    )


async def test_switch_collection_uses_the_same_client(pool: MongoSessions) -> None:
    await add_sessions(pool, 1)
    client = pool.client

    pool.switch_collection("truecaller")
    await pool.add({"_id": "tc", "session": {}})

    assert client is pool.client
    assert "truecaller" == pool.collection_name
    assert ["tc"] == [doc["_id"] for doc in await pool.get_sessions()]
    assert ["telegram", "truecaller"] == sorted(await pool.db.list_collection_names())


async def test_with_collection_shares_the_client_and_leaves_the_original(
    pool: MongoSessions,
) -> None:
    await add_sessions(pool, 2)

    other = pool.with_collection("whatsapp")
    await other.add({"_id": "w", "session": {}})
    await other.close()

    assert other.client is pool.client
    assert ("telegram", "whatsapp") == (pool.collection_name, other.collection_name)
    assert [0, 1] == [doc["_id"] for doc in await pool.get_sessions()]
    assert pool.connected  # closing the copy did not close the shared client
    assert 2 == await pool.count_active()
    assert 1 == await pool.with_collection("whatsapp").count_active()


async def test_close_is_idempotent_and_later_calls_fail_clearly(pool: MongoSessions) -> None:
    await pool.close()
    await pool.close()

    with pytest.raises(NotConnectedError, match="closed"):
        await pool.get_session()
    assert not pool.connected
