"""Scopes, usage budgets, locks until an instant, choosing per call, reasons and history.

Each runs on mongomock and over the wire with PyMongo and Motor.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sessionlib import (
    Budget,
    ConfigurationError,
    InvalidInputError,
    Lock,
    MongoSessions,
    NoSessionAvailableError,
)
from tests.support.backends import documents
from tests.support.clock import START, MovableClock, utc


async def fill(pool: MongoSessions, count: int, **fields: Any) -> None:
    for number in range(count):
        await pool.add({"_id": number, "session": {"n": number}, **fields})


# -- scopes ---------------------------------------------------------------------


async def test_a_scoped_lock_holds_for_its_scope_only(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await fill(pool, 1)
    await pool.session_lock({"_id": 0}, {"minutes": 10}, scope="search")

    assert await pool.get_session(next_use_delay=0, scope="search") is None
    assert 0 == (await pool.get_session(next_use_delay=0, scope="profile"))["_id"]  # type: ignore[index]
    clock.advance(milliseconds=1)  # a hold of 0 s still holds at its very instant
    assert 0 == (await pool.get_session(next_use_delay=0))["_id"]  # type: ignore[index]
    clock.advance(minutes=10, milliseconds=-1)
    assert await pool.get_session(next_use_delay=0, scope="search") is None  # the very end
    clock.advance(milliseconds=1)
    assert 0 == (await pool.get_session(next_use_delay=0, scope="search"))["_id"]  # type: ignore[index]


async def test_a_hold_after_a_scoped_hand_out_is_global(pool: MongoSessions) -> None:
    await fill(pool, 1)

    assert await pool.get_session(scope="search") is not None

    assert await pool.get_session() is None
    assert await pool.get_session(scope="profile") is None


async def test_statistics_count_as_a_scope_sees_the_pool(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await fill(pool, 4)
    await pool.session_lock({"_id": 0}, {"minutes": 5}, scope="search")
    await pool.session_block({"_id": 1}, {"days": 1}, scope="search")
    await pool.session_lock({"_id": 2}, {"minutes": 5})

    everyone = await pool.aggregate_statistics()
    search = await pool.aggregate_statistics(scope="search")
    profile = await pool.statistics(scope="profile")

    assert (3, 1) == (everyone["count_active"], everyone["count_locked"])
    assert (1, 3) == (search["count_active"], search["count_locked"])
    assert (3, 1) == (profile.available, profile.unavailable)


async def test_expired_scoped_locks_are_dropped(pool: MongoSessions, clock: MovableClock) -> None:
    await fill(pool, 2)
    await pool.session_lock({"_id": 0}, {"minutes": 5}, scope="search")
    await pool.session_lock({"_id": 0}, {"hours": 5}, scope="profile")
    await pool.session_lock({"_id": 1}, {"minutes": 1}, scope="search")
    clock.advance(minutes=10)

    cleared = await pool.release_expired_scoped_locks()

    by_id = {doc["_id"]: doc for doc in await documents(pool)}
    assert 2 == cleared
    assert ["profile"] == list(by_id[0]["scopes"])
    assert {} == by_id[1]["scopes"]


async def test_acquire_and_lease_with_a_scope_skip_its_locks(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await fill(pool, 2)
    await pool.session_lock({"_id": 0}, {"hours": 1}, scope="search")

    lease = await pool.acquire(hold=0, scope="search")
    assert lease is not None
    assert 1 == lease.session["_id"]
    await lease.lock({"hours": 1}, scope="search")  # now both are out for "search"
    clock.advance(seconds=1)
    with pytest.raises(NoSessionAvailableError):
        async with pool.lease(scope="search"):
            pass
    taken = []

    async def rate_limited_on_profiles() -> None:
        async with pool.lease(scope="profile", on_error={KeyError: Lock(scope="profile")}) as held:
            taken.append(held.session["_id"])
            raise KeyError("rate limited on profiles")

    with pytest.raises(KeyError):
        await rate_limited_on_profiles()
    assert [0] == taken  # the least recently used of the two

    scopes = {doc["_id"]: set(doc["scopes"]) for doc in await documents(pool)}
    assert {0: {"search", "profile"}, 1: {"search"}} == scopes
    assert "KeyError" == (await documents(pool))[0]["reason"]


@pytest.mark.parametrize("scope", ["", "a.b", "$x", "other", "x" * 65, 5])
async def test_bad_scopes_are_refused_writing_nothing(pool: MongoSessions, scope: Any) -> None:
    await fill(pool, 1)
    before = await documents(pool)

    for call in (
        lambda: pool.session_lock({"_id": 0}, scope=scope),
        lambda: pool.get_session(scope=scope),
        lambda: pool.statistics(scope=scope),
    ):
        with pytest.raises(InvalidInputError, match="scope"):
            await call()
    with pytest.raises(InvalidInputError, match="scope"):
        pool.lease(scope=scope)

    assert before == await documents(pool)


# -- budgets --------------------------------------------------------------------


async def budget_pool(
    client: Any, db_name: str, clock: MovableClock, *budgets: Budget
) -> MongoSessions:
    return await MongoSessions(
        db=db_name, collection="budgeted", client=client, clock=clock, budgets=budgets
    ).connect()


async def test_a_budget_allows_uses_per_rolling_window(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await budget_pool(client, db_name, clock, Budget(uses=3, per={"minutes": 10}))
    await fill(pool, 1)
    taken_at = []
    for _ in range(13):  # one attempt a minute
        if await pool.get_session(next_use_delay=0) is not None:
            taken_at.append(clock() - START)
        clock.advance(minutes=1)
    await pool.close()

    minutes = [int(offset.total_seconds() // 60) for offset in taken_at]
    # 3 uses, then the window must roll past the first before the 4th (just after
    # minute 10: rolling, not fixed); the 5th waits for the second use to leave.
    assert [0, 1, 2, 11, 12] == minutes
    for a, b in zip(minutes, minutes[3:], strict=False):
        assert b - a >= 10  # never 4 in any 10 minutes


async def test_a_spent_budget_shows_as_its_own_lock_kind(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await budget_pool(client, db_name, clock, Budget(uses=2, per={"hours": 1}))
    await fill(pool, 2)
    for _ in range(2):
        await pool.get_session(next_use_delay=0)
    clock.advance(seconds=1)
    await pool.get_session(next_use_delay=0)  # session 0 again: now spent

    stats = await pool.aggregate_statistics()
    (spent, _) = await documents(pool)
    await pool.close()

    assert (1, 1) == (stats["locked_by_kind"]["budget"], stats["count_active"])
    assert ("budget", START + timedelta(hours=1)) == (spent["lock_kind"], utc(spent["next_use"]))
    assert START + timedelta(hours=1) == stats["next_unlock"]


async def test_no_report_frees_a_session_its_budget_holds(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await budget_pool(client, db_name, clock, Budget(uses=1, per={"hours": 1}))
    plain = await budget_pool(client, db_name, clock)  # as the CLI: no budgets declared
    await fill(pool, 1)
    spent = await pool.get_session(next_use_delay=5)
    assert spent is not None
    ends = START + timedelta(hours=1)

    states = []
    for report in (
        lambda: pool.session_success(spent, next_use_delay=10),
        lambda: pool.session_lock(spent, {"minutes": 5}),
        lambda: plain.session_release({"_id": 0}),
        lambda: pool.session_release(spent),
    ):
        await report()
        (doc,) = await documents(pool)
        states.append((doc["lock_kind"], utc(doc["next_use"]), utc(doc["ready_at"])))
    stats = await pool.statistics()
    await pool.session_lock(spent, {"hours": 2})  # a longer lock wins
    (longer,) = await documents(pool)
    await pool.close()
    await plain.close()

    assert [("budget", ends, ends)] * 4 == states
    assert (1, 0) == (stats.budget, stats.available)
    assert ("locked", START + timedelta(hours=2)) == (longer["lock_kind"], utc(longer["next_use"]))


async def test_count_use_weighs_against_the_budget(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await budget_pool(client, db_name, clock, Budget(uses=5, per={"hours": 1}))
    await fill(pool, 1)

    for count, handed in ((3, True), (3, False), (2, True), (1, False)):  # 6 > 5; 5: spent
        assert handed is (await pool.get_session(count_use=count, next_use_delay=0) is not None)
        clock.advance(milliseconds=1)
    await pool.close()


async def test_a_scoped_budget_locks_its_scope_only(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await budget_pool(
        client, db_name, clock, Budget(uses=1, per={"minutes": 30}, scope="search")
    )
    await fill(pool, 1)

    assert await pool.get_session(next_use_delay=0, scope="search") is not None
    clock.advance(milliseconds=1)
    assert await pool.get_session(next_use_delay=0, scope="search") is None
    assert await pool.get_session(next_use_delay=0) is not None  # no budget for others
    clock.advance(minutes=31)
    assert await pool.get_session(next_use_delay=0, scope="search") is not None
    await pool.close()


# What another program may leave where budgets and scoped locks are kept: a
# pipeline's $set of "budgets.<key>" or "scopes.<scope>" writes nothing into
# these, so a use would go uncounted and a lock unwritten.
NOT_DOCUMENTS = [None, [], [{"all-1800s": [], "search": 1}], "x", 5]


@pytest.mark.parametrize("kept", NOT_DOCUMENTS, ids=repr)
async def test_budgets_and_scoped_locks_hold_whatever_was_kept_there(
    client: Any, db_name: str, clock: MovableClock, kept: Any
) -> None:
    pool = await budget_pool(
        client,
        db_name,
        clock,
        Budget(uses=1, per={"minutes": 30}),
        Budget(uses=1, per={"minutes": 30}, scope="search"),
    )
    await fill(pool, 2, budgets=kept, scopes=kept)

    first = await pool.get_session(next_use_delay=0, scope="search")  # spends both budgets
    clock.advance(milliseconds=1)
    await pool.session_lock({"_id": 1}, {"minutes": 10}, scope="search")
    to_search = await pool.get_session(next_use_delay=0, scope="search")
    to_others = await pool.get_session(next_use_delay=0)
    clock.advance(milliseconds=1)
    again = await pool.get_session(next_use_delay=0)
    await pool.close()

    assert (0, None, 1, None) == (
        first and first["_id"],
        to_search,  # 0 spent its budget for search too; 1 is locked for search
        to_others and to_others["_id"],
        again,  # both spent the pool-wide budget
    )


@pytest.mark.parametrize("kept", NOT_DOCUMENTS, ids=repr)
async def test_a_session_with_no_scoped_lock_kept_is_handed_out_to_a_scope(
    pool: MongoSessions, kept: Any
) -> None:
    await fill(pool, 1, scopes=kept)

    stats = await pool.statistics(scope="search")
    taken = await pool.get_session(scope="search")

    assert (1, 0) == (stats.available, taken and taken["_id"])


@pytest.mark.parametrize(
    "budget",
    [
        {"uses": 0, "per": {"hours": 1}},
        {"uses": 10**6, "per": {"hours": 1}},
        {"uses": 1, "per": {"hour": 1}},
        {"uses": 1, "per": {"days": 400}},
        {"uses": 1, "per": {"hours": 1}, "scope": "a.b"},
        {"uses": True, "per": {"hours": 1}},
    ],
)
def test_bad_budgets_are_refused(budget: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="Budget"):
        Budget(**budget)


def test_two_budgets_with_one_window_and_scope_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="same window"):
        MongoSessions(
            "mongodb://h",
            db="d",
            collection="c",
            budgets=[Budget(5, {"hours": 1}), Budget(9, {"minutes": 60})],
        )


# -- locks until an instant -------------------------------------------------------


async def test_a_lock_until_an_instant(pool: MongoSessions, clock: MovableClock) -> None:
    await fill(pool, 2)
    reset = START + timedelta(minutes=7, seconds=30)
    moscow = timezone(timedelta(hours=3))

    await pool.session_lock({"_id": 0}, until=reset.astimezone(moscow), reason="rate limit")
    await pool.session_block({"_id": 1}, until=START + timedelta(days=2))

    by_id = {doc["_id"]: doc for doc in await documents(pool)}
    assert (reset, "locked") == (utc(by_id[0]["next_use"]), by_id[0]["lock_kind"])
    assert (START + timedelta(days=2), "blocked") == (
        utc(by_id[1]["next_use"]),
        by_id[1]["lock_kind"],
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"until": datetime(2026, 1, 1, 13, 0)}, "time zone"),  # naive
        ({"until": "2026-01-01T13:00:00Z"}, "datetime"),
        ({"until": START + timedelta(days=365 * 200)}, "100 years"),
        ({"until": START + timedelta(hours=1), "period": {"hours": 1}}, "not both"),
        ({"reason": "$set"}, "reason"),
        ({"reason": "x" * 201}, "reason"),
    ],
)
async def test_bad_lock_arguments_write_nothing(
    pool: MongoSessions, kwargs: dict[str, Any], error: str
) -> None:
    await fill(pool, 1)
    before = await documents(pool)

    with pytest.raises(InvalidInputError, match=error):
        await pool.session_lock({"_id": 0}, **kwargs)

    assert before == await documents(pool)


# -- choosing per call ------------------------------------------------------------


async def test_where_narrows_the_choice_in_the_same_command(pool: MongoSessions) -> None:
    for number, region in enumerate(["us", "eu", "eu", "asia"]):
        await pool.add({"_id": number, "session": {"region": region, "tier": number}})

    first = await pool.get_session(where={"session.region": "eu"})
    second = await pool.get_session(where={"session.region": "eu"})
    third = await pool.get_session(where={"session.region": "eu"})
    lease = await pool.acquire(where={"session.tier": {"$gte": 3}})

    assert {1, 2} == {first["_id"], second["_id"]}  # type: ignore[index]
    assert third is None
    assert lease is not None
    assert 3 == lease["_id"]


@pytest.mark.parametrize(
    "where",
    [
        {"$or": [{"active": False}, {"active": True}]},
        {"$where": "true"},
        {"$expr": {"$eq": [1, 1]}},
        {"session.region": {"$where": "1"}},
        {"session": {"$elemMatch": {"$function": {}}}},
        ["session.region", "eu"],
        {"": 1},
    ],
)
async def test_a_where_that_could_replace_the_availability_filter_is_refused(
    pool: MongoSessions, where: Any
) -> None:
    await fill(pool, 1)
    await pool.session_inactive({"_id": 0})
    before = await documents(pool)

    with pytest.raises(InvalidInputError, match="where"):
        await pool.get_session(where=where)

    assert before == await documents(pool)


# -- reasons and history ----------------------------------------------------------


async def test_every_report_records_its_reason_and_a_capped_history(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await fill(pool, 1)
    lease = await pool.acquire()
    assert lease is not None
    await lease.lock({"minutes": 1}, reason="HTTP 429")
    await pool.session_block({"_id": 0}, reason="banned")
    await pool.session_release({"_id": 0})
    await pool.session_inactive({"_id": 0}, reason="bad login")
    await pool.session_activate({"_id": 0}, reason="password reset")
    await pool.session_success({"_id": 0}, reason="worked")
    await pool.session_success({"_id": 0})  # no reason: not a state change worth keeping
    await pool.session_lock({"_id": 0}, scope="search", reason="search quota")

    found = await pool.history({"_id": 0})

    assert found is not None
    assert "search quota" == found["reason"]
    assert [
        ("locked", "HTTP 429", 1),
        ("blocked", "banned", None),
        ("released", None, None),
        ("deactivated", "bad login", None),
        ("activated", "password reset", None),
        ("success", "worked", None),
        ("locked:search", "search quota", None),
    ] == [(e["kind"], e["reason"], e["fence"]) for e in found["history"]]
    assert {"sessionpool"} == {e["by"] for e in found["history"]}
    assert START == found["history"][0]["at"]


async def test_history_survives_a_thousand_reports_capped_at_twenty(pool: MongoSessions) -> None:
    await fill(pool, 1)

    for number in range(1000):
        await pool.session_lock({"_id": 0}, {"seconds": 1}, reason=f"report {number}")

    found = await pool.history({"_id": 0})
    assert found is not None
    assert [f"report {n}" for n in range(980, 1000)] == [e["reason"] for e in found["history"]]


class RateLimitedError(Exception):
    pass


async def test_the_leases_error_mapping_records_the_exceptions_class(pool: MongoSessions) -> None:
    await fill(pool, 1)

    with pytest.raises(RateLimitedError):
        async with pool.lease(on_error={RateLimitedError: Lock({"minutes": 5})}):
            raise RateLimitedError

    found = await pool.history({"_id": 0})
    assert found is not None
    assert ("RateLimitedError", "locked") == (found["reason"], found["history"][-1]["kind"])


async def test_a_malformed_history_is_started_afresh(pool: MongoSessions) -> None:
    await pool.sessions.insert_one({"_id": 0, "session": {}, "history": "not a list"})

    await pool.session_lock({"_id": 0}, {"minutes": 1}, reason="fresh")

    (doc,) = await documents(pool)
    assert ["fresh"] == [entry["reason"] for entry in doc["history"]]


def test_a_seed_style_call_still_takes_its_positional_arguments() -> None:
    # The seed's signatures are unchanged: only new keyword arguments.
    import inspect

    lock = inspect.signature(MongoSessions.session_lock)
    get = inspect.signature(MongoSessions.get_session)
    assert ["self", "session", "period"] == list(lock.parameters)[:3]
    assert ["self", "count_use", "next_use_delay"] == list(get.parameters)[:3]
    assert all(
        p.kind is p.KEYWORD_ONLY
        for name, p in lock.parameters.items()
        if name in {"until", "scope", "reason"}
    )
