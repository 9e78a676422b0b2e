"""Targets per pool, the circuit breaker and the workers' telemetry.

Each runs on mongomock and over the wire with PyMongo and Motor.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from bson import Decimal128, Int64
from prometheus_client import REGISTRY, CollectorRegistry

from sessionlib import (
    Block,
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    DuplicateSessionError,
    InvalidInputError,
    Lock,
    MongoSessions,
    NoSessionAvailableError,
    PoolMetrics,
    SessionPoolError,
    SessionStore,
    StaleLeaseError,
    Target,
)
from sessionlib.discovery import PoolKey
from sessionlib.metadata import METADATA_COLLECTION
from tests.support.backends import documents
from tests.support.clock import START, MovableClock


class LoginFailedError(Exception):
    """The source refused the session's login (or so the worker thinks)."""


class RateLimitedError(Exception):
    pass


ON_ERROR = {LoginFailedError: Block(), RateLimitedError: Lock({"minutes": 5})}


async def fill(pool: MongoSessions, count: int) -> None:
    for number in range(count):
        await pool.add({"_id": number, "session": {"n": number}})


async def metadata_document(pool: MongoSessions) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await pool.sessions.database[METADATA_COLLECTION].find_one(
        {"_id": pool.collection_name}
    )
    return found


# -- targets --------------------------------------------------------------------


async def test_a_target_is_stored_beside_the_pool_and_removed(pool: MongoSessions) -> None:
    assert await pool.target() is None

    await pool.set_target(Target(min_available=20, min_available_ratio=0.1), by="ops")
    stored = await metadata_document(pool)
    read = await pool.target()
    await pool.set_target(Target(min_available_ratio=0.25))
    changed = await pool.target()
    await pool.set_target(None)

    assert Target(20, 0.1) == read
    assert ("ops", 20, 0.1) == (
        stored["target"]["by"],  # type: ignore[index]
        stored["target"]["min_available"],  # type: ignore[index]
        stored["target"]["min_available_ratio"],  # type: ignore[index]
    )
    assert Target(None, 0.25) == changed
    assert await pool.target() is None
    assert [] == await documents(pool)  # the pool itself is untouched


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"min_available": -1},
        {"min_available": 1.5},
        {"min_available": True},
        {"min_available": 10**10},
        {"min_available": "20"},
        {"min_available_ratio": 1.5},
        {"min_available_ratio": math.nan},
        {"min_available_ratio": -0.1},
    ],
)
def test_bad_targets_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        Target(**fields)


async def test_a_target_another_program_wrote_is_read_leniently(pool: MongoSessions) -> None:
    metadata = pool.sessions.database[METADATA_COLLECTION]
    await metadata.insert_one(
        {"_id": "telegram", "target": {"min_available": Int64(7), "min_available_ratio": "x"}}
    )
    await metadata.insert_one({"_id": "other", "target": {"min_available": Decimal128("NaN")}})
    await metadata.insert_one({"_id": "third", "target": "broken", "breaker": [1, 2]})

    assert Target(7, None) == await pool.target()
    assert await pool.with_collection("other").target() is None
    assert await pool.with_collection("third").target() is None
    assert BreakerState() == await pool.with_collection("third").breaker_state()


async def test_store_statistics_carry_targets_and_breakers(
    client: Any, pool: MongoSessions, db_name: str
) -> None:
    await fill(pool, 2)
    await pool.with_collection("second").add({"_id": 1, "session": {}})
    await pool.set_target(Target(min_available=5))
    async with SessionStore(client=client) as store:
        found = await store.statistics([PoolKey(db_name, "telegram"), PoolKey(db_name, "second")])

    telegram, second = found[PoolKey(db_name, "telegram")], found[PoolKey(db_name, "second")]
    assert not isinstance(telegram, Exception)
    assert not isinstance(second, Exception)
    assert (2, Target(5, None), False) == (telegram.total, telegram.target, telegram.breaker.open)
    assert (1, None) == (second.total, second.target)


# -- the circuit breaker --------------------------------------------------------


async def breaker_pool(
    client: Any, db_name: str, clock: MovableClock, **policy: Any
) -> MongoSessions:
    breaker = CircuitBreaker(
        min_sessions=3, min_share=0.5, window={"minutes": 1}, cooldown={"minutes": 5}, **policy
    )
    return await MongoSessions(
        db=db_name, collection="telegram", client=client, clock=clock, breaker=breaker
    ).connect()


