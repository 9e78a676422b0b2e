"""Documents as they come back from MongoDB, malformed every way, through every public call.

Generated documents hold every type the driver returns (Int64, Decimal128,
NaN and infinite floats, Binary, nested arrays and documents, naive and
aware dates, missing fields) in every field sessionlib reads. Over the real
wire protocol, each call must return within its timeout, and never raise
anything but a ``SessionPoolError``; in fact malformed data makes none of
them fail at all. A call about one session must change nothing but that
session, and the exporter must still publish every other pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient

from exporter.config import Config
from exporter.daemon import open_store
from exporter.discovery import Discovery
from exporter.refresh import Refresher
from exporter.snapshot import PoolKey, State
from sessionlib import (
    Budget,
    Lock,
    MongoSessions,
    NoSessionAvailableError,
    PoolStatistics,
    SessionPoolError,
)
from sessionlib.states import LOCK_KINDS

pytestmark = pytest.mark.wire

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
TIME_LIMIT = 10.0

# What a BSON document can hold: no lone surrogates, no "$", "." or NUL in names.
characters = st.characters(blacklist_categories=("Cs",))
keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="$.\x00"),
    min_size=1,
    max_size=5,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1.5", "-0", "1E+400"]).map(Decimal128),
    st.text(characters, max_size=6),
    st.binary(max_size=6).map(Binary),
    st.builds(ObjectId),
    st.sampled_from(
        [
            NOW - timedelta(hours=1),
            NOW + timedelta(hours=1),
            NOW.replace(tzinfo=None) + timedelta(hours=3),  # naive, as the seed wrote
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 1, 1, tzinfo=UTC),
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "active": st.sampled_from([True, False]),
    "next_use": st.sampled_from([None, NOW - timedelta(minutes=1), NOW + timedelta(minutes=5)]),
    "last_use": st.sampled_from([None, NOW - timedelta(hours=2)]),
    "count_use": st.integers(0, 10),
    "count_success": st.integers(0, 10),
    "lock_kind": st.sampled_from(["in_use", "locked", "blocked"]),
    "locked_at": st.just(NOW - timedelta(minutes=1)),
    "ready_at": st.sampled_from([NOW - timedelta(minutes=1), NOW + timedelta(minutes=5)]),
    "lease": st.just("abc"),
    "fence": st.integers(0, 5),
    "strikes": st.integers(0, 6),
    "strikes_since": st.just(NOW - timedelta(hours=1)),
    "created": st.just(NOW - timedelta(days=1)),
    "session": st.dictionaries(keys, scalars, max_size=2),
    # What scopes, budgets, reasons and history write.
    "scopes": st.fixed_dictionaries(
        {}, optional={"search": st.sampled_from([NOW - timedelta(minutes=1), NOW + HOUR])}
    ),
    "budgets": st.fixed_dictionaries(
        {},
        optional={
            key: st.lists(st.sampled_from([NOW - timedelta(minutes=1), NOW + HOUR]), max_size=4)
            for key in ("all-900s", "search-900s")
        },
    ),
    "reason": st.text(characters, max_size=5),
    "history": st.lists(
        st.fixed_dictionaries(
            {"at": st.just(NOW - HOUR), "kind": st.sampled_from(["success", "locked"])}
        ),
        max_size=3,
    ),
}
documents = st.fixed_dictionaries(
    {}, optional={name: st.one_of(plausible, values) for name, plausible in PLAUSIBLE.items()}
)

Call = Callable[[MongoSessions], Awaitable[Any]]
TARGET = {"_id": 0}

# Calls about the target session only: nothing else may change.
TARGETED: dict[str, Call] = {
    "session_success": lambda p: p.session_success(dict(TARGET)),
    "session_lock": lambda p: p.session_lock(dict(TARGET), {"minutes": 5}),
    "session_lock_escalated": lambda p: p.session_lock(dict(TARGET)),
    "session_block": lambda p: p.session_block(dict(TARGET)),
    "session_release": lambda p: p.session_release(dict(TARGET)),
    "session_inactive": lambda p: p.session_inactive(dict(TARGET)),
    "session_activate": lambda p: p.session_activate(dict(TARGET)),
    # A top-level field: a dotted path into a "session" that is no document
    # is the caller's mistake, which the server refuses, writing nothing.
    "session_update": lambda p: p.session_update(dict(TARGET), {"note": 1}),
    "session_lock_scoped": lambda p: p.session_lock(dict(TARGET), {"minutes": 5}, scope="search"),
    "session_block_until": lambda p: p.session_block(dict(TARGET), until=NOW + HOUR, reason="r"),
}


async def lease_body(pool: MongoSessions) -> None:
    async with pool.lease(on_error={KeyError: Lock()}):
        pass


# Hand-outs: at most the one session handed out may change.
HAND_OUTS: dict[str, Call] = {
    "get_session": lambda p: p.get_session(),
    "acquire": lambda p: p.acquire(),
    "lease": lease_body,
    "get_session_scoped": lambda p: p.get_session(scope="search"),
    "get_session_where": lambda p: p.get_session(where={"session.k": {"$exists": False}}),
}
# The same hand-outs on a pool with budgets, pool-wide and for a scope.
BUDGETS = [Budget(uses=3, per={"minutes": 15}), Budget(uses=2, per={"minutes": 15}, scope="search")]
BUDGETED: dict[str, Call] = {
    "budgeted get_session": lambda p: p.get_session(),
    "budgeted get_session_scoped": lambda p: p.get_session(scope="search"),
}
# Reads: nothing may change.
READS: dict[str, Call] = {
    "count_active": lambda p: p.count_active(),
    "get_sessions": lambda p: p.get_sessions(),
    "statistics": lambda p: p.statistics(),
    "aggregate_statistics": lambda p: p.aggregate_statistics(),
    "next_available_at": lambda p: p.next_available_at(),
    "statistics_scoped": lambda p: p.statistics(scope="search"),
    "scope_rows": lambda p: p.scope_rows(),
    "history": lambda p: p.history(dict(TARGET)),
}


def changed(
    before: list[dict[str, Any]], after: list[dict[str, Any]], ignoring: str | None = None
) -> set[Any]:
    """The ``_id`` of the documents that differ, in any field but *ignoring*."""

    def seen(doc: dict[str, Any] | None) -> str:
        return repr(doc if doc is None else {k: v for k, v in doc.items() if k != ignoring})

    old = {doc["_id"]: doc for doc in before}
    new = {doc["_id"]: doc for doc in after}
    return {key for key in old.keys() | new.keys() if seen(old.get(key)) != seen(new.get(key))}


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(documents, min_size=1, max_size=5))
# The case that stopped every hand-out of its pool: never used, so first in
# line, with counters no $inc could add to.
@example(batch=[{"last_use": None, "count_use": "x", "fence": [1], "count_success": None}])
@example(batch=[{"lock_kind": {"a": 1}, "next_use": NOW + timedelta(hours=1)}, {"count_use": 1.5}])
# An array holding a document passes a query's {"$type": "object"}, and then
# failed every scoped statistics and auto-release command of its pool.
@example(batch=[{"scopes": [{}]}, {"scopes": {"search": NOW + HOUR}}])
# Free sessions whose order key says later: an empty hand-out requeues both.
@example(batch=[{"next_use": NOW + HOUR}, {"ready_at": NOW + HOUR}, {"ready_at": NOW + HOUR}])
def test_every_call_survives_malformed_documents(
    wire_url: str, db_name: str, batch: list[dict[str, Any]]
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    database = client[db_name]
    bad = f"bad_{uuid.uuid4().hex[:8]}"
    database[bad].insert_many([{**doc, "_id": number} for number, doc in enumerate(batch)])
    if "good" not in database.list_collection_names():
        database["good"].insert_many([{"_id": n, "session": {}} for n in range(2)])

    def read() -> list[dict[str, Any]]:
        return list(database[bad].find().sort("_id", 1))

    async def scenario() -> list[str]:
        problems: list[str] = []
        from sessionlib import EscalationPolicy

        async with (
            MongoSessions(
                wire_url, db=db_name, collection=bad, timeout=5, max_allowed_reconnect=0
            ) as plain,
            MongoSessions(
                wire_url,
                db=db_name,
                collection=bad,
                timeout=5,
                max_allowed_reconnect=0,
                budgets=BUDGETS,
            ) as budgeted,
        ):
            groups = [
                (TARGETED, {0}, plain),
                (HAND_OUTS, None, plain),
                (BUDGETED, None, budgeted),
                (READS, set(), plain),
            ]
            for group, allowed, pool in groups:
                for name, call in group.items():
                    pool.escalation = EscalationPolicy() if name.endswith("escalated") else None
                    before = read()
                    try:
                        async with asyncio.timeout(TIME_LIMIT):
                            await call(pool)
                    except NoSessionAvailableError:
                        pass  # the lease, when no session is available: as promised
                    except SessionPoolError as exc:
                        # Still the library's error, but malformed data must
                        # not make a hand-out, a read or a report fail.
                        problems.append(f"{name} failed: {type(exc).__name__}: {exc}")
                    except TimeoutError:
                        problems.append(f"{name} did not finish within {TIME_LIMIT:g} s")
                    except Exception as exc:
                        problems.append(f"{name} raised {type(exc).__name__}: {exc}")
                    # A hand-out that finds none may requeue sessions released
                    # by hand: their order key moves, nothing else of theirs.
                    touched = changed(before, read(), "ready_at" if allowed is None else None)
                    limit = allowed if allowed is not None else touched if len(touched) <= 1 else {}
                    if not touched <= set(limit):
                        problems.append(f"{name} changed sessions {sorted(touched, key=repr)}")
            released = await plain.release_expired_locks()
            assert set(released) == {kind.value for kind in LOCK_KINDS}
            assert 0 <= await plain.release_expired_scoped_locks() <= len(batch)
        config = Config(mongo_url=wire_url, databases=(db_name,), pool_timeout=5)
        store = open_store(config)
        refresher = Refresher(store, Discovery(store, config), State(1), config)
        snapshot = await refresher.refresh()
        outcomes = await store.statistics([PoolKey(db_name, bad), PoolKey(db_name, "good")])
        await refresher.close()
        good = PoolKey(db_name, "good")
        if not snapshot.up or good not in snapshot.statistics:
            problems.append("the exporter did not publish the good pool")
        elif (2, 2) != (snapshot.statistics[good].total, snapshot.statistics[good].available):
            problems.append(f"the good pool reads {snapshot.statistics[good]}")
        # Malformed documents are counted, never a reason to lose a pool's series.
        if PoolKey(db_name, bad) not in snapshot.statistics:
            problems.append("the exporter did not publish the malformed pool")
        for key, outcome in outcomes.items():
            if not isinstance(outcome, PoolStatistics):
                problems.append(f"statistics of {key}: {outcome!r}")
            elif key.collection == bad and outcome.total != len(batch):
                problems.append(f"statistics of {key} count {outcome.total} of {len(batch)}")
        return problems

    try:
        problems = asyncio.run(scenario())
    finally:
        database.drop_collection(bad)
        client.close()
    assert [] == problems, f"documents {batch!r}"


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents)
# A hand-edited release: the order key still says later (taken after a requeue).
@example(document={"next_use": None, "ready_at": NOW + HOUR})
# A query's {active: False} matches an array holding false: never handed out.
@example(document={"active": [True, False]})
def test_a_session_the_statistics_count_available_is_handed_out(
    wire_url: str, db_name: str, document: dict[str, Any]
) -> None:
    # Counting available what no hand-out takes would starve the workers
    # while the low-availability alert stays silent.
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    collection = f"one_{uuid.uuid4().hex[:8]}"
    client[db_name][collection].insert_one({**document, "_id": 0})

    async def scenario() -> list[str]:
        problems = []
        async with MongoSessions(wire_url, db=db_name, collection=collection, timeout=5) as pool:
            statistics = await pool.statistics()
            scoped = await pool.statistics(scope="search")
            active = await pool.count_active()
            if statistics.available > active:
                problems.append(f"{statistics.available} available, {active} active")
            # As the scope sees it first (a hand-out changes the session), then as all do.
            if scoped.available and await pool.get_session(scope="search") is None:
                problems.append("counted available to 'search', not handed out to it")
            elif statistics.available and not scoped.available and not await pool.get_session():
                problems.append("counted available, not handed out")
        return problems

    try:
        problems = asyncio.run(scenario())
    finally:
        client[db_name].drop_collection(collection)
        client.close()
    assert [] == problems, f"document {document!r}"
