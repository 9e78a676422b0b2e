"""Generated bad input: always the library's error, never a write."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient

from sessionlib import InvalidInputError, MongoSessions
from sessionlib.validation import PERIOD_KEYS

SAMPLE = [{"_id": "s1", "session": {"phone": "+7000"}}, {"_id": 2, "session": {}}]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
not_a_session = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6).filter(lambda k: k != "_id"), scalars, max_size=3),
)
bad_number = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
    st.floats(min_value=1e17, allow_infinity=False),  # over 100 years in any unit
    st.text(max_size=4),
    st.booleans(),
)
bad_period = st.one_of(
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in PERIOD_KEYS),
        st.integers(0, 10),
        min_size=1,
        max_size=2,
    ),
    st.builds(
        lambda key, value: {key: value},
        st.sampled_from(sorted(PERIOD_KEYS)),
        st.one_of(bad_number, st.none()),
    ),
    st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2)),
)
operator_key = st.text(max_size=6).map(lambda k: "$" + k)
bad_payload = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.builds(lambda key, value: {key: value}, operator_key, scalars),
    st.builds(lambda value: {"_id": value}, scalars),
    st.builds(lambda rest, value: {"_id." + rest: value}, st.text(min_size=1, max_size=4), scalars),
    st.builds(lambda key, value: {"session": {key: value}}, operator_key, scalars),
)


def check(
    pool_factory: Callable[[], Awaitable[MongoSessions]], call: Callable[[MongoSessions], Any]
) -> None:
    async def scenario() -> None:
        pool = await pool_factory()
        try:
            before = await pool.sessions.find({}).sort("_id", 1).to_list(None)
            with pytest.raises(InvalidInputError):
                await call(pool)
            assert before == await pool.sessions.find({}).sort("_id", 1).to_list(None)
        finally:
            await pool.close()

    asyncio.run(scenario())


def mock_pool() -> Callable[[], Awaitable[MongoSessions]]:
    client = AsyncMongoMockClient(tz_aware=True)

    async def make() -> MongoSessions:
        pool = await MongoSessions(db="bad", collection="pool", client=client).connect()
        if not await pool.count_documents({}):
            await pool.sessions.insert_many([dict(d) for d in SAMPLE])
        return pool

    return make


@SETTINGS
@given(
    session=not_a_session,
    method=st.sampled_from(
        [
            "session_success",
            "session_lock",
            "session_block",
            "session_inactive",
            "session_release",
            "session_activate",
            "session_delete",
        ]
    ),
)
def test_sessions_without_an_id(session: Any, method: str) -> None:
    check(mock_pool(), lambda pool: getattr(pool, method)(session))


@SETTINGS
@given(period=bad_period, method=st.sampled_from(["session_lock", "session_block"]))
def test_bad_periods(period: Any, method: str) -> None:
    check(mock_pool(), lambda pool: getattr(pool, method)({"_id": "s1"}, period))


@SETTINGS
@given(delay=bad_number)
def test_bad_delays(delay: Any) -> None:
    check(mock_pool(), lambda pool: pool.session_success({"_id": "s1"}, next_use_delay=delay))
    check(mock_pool(), lambda pool: pool.get_session(next_use_delay=delay))


@SETTINGS
@given(payload=bad_payload)
def test_bad_payloads(payload: Any) -> None:
    check(mock_pool(), lambda pool: pool.session_update({"_id": "s1"}, payload))


@SETTINGS
@given(data=bad_payload.filter(lambda p: not (isinstance(p, dict) and "_id" in p and len(p) == 1)))
def test_bad_documents(data: Any) -> None:
    check(mock_pool(), lambda pool: pool.add(data))


def wire_pool(url: str, db: str) -> Callable[[], Awaitable[MongoSessions]]:
    """A pool that owns its client: each scenario runs in its own event loop."""

    async def make() -> MongoSessions:
        pool = await MongoSessions(url, db=db, collection="pool").connect()
        if not await pool.count_documents({}):
            await pool.sessions.insert_many([dict(d) for d in SAMPLE])
        return pool

    return make


BIG = "x" * (17 * 1024 * 1024)


@pytest.mark.wire
@pytest.mark.parametrize(
    "call",
    [
        lambda pool: pool.add({"_id": "big", "session": {"blob": BIG}}),
        lambda pool: pool.session_update({"_id": "s1"}, {"session.blob": BIG}),
    ],
    ids=["add", "session_update"],
)
def test_oversized_documents_are_refused(wire_url: str, db_name: str, call: Any) -> None:
    check(wire_pool(wire_url, db_name), call)


@pytest.mark.wire
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=bad_payload, period=bad_period)
def test_the_same_over_the_wire(wire_url: str, db_name: str, payload: Any, period: Any) -> None:
    make = wire_pool(wire_url, db_name)
    check(make, lambda pool: pool.session_update({"_id": "s1"}, payload))
    check(make, lambda pool: pool.session_lock({"_id": "s1"}, period))
