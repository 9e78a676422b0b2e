"""One truth per concept: the cases where two copies of one rule used to disagree.

Each runs on mongomock and over the wire with PyMongo and Motor (the
``pool``/``client`` fixtures), except the property test, which runs its
generated documents on mongomock and over the wire with PyMongo.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient
from pymongo import AsyncMongoClient

from sessionlib import Budget, ConfigurationError, MongoSessions, SessionStore, Target
from sessionlib.discovery import PoolKey
from sessionlib.metadata import METADATA_COLLECTION
from sessionlib.storedtime import StoredTime, zone_of
from tests.support.backends import run_with_client
from tests.support.clock import START, MovableClock

# -- 1. budgets under a legacy time zone -------------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Moscow", "America/New_York"])
async def test_a_budget_holds_for_its_window_exactly_under_a_legacy_zone(
    client: Any, db_name: str, clock: MovableClock, zone: str
) -> None:
    budget = Budget(uses=1, per={"minutes": 10})
    async with MongoSessions(
        db=db_name, collection="budgeted", client=client, clock=clock, legacy_timezone=zone,
        budgets=[budget],
    ) as pool:  # fmt: skip
        await pool.add({"_id": 0, "session": {}})
        assert await pool.get_session(next_use_delay=0) is not None

        for seconds in (0.4, 0.8, 1.2, 599):  # west of UTC it was handed out again at once
            clock.now = START + timedelta(seconds=seconds)
            assert await pool.get_session(next_use_delay=0) is None
            assert 1 == (await pool.statistics()).budget
        clock.now = START + timedelta(minutes=10, seconds=1)  # east of UTC: held 3 h longer
        assert await pool.get_session(next_use_delay=0) is not None


# -- 2. one pool's statistics are the store's ----------------------------------------


async def test_a_pools_statistics_equal_the_stores_with_scopes_target_and_breaker(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    async with SessionStore(client=client, clock=clock) as store:
        pool = store.pool(db_name, "telegram")
        for number in range(3):
            await pool.add({"_id": number, "session": {}})
        await pool.session_lock({"_id": 0}, {"minutes": 10}, scope="search")
        await pool.set_target(Target(min_available=2))
        breaker = {"open": True, "error": "LoginFailed", "opened_at": START, "trips": 1}
        await pool.sessions.database[METADATA_COLLECTION].update_one(
            {"_id": "telegram"},
            {"$set": {"breaker": {**breaker, "until": START + timedelta(minutes=5)}}},
        )
        key = PoolKey(db_name, "telegram")

        own = await pool.statistics()
        assert {"search": 1} == dict(own.scopes)
        assert Target(min_available=2) == own.target
        assert own.breaker.open
        assert (await pool.breaker_state()).open
        assert own == (await store.statistics([key]))[key]

        clock.advance(minutes=5, seconds=1)  # the cool-down is over: closed, everywhere
        own = await pool.statistics()
        assert not own.breaker.open
        assert not (await pool.breaker_state()).open
        assert own == (await store.statistics([key]))[key]


# -- 3. what the statistics count available, the hand-out takes --------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BUDGET = Budget(uses=2, per={"minutes": 1})
MISSING = object()


def hostile_documents(time: StoredTime, *, bson: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """One session document, its fields as this library, the seed or another program left them.

    *bson*: with BSON ``Timestamp`` values, which mongomock cannot compare.
    """
    now = time.store(NOW)
    past, future = now - timedelta(hours=1), now + timedelta(hours=1)
    stamp = Timestamp(1, 1) if bson else "stamp"
    odd = st.sampled_from([stamp, "soon", 5, {"a": 1}])
    next_use = st.one_of(
        st.sampled_from([MISSING, None, past, future, [past, future], [None], [], [future]]), odd
    )
    active = st.sampled_from([MISSING, True, False, [False], [True, False], None, "no", 0])
    entries = st.lists(st.sampled_from([past, future, stamp, "x"]), max_size=3)
    budgets = st.one_of(
        st.sampled_from([MISSING, None, [], "x"]),
        entries.map(lambda listed: {BUDGET.key: listed}),
    )
    scopes = st.one_of(
        st.sampled_from([MISSING, None, [], [{}], "x"]),
        st.sampled_from([past, future, [future], stamp, None]).map(lambda end: {"search": end}),
    )
    ready_at = st.sampled_from([MISSING, None, past, future, "x"])
    lock_kind = st.sampled_from([MISSING, "in_use", "budget", "blocked", "weird", 5])
    parts = st.fixed_dictionaries(
        {
            "next_use": next_use,
            "active": active,
            "budgets": budgets,
            "scopes": scopes,
            "ready_at": ready_at,
            "lock_kind": lock_kind,
        }
    )
    return parts.map(
        lambda fields: {
            "_id": 1,
            "session": {},
            **{name: value for name, value in fields.items() if value is not MISSING},
        }
    )


async def counted_and_taken(
    pool: MongoSessions, document: dict[str, Any], scope: str | None
) -> tuple[int, bool]:
    await pool.sessions.delete_many({})
    await pool.sessions.insert_one(dict(document))
    counted = (await pool.statistics(scope=scope)).available
    taken = await pool.get_session(next_use_delay=0, scope=scope) is not None
    return counted, taken


def check_available_iff_taken(
    new_client: Callable[[], Any], zone: str | None
) -> Callable[[dict[str, Any]], None]:
    def check(document: dict[str, Any]) -> None:
        async def body(client: Any) -> None:
            async with MongoSessions(
                db="one_truth", collection=f"pool_{zone is not None}", client=client,
                clock=lambda: NOW, legacy_timezone=zone, budgets=[BUDGET],
            ) as pool:  # fmt: skip
                for scope in (None, "search"):
                    counted, taken = await counted_and_taken(pool, document, scope)
                    assert (counted == 1) == taken, (scope, document)

        run_with_client(new_client, body)

    return check


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("zone", [None, "Europe/Moscow"])
def test_counted_available_iff_the_hand_out_takes_it_on_mongomock(zone: str | None) -> None:
    check = check_available_iff_taken(lambda: AsyncMongoMockClient(tz_aware=True), zone)
    given(hostile_documents(StoredTime(zone_of(zone)), bson=False))(PROPERTY(check))()


@pytest.mark.wire
@pytest.mark.parametrize("zone", [None, "Europe/Moscow"])
def test_counted_available_iff_the_hand_out_takes_it_over_the_wire(
    wire_url: str, zone: str | None
) -> None:
    check = check_available_iff_taken(lambda: AsyncMongoClient(wire_url, tz_aware=True), zone)
    given(hostile_documents(StoredTime(zone_of(zone))))(PROPERTY(check))()


async def test_a_session_released_by_hand_is_counted_and_taken_at_once(
    pool: MongoSessions,
) -> None:
    await pool.add({"_id": 0, "session": {}})
    for _ in range(2):
        await pool.session_block({"_id": 0}, {"days": 1})
        await pool.sessions.update_one({"_id": 0}, {"$set": {"next_use": None}})
        assert 1 == (await pool.statistics()).available
        assert 1 == await pool.count_active()
        assert await pool.get_session() is not None


# -- 5. the calendar's ends -------------------------------------------------------


@pytest.mark.parametrize("field", ["created", "last_use", "locked_at"])
async def test_a_year_one_date_under_a_legacy_zone_breaks_nothing(
    client: Any, db_name: str, clock: MovableClock, field: str
) -> None:
    """``datetime.min`` (.NET's ``DateTime.MinValue``) is read as the calendar's first instant."""
    async with SessionStore(client=client, clock=clock, legacy_timezone="Europe/Moscow") as store:
        pool = store.pool(db_name, "old")
        locked = {"next_use": START + timedelta(days=1), "lock_kind": "locked"}
        await pool.add({"_id": 0, "session": {}, field: datetime.min})
        await pool.add({"_id": 1, "session": {}, **locked, field: datetime.min})
        await pool.sessions.database[METADATA_COLLECTION].insert_one(
            {
                "_id": "old",
                "breaker": {"open": True, "opened_at": datetime.min, "until": datetime.min},
            }
        )

        session = await pool.get_session()
        assert session is not None
        assert [0, 1] == sorted(document["_id"] for document in await pool.get_sessions())
        statistics = await pool.statistics()
        assert (2, 1, 1) == (statistics.total, statistics.in_use, statistics.locked)
        assert not statistics.breaker.open
        key = PoolKey(db_name, "old")
        assert statistics == (await store.statistics([key]))[key]


async def test_a_server_clock_in_year_9999_raises_no_overflow(client: Any, db_name: str) -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    async with MongoSessions(
        db=db_name, collection="far", client=client, clock=lambda: far
    ) as pool:
        await pool.add({"_id": 0, "session": {}})
        session = await pool.get_session()
        assert session is not None
        assert await pool.session_lock(session, {"hours": 1}) is not None


# -- 4. the store's door is typed, and checked before it connects -----------------


@pytest.mark.parametrize(
    ("settings", "hint"),
    [({"timout": 5}, "'timeout'"), ({"legacy_timezon": "Europe/Moscow"}, "'legacy_timezone'")],
)
async def test_a_misspelt_store_setting_is_refused_before_connecting(
    settings: dict[str, Any], hint: str
) -> None:
    # Port 9 (discard) would make a connection attempt hang until its timeout.
    with pytest.raises(ConfigurationError, match=f"did you mean {hint}"):
        await SessionStore.connect(
            "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=60000", **settings
        )


async def test_a_misspelt_pool_setting_is_refused(client: Any, db_name: str) -> None:
    async with SessionStore(client=client) as store:
        with pytest.raises(ConfigurationError, match="did you mean 'next_use_delay'"):
            store.pool(db_name, "telegram", next_use_dealy=5)  # type: ignore[call-arg]
