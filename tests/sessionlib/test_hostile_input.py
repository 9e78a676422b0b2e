"""Hostile input, one class each: it gets the library's error, in bounded time, writing nothing."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from bson import Decimal128, Int64, Regex

from sessionlib import (
    ConfigurationError,
    EscalationPolicy,
    InvalidInputError,
    InvalidSessionError,
    Lock,
    MongoSessions,
    SessionPoolError,
)
from sessionlib.logger import redact_url, url_password
from sessionlib.states import State, state_of
from sessionlib.validation import check_document
from tests.support.backends import documents
from tests.support.clock import MovableClock

INJECTIONS: list[Any] = [
    {"$gt": ""},
    {"$ne": None},
    {"$exists": True},
    {"$in": [1, 2, 3]},
    {"$regex": ".*"},
    {"nested": {"$gt": 0}},
    [1, 2],
    re.compile(".*"),
    Regex(".*"),
    {1, 2},
]

Call = Callable[[MongoSessions, dict[str, Any]], Awaitable[Any]]

TARGETED: dict[str, Call] = {
    "session_delete": lambda pool, s: pool.session_delete(s),
    "session_lock": lambda pool, s: pool.session_lock(s, {"hours": 1}),
    "session_block": lambda pool, s: pool.session_block(s),
    "session_update": lambda pool, s: pool.session_update(s, {"session.x": 1}),
    "session_inactive": lambda pool, s: pool.session_inactive(s),
    "session_activate": lambda pool, s: pool.session_activate(s),
    "session_release": lambda pool, s: pool.session_release(s),
    "session_success": lambda pool, s: pool.session_success(s),
}


async def fill(pool: MongoSessions, count: int = 3) -> None:
    for number in range(count):
        await pool.add({"_id": number, "session": {"token": f"t{number}"}})


@pytest.mark.parametrize("method", sorted(TARGETED))
async def test_an_operator_as_id_selects_nothing_and_writes_nothing(
    pool: MongoSessions, method: str
) -> None:
    await fill(pool)
    before = await documents(pool)

    for injected in INJECTIONS:
        with pytest.raises(InvalidSessionError, match="_id"):
            await TARGETED[method](pool, {"_id": injected})

    assert before == await documents(pool)


async def test_plain_ids_of_every_kind_still_select_their_session(
    pool: MongoSessions, backend: str
) -> None:
    ids: list[Any] = ["text", 7, Int64(2**62), 2.5, {"a": 1, "b": [2]}, None]
    if backend != "mock":  # mongomock cannot hash a Decimal128 _id
        ids.append(Decimal128("1.5"))
    for value in ids:
        await pool.add({"_id": value, "session": {}})

    for value in ids:
        assert 1 == (await pool.session_lock({"_id": value}, {"minutes": 1})).matched_count


async def bounded(awaitable: Awaitable[Any], seconds: float = 5.0) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


async def test_64_bit_integers_as_the_driver_returns_them_never_hang(pool: MongoSessions) -> None:
    big = Int64(2**62 + 12345)
    await pool.add({"_id": "tg", "session": {"user_id": big, "ids": [Int64(-(2**63)), big]}})
    session = await pool.get_session()
    assert session is not None
    assert isinstance(session["session"]["user_id"], int)

    started = time.monotonic()
    result = await bounded(pool.session_update(session, {"session": session["session"]}))
    await bounded(pool.add({"_id": "more", "session": {"n": Int64(2**63 - 1)}}))

    assert 1 == result.matched_count
    assert time.monotonic() - started < 2.0
    (doc, *_) = [d for d in await documents(pool) if d["_id"] == "tg"]
    assert big == doc["session"]["user_id"]


def test_checking_a_huge_int_subclass_costs_no_time() -> None:
    # CPython scans range(...) item by item for int subclasses; 2**62 items never end.
    started = time.monotonic()
    check_document({"n": Int64(2**62), "deep": {"m": [Int64(-(2**63))]}})
    with pytest.raises(InvalidInputError, match="64 bits"):
        check_document({"n": 2**64})
    assert time.monotonic() - started < 0.5


def test_nesting_beyond_what_mongodb_stores_is_refused_without_recursion() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]

    with pytest.raises(InvalidInputError, match="nested deeper"):
        check_document({"session": deep})


@pytest.mark.parametrize("offset", [math.nan, math.inf, "10", 1e20, -1e20, True, None])
async def test_bad_offsets_are_refused(pool: MongoSessions, offset: Any) -> None:
    for call in (pool.count_active, pool.statistics, pool.aggregate_statistics):
        with pytest.raises(InvalidInputError, match="offset"):
            await call(offset)


async def test_a_malformed_first_session_does_not_stop_hand_outs(pool: MongoSessions) -> None:
    # Never used (sorts first) and with counters no $inc could add to.
    await pool.sessions.insert_one(
        {"_id": "bad", "session": {}, "last_use": None, "count_use": "x", "fence": [1]}
    )
    await pool.add({"_id": "good", "session": {}})

    first = await pool.get_session()
    second = await pool.get_session()

    assert {"bad", "good"} == {first["_id"], second["_id"]}  # type: ignore[index]
    repaired = next(d for d in await documents(pool) if d["_id"] == "bad")
    assert (1, 1) == (repaired["count_use"], repaired["fence"])


async def test_statistics_count_as_the_hand_out_takes_an_active_written_as_an_array(
    pool: MongoSessions, clock: MovableClock
) -> None:
    # A query's {active: False} matches an array holding false: the hand-out
    # never takes such a session, so it must not be counted available.
    await pool.sessions.insert_many(
        [
            {"_id": "off", "session": {}, "active": [True, False]},
            {"_id": "on", "session": {}, "active": [True]},
        ]
    )

    stats = await pool.statistics()
    active = await pool.count_active()
    listed = {doc["_id"]: state_of(doc, clock(), pool) for doc in await documents(pool)}
    taken = [await pool.get_session(), await pool.get_session()]

    assert (1, 1, 1) == (stats.available, stats.inactive, active)
    assert {"off": State.INACTIVE, "on": State.AVAILABLE} == listed
    assert ["on", None] == [None if doc is None else doc["_id"] for doc in taken]


@pytest.mark.parametrize(
    "policy",
    [
        {"base": timedelta(days=10), "cap": timedelta(days=365 * 90)},
        {"base": timedelta(0), "cap": timedelta(hours=1)},
        {"factor": float("nan")},
        {"factor": 1000.0},
        {"block_after": 0},
        {"window": timedelta(days=365 * 1000)},
        {"jitter": 1.5},
        {"decay": -1},
    ],
)
def test_escalation_policies_whose_locks_would_overflow_are_refused(
    policy: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError, match="escalation"):
        EscalationPolicy(**policy)


async def test_the_longest_escalation_allowed_locks_without_overflow(
    pool: MongoSessions, clock: MovableClock
) -> None:
    pool.escalation = EscalationPolicy(
        base=timedelta(days=1), factor=100, cap=timedelta(days=365 * 50), block_after=100
    )
    await fill(pool, 1)

    for _ in range(5):
        await pool.session_lock({"_id": 0})

    (doc,) = await documents(pool)
    assert 5 == doc["strikes"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("default_filter", [1]),
        ("default_filter", {1: "x"}),
        ("projection", "session"),
        ("timeout", "ten"),
        ("next_use_delay", -1),
        ("legacy_timezone", "Mars/Olympus"),
        ("client_options", [("w", 1)]),
        ("app_name", ""),
    ],
)
def test_bad_settings_are_configuration_errors(setting: str, value: Any) -> None:
    with pytest.raises(ConfigurationError):
        MongoSessions("mongodb://127.0.0.1:1", db="pools", collection="tg", **{setting: value})


@pytest.mark.parametrize(
    ("db", "collection"),
    [
        ("bad$db", "tg"),
        ("a/b", "tg"),
        ("pools", "bad$name"),
        ("pools", "system.users"),
        ("pools", "sessionpool.pools"),  # where targets and breakers live
        ("", "x"),
    ],
)
def test_invalid_names_are_refused_before_any_client_exists(db: str, collection: str) -> None:
    with pytest.raises(ConfigurationError):
        MongoSessions("mongodb://127.0.0.1:1", db=db, collection=collection)


async def test_switching_to_an_invalid_collection_is_refused(pool: MongoSessions) -> None:
    with pytest.raises(ConfigurationError):
        pool.switch_collection("bad$name")
    with pytest.raises(ConfigurationError):
        pool.with_collection("tg", db="bad db")
    assert "telegram" == pool.collection_name


class FlakyError(Exception):
    pass


async def test_a_bad_on_error_mapping_is_refused_before_the_hand_out(pool: MongoSessions) -> None:
    await fill(pool, 1)
    before = await documents(pool)

    for on_error in ({"x": Lock()}, {FlakyError: "lock"}, {(): Lock()}, ["not", "a", "mapping"]):
        with pytest.raises(InvalidInputError, match="on_error"):
            pool.lease(on_error=on_error)  # type: ignore[arg-type]

    assert before == await documents(pool)


async def test_a_failing_report_never_replaces_the_bodys_exception(pool: MongoSessions) -> None:
    await fill(pool, 1)

    with pytest.raises(FlakyError):
        async with pool.lease(on_error={FlakyError: Lock({"hours": -1})}):
            raise FlakyError

    (doc,) = await documents(pool)
    assert "in_use" == doc["lock_kind"]  # the bad report wrote nothing


PASSWORD = "se/cr@t:pass"


@pytest.mark.parametrize(
    "url",
    [
        f"mongodb://user:{PASSWORD}@db.example:27017/pools",
        f"mongodb://user:{PASSWORD}@db1,db2/?replicaSet=rs",
        f"mongodb+srv://user:{PASSWORD}@cluster.example/",
        f"mongodb://user:{PASSWORD}@",
        f"user:{PASSWORD}@host",
        f"mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:{PASSWORD}",
        f"mongodb://h/?password={PASSWORD}&w=1",
    ],
)
def test_redaction_does_not_trust_a_url_parser(url: str) -> None:
    redacted = redact_url(url)

    for piece in ("se/cr", "cr@t", "t:pass"):
        assert piece not in redacted, redacted
    assert "***" in redacted


def test_the_password_of_a_malformed_url_is_known_for_scrubbing() -> None:
    url = "mongodb://user:se%2Fcret/x@host/"

    assert ["se%2Fcret/x", "se/cret/x"] == url_password(url)
    assert [] == url_password("mongodb://host/")


def test_repr_of_a_pool_with_a_malformed_url_hides_the_password() -> None:
    pool = MongoSessions(f"mongodb://user:{PASSWORD}@host/", db="pools", collection="tg")

    assert PASSWORD not in repr(pool)
    assert "se/cr" not in str(pool.mongo_url)


async def test_every_error_above_is_in_the_librarys_tree() -> None:
    errors: list[BaseException] = []
    for call in (
        lambda: MongoSessions("mongodb://h", db="bad$", collection="x"),
        lambda: EscalationPolicy(factor=0),
        lambda: check_document({"$where": 1}),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(exc)

    assert 3 == len(errors)
    assert all(isinstance(error, SessionPoolError) for error in errors)