async def fail(pool: MongoSessions, error: type[Exception]) -> Any:
    """Take a session and fail with *error* in the lease; return the session's _id."""
    taken = []

    async def work() -> None:
        async with pool.lease(on_error=ON_ERROR) as lease:
            taken.append(lease["_id"])
            raise error("boom")

    with pytest.raises(error):
        await work()
    return taken[0]


async def test_many_sessions_failing_alike_trip_the_breaker(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    await fill(pool, 6)

    failed = [await fail(pool, LoginFailedError) for _ in range(4)]
    limited = await fail(pool, RateLimitedError)  # another class: reported as mapped
    state = await pool.breaker_state()
    by_id = {doc["_id"]: doc for doc in await documents(pool)}
    await pool.close()

    kinds = [(by_id[n].get("lock_kind"), by_id[n]["reason"]) for n in failed]
    assert [
        ("blocked", "LoginFailedError"),
        ("blocked", "LoginFailedError"),
        (None, "breaker: LoginFailedError"),  # the third distinct session trips it
        (None, "breaker: LoginFailedError"),
    ] == kinds
    assert ("locked", "RateLimitedError") == (by_id[limited]["lock_kind"], by_id[limited]["reason"])
    assert (True, "LoginFailedError", 3, 1.0, 1) == (
        state.open,
        state.error,
        state.sessions,
        state.share,
        state.trips,
    )
    assert START + timedelta(minutes=5) == state.until


async def test_failures_that_are_a_small_share_of_hand_outs_do_not_trip_it(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    await fill(pool, 10)
    for _ in range(7):  # seven sessions served well in the window
        async with pool.lease():
            pass

    failed = [await fail(pool, LoginFailedError) for _ in range(3)]  # 3 of 10: 30 %
    state = await pool.breaker_state()
    blocked = [doc["lock_kind"] for doc in await documents(pool) if doc["_id"] in failed]
    await pool.close()

    assert (False, ["blocked"] * 3) == (state.open, blocked)


async def test_one_session_failing_again_and_again_is_that_sessions_fault(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    await fill(pool, 1)
    for _ in range(4):
        await fail(pool, LoginFailedError)
        await pool.session_release({"_id": 0})

    state = await pool.breaker_state()
    await pool.close()

    assert state.open is False


async def test_the_breaker_closes_after_its_cooldown_or_a_reset(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    await fill(pool, 8)
    for _ in range(3):
        await fail(pool, LoginFailedError)
    assert (await pool.breaker_state()).is_open(clock())

    clock.advance(minutes=5)
    after_cooldown = await fail(pool, LoginFailedError)  # old failures left the window
    await pool.reset_breaker()
    reset = await pool.breaker_state()
    stored = await metadata_document(pool)
    by_id = {doc["_id"]: doc for doc in await documents(pool)}
    await pool.close()

    assert "blocked" == by_id[after_cooldown]["lock_kind"]
    assert (False, 1) == (reset.open, reset.trips)  # the trip count stays
    assert [] == stored["failures"]  # type: ignore[index]


async def test_a_pausing_breaker_stops_hand_outs_for_every_worker(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock, pause=True)
    other = await breaker_pool(client, db_name, clock, pause=True)  # another worker
    await fill(pool, 8)
    for _ in range(3):
        await fail(pool, LoginFailedError)

    here = await pool.get_session()
    there = await other.get_session()
    with pytest.raises(NoSessionAvailableError):
        async with other.lease():
            pass
    await pool.reset_breaker()
    after_reset = await pool.get_session()
    await pool.close()
    await other.close()

    assert (None, None) == (here, there)
    assert after_reset is not None


async def test_a_lease_waiting_on_a_paused_pool_says_so_and_wakes_when_the_pause_ends(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds=seconds)

    breaker = CircuitBreaker(
        min_sessions=3, min_share=0.5, window={"minutes": 1}, cooldown={"minutes": 5}, pause=True
    )
    pool = await MongoSessions(
        db=db_name, collection="telegram", client=client, clock=clock, sleep=sleep, breaker=breaker
    ).connect()
    await fill(pool, 8)
    for _ in range(3):
        await fail(pool, LoginFailedError)
    until = (await pool.breaker_state()).until
    assert until is not None

    with pytest.raises(NoSessionAvailableError) as caught:
        async with pool.lease(wait=60):
            pass
    async with pool.lease(wait=600) as lease:  # outlasts the pause
        woke = clock()
        taken = lease["_id"]
    await pool.close()

    assert "circuit breaker is open" in str(caught.value)
    assert until == caught.value.next_available_at  # not a locked session's time
    assert until < woke <= until + timedelta(milliseconds=5)
    assert taken is not None


@pytest.mark.parametrize(
    "broken",
    [
        {"breaker": "open!", "failures": {"a": 1}},
        # A query's "breaker.open" walks into the array and finds it open.
        {"breaker": [{"open": True, "until": START + timedelta(days=1)}], "failures": None},
        {"breaker": {"open": "yes", "until": "later", "trips": math.nan}},
    ],
    ids=["string", "array", "fields"],
)
async def test_a_broken_breaker_document_is_started_afresh(
    client: Any, db_name: str, clock: MovableClock, broken: dict[str, Any]
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    await fill(pool, 4)
    await pool.sessions.database[METADATA_COLLECTION].insert_one({"_id": "telegram", **broken})

    for _ in range(3):
        await fail(pool, LoginFailedError)
    state = await pool.breaker_state()
    await pool.close()

    assert (True, 1) == (state.open, state.trips)


async def test_sessions_whose_ids_look_like_operators_are_counted_apart(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    pool = await breaker_pool(client, db_name, clock)
    for name in ("$a", "$$b", "c"):
        await pool.add({"_id": name, "session": {}})

    for _ in range(3):
        await fail(pool, LoginFailedError)
    state = await pool.breaker_state()
    failures = (await metadata_document(pool))["failures"]  # type: ignore[index]
    await pool.close()

    assert (True, 3) == (state.open, state.sessions)
    assert {"'$a'", "'$$b'", "'c'"} == {entry["session"] for entry in failures}


@pytest.mark.parametrize(
    "policy",
    [
        {"min_sessions": 0},
        {"min_sessions": True},
        {"min_share": 1.5},
        {"min_share": math.nan},
        {"window": {"seconds": 0}},
        {"window": {"days": 30}},
        {"cooldown": {"bogus": 1}},
        {"pause": "yes"},
        {"check_interval": -1},
        {"keep": 2},
    ],
)
def test_bad_breaker_policies_are_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(**policy)


def test_a_breaker_must_be_a_circuit_breaker() -> None:
    with pytest.raises(ConfigurationError, match="CircuitBreaker"):
        MongoSessions("mongodb://127.0.0.1", db="a", collection="b", breaker={"min_sessions": 3})  # type: ignore[arg-type]


# -- the workers' telemetry -----------------------------------------------------


def sample(metrics: PoolMetrics, name: str, **labels: str) -> float | None:
    found: float | None = metrics.registry.get_sample_value(
        name, {"database": labels.pop("database"), "collection": "telegram", **labels}
    )
    return found


async def test_worker_metrics_count_demand_reports_and_errors(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    metrics = PoolMetrics(registry=CollectorRegistry())

    async def sleep(seconds: float) -> None:
        clock.advance(seconds=seconds)

    pool = await MongoSessions(
        db=db_name,
        collection="telegram",
        client=client,
        clock=clock,
        sleep=sleep,
        metrics=metrics,
        fenced=True,
    ).connect()
    await fill(pool, 2)
    first = await pool.get_session(next_use_delay=60)
    second = await pool.get_session(next_use_delay=60)
    assert await pool.get_session() is None
    with pytest.raises(NoSessionAvailableError):
        async with pool.lease(wait=10):  # both held for a minute: waits 10 s, gets none
            pass
    await pool.session_success(first)  # type: ignore[arg-type]
    await pool.session_lock(second, {"minutes": 1}, scope="search")  # type: ignore[arg-type]
    await pool.session_release({"_id": 1})
    await pool.session_inactive({"_id": 1})
    await pool.session_activate({"_id": 1})
    with pytest.raises(StaleLeaseError):
        await pool.session_success({**first, "lease": "not-the-lease"})  # type: ignore[dict-item]
    with pytest.raises(DuplicateSessionError):
        await pool.add({"_id": 0, "session": {}})
    await pool.close()

    def value(name: str, **labels: str) -> float | None:
        return sample(metrics, name, database=db_name, **labels)

    assert 2.0 == value("sessionpool_worker_handouts_total", result="got")
    empties = value("sessionpool_worker_handouts_total", result="empty")
    assert empties is not None
    assert empties >= 2  # get_session's None and at least the lease's first attempt
    assert empties + 2 == value("sessionpool_worker_handout_seconds_count")
    reports = {
        kind: value("sessionpool_worker_reports_total", kind=kind)
        for kind in ("success", "locked", "released", "deactivated", "activated")
    }
    assert dict.fromkeys(reports, 1.0) == reports
    assert 1.0 == value("sessionpool_worker_stale_leases_total")
    assert 1.0 == value("sessionpool_worker_errors_total", error="DuplicateSessionError")
    assert 1.0 == value("sessionpool_worker_lease_wait_seconds_count")
    assert 10.0 <= value("sessionpool_worker_lease_wait_seconds_sum")  # type: ignore[operator]


def test_worker_metrics_never_touch_the_global_registry() -> None:
    metrics = PoolMetrics()
    metrics.handed_out("pools", "telegram", got=True, seconds=0.01)

    assert metrics.registry is not REGISTRY
    assert (
        REGISTRY.get_sample_value(
            "sessionpool_worker_handouts_total",
            {"database": "pools", "collection": "telegram", "result": "got"},
        )
        is None
    )
    assert 1.0 == metrics.registry.get_sample_value(
        "sessionpool_worker_handouts_total",
        {"database": "pools", "collection": "telegram", "result": "got"},
    )


def counters(metrics: PoolMetrics, database: str, collection: str) -> dict[tuple[str, str], float]:
    """Every ``*_total`` sample of one pool, by metric name and its extra label's value."""
    found: dict[tuple[str, str], float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            pool = (s.labels.get("database"), s.labels.get("collection"))
            if s.name.endswith("_total") and pool == (database, collection):
                extra = [v for k, v in s.labels.items() if k not in ("database", "collection")]
                found[(s.name, "".join(extra))] = s.value
    return found


async def test_worker_counters_start_at_zero_when_the_pool_is_built(client: Any) -> None:
    """A counter born at 1 shows no increase: every series exists at 0 before its first event."""
    metrics = PoolMetrics(registry=CollectorRegistry())
    pool = MongoSessions(db="pools", collection="telegram", client=client, metrics=metrics)

    zero = counters(metrics, "pools", "telegram")
    assert {
        ("sessionpool_worker_handouts_total", "got"),
        ("sessionpool_worker_handouts_total", "empty"),
        ("sessionpool_worker_stale_leases_total", ""),
        ("sessionpool_worker_reports_total", "success"),
        ("sessionpool_worker_reports_total", "blocked"),
        ("sessionpool_worker_errors_total", "ServerUnavailableError"),
        ("sessionpool_worker_errors_total", "OperationTimeoutError"),
        ("sessionpool_worker_errors_total", "DuplicateSessionError"),
    } <= set(zero)
    assert {0.0} == set(zero.values())

    await pool.connect()
    other = pool.with_collection("vk")
    assert 0.0 == sample_of(metrics, "sessionpool_worker_handouts_total", "vk", result="empty")
    assert await other.get_session() is None
    assert 1.0 == sample_of(metrics, "sessionpool_worker_handouts_total", "vk", result="empty")
    assert {0.0} == set(counters(metrics, "pools", "telegram").values())  # the first: untouched


def sample_of(metrics: PoolMetrics, name: str, collection: str, **labels: str) -> float | None:
    found: float | None = metrics.registry.get_sample_value(
        name, {"database": "pools", "collection": collection, **labels}
    )
    return found


async def test_a_failed_connect_counts_in_the_worker_error_metric() -> None:
    metrics = PoolMetrics(registry=CollectorRegistry())
    pool = MongoSessions(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100&connectTimeoutMS=100",
        db="pools",
        collection="telegram",
        metrics=metrics,
        timeout=0.5,
        max_allowed_reconnect=0,
    )
    with pytest.raises(SessionPoolError) as raised:
        await pool.connect()

    error = type(raised.value).__name__
    assert 1.0 == sample_of(metrics, "sessionpool_worker_errors_total", "telegram", error=error)
