"""Fenced leases, the lease context manager, waiting, escalation, statistics by kind."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from sessionlib import (
    Block,
    Deactivate,
    EscalationPolicy,
    InvalidSessionError,
    Lock,
    LockKind,
    MongoSessions,
    NoSessionAvailableError,
    Release,
    StaleLeaseError,
)
from tests.support.backends import documents
from tests.support.clock import START, MovableClock, utc


class RateLimitedError(Exception):
    pass


class BannedError(Exception):
    pass


class BadLoginError(Exception):
    pass


ON_ERROR = {
    RateLimitedError: Lock({"minutes": 10}),
    BannedError: Block({"days": 2}),
    BadLoginError: Deactivate(),
    ConnectionError: Release(),
}


def fake_sleep(pool: MongoSessions, clock: MovableClock) -> list[float]:
    """Make *pool* wait by moving *clock*; return the list of pauses."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.advance(seconds=seconds)

    pool.sleep = sleep
    return pauses


async def test_a_stale_holder_cannot_touch_the_next_holders_lease(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "only", "session": {}})
    a = await pool.acquire(hold=5)
    assert a is not None
    clock.advance(seconds=10)  # A's hold expired
    b = await pool.acquire(hold=60)
    assert b is not None
    assert ("only", a.fence + 1) == (b["_id"], b.fence)

    with pytest.raises(StaleLeaseError) as caught:
        await a.lock({"hours": 1})
    for late in (a.success, a.block, a.deactivate, a.release):
        with pytest.raises(StaleLeaseError):
            await late()

    assert ("only", a.token) == (caught.value.session_id, caught.value.lease)
    (doc,) = await documents(pool)
    assert (b.token, LockKind.IN_USE, True) == (doc["lease"], doc["lock_kind"], doc["active"])
    assert START + timedelta(seconds=70) == utc(doc["next_use"])
    await b.success()  # the current holder still can
    assert 1 == (await documents(pool))[0]["count_success"]


async def test_fenced_pools_check_the_dicts_get_session_returns(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "only", "session": {"token": "x"}})
    pool.fenced = True
    pool.projection = {"_id": 1, "session": 1}
    a = await pool.get_session(next_use_delay=5)
    assert a is not None
    assert {"_id", "session", "lease", "fence", "next_use"} == set(a)
    clock.advance(seconds=10)
    b = await pool.get_session()
    assert b is not None

    with pytest.raises(StaleLeaseError):
        await pool.session_lock(a)
    # Seed-style calls with a plain _id are never lease-checked.
    await pool.session_lock({"_id": "only"}, {"minutes": 1})
    # Asking for a check without a lease is an error, before anything is written.
    with pytest.raises(InvalidSessionError):
        await pool.session_release({"_id": "only"}, lease_checked=True)
    assert LockKind.LOCKED == (await documents(pool))[0]["lock_kind"]


async def test_unfenced_pools_keep_the_seed_behaviour(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": "only", "session": {}})
    a = await pool.get_session(next_use_delay=5)
    clock.advance(seconds=10)
    await pool.get_session()

    result = await pool.session_success(a)  # type: ignore[arg-type]

    assert 1 == result.modified_count  # a late report still counts, as before


async def test_lease_reports_success_on_normal_exit(pool: MongoSessions) -> None:
    await pool.add({"_id": 1, "session": {"token": "t"}})

    async with pool.lease(hold=30, success_delay=7) as lease:
        assert {"token": "t"} == lease["session"]

    (doc,) = await documents(pool)
    assert (1, 1, "success") == (doc["count_use"], doc["count_success"], lease.reported)
    assert START + timedelta(seconds=7) == utc(doc["next_use"])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimitedError(), (True, LockKind.LOCKED, START + timedelta(minutes=10))),
        (BannedError(), (True, LockKind.BLOCKED, START + timedelta(days=2))),
        (BadLoginError(), (False, LockKind.IN_USE, START + timedelta(seconds=30))),
        (ConnectionResetError(), (True, None, None)),  # a ConnectionError: released
        (KeyError("unmapped"), (True, LockKind.IN_USE, START + timedelta(seconds=30))),
    ],
)
async def test_lease_maps_exceptions_to_reports_and_reraises(
    pool: MongoSessions, error: Exception, expected: tuple[Any, ...]
) -> None:
    await pool.add({"_id": 1, "session": {}})

    with pytest.raises(type(error)) as caught:
        async with pool.lease(hold=30, on_error=ON_ERROR):
            raise error

    assert caught.value is error
    (doc,) = await documents(pool)
    assert expected == (doc["active"], doc.get("lock_kind"), utc(doc["next_use"]))
    assert 0 == doc["count_success"]


async def test_a_report_inside_the_body_replaces_the_success(pool: MongoSessions) -> None:
    await pool.add({"_id": 1, "session": {}})

    async with pool.lease() as lease:
        await lease.block({"hours": 3})

    (doc,) = await documents(pool)
    assert (0, LockKind.BLOCKED) == (doc["count_success"], doc["lock_kind"])


async def test_waiting_gets_a_session_when_one_frees_up(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": 1, "session": {}})
    await pool.session_lock({"_id": 1}, {"seconds": 3})
    pauses = fake_sleep(pool, clock)

    async with pool.lease(wait=10) as lease:
        got_at = clock()

    assert 1 == lease["_id"]
    assert START + timedelta(seconds=3) < got_at <= START + timedelta(seconds=4)
    assert all(pause <= 2.0 for pause in pauses)
    assert len(pauses) >= 2  # it polled with backoff, not one long sleep


async def test_waiting_gives_up_saying_when_the_next_session_frees_up(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": 1, "session": {}})
    await pool.add({"_id": 2, "session": {}})
    await pool.session_block({"_id": 1}, {"hours": 1})
    await pool.session_lock({"_id": 2}, {"minutes": 30})
    pauses = fake_sleep(pool, clock)

    with pytest.raises(NoSessionAvailableError) as caught:
        async with pool.lease(wait=5):
            raise AssertionError("no session should be handed out")

    assert START + timedelta(minutes=30) == caught.value.next_available_at
    assert "frees up at" in str(caught.value)
    assert 5.0 == pytest.approx(sum(pauses))
    assert START + timedelta(seconds=5) == clock()


async def test_no_wait_and_nothing_locked_says_so(pool: MongoSessions) -> None:
    await pool.add({"_id": 1, "session": {}, "active": False})

    with pytest.raises(NoSessionAvailableError, match="empty or all its sessions are inactive"):
        async with pool.lease():
            pass
    assert await pool.next_available_at() is None


NO_JITTER = EscalationPolicy(
    base=timedelta(minutes=1), factor=2, cap=timedelta(minutes=5), jitter=0, block_after=5
)


async def test_escalating_locks_grow_cap_and_turn_into_a_block(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": 1, "session": {}})
    pool.escalation = NO_JITTER
    periods, kinds = [], []

    for _ in range(6):
        await pool.session_lock({"_id": 1})
        (doc,) = await documents(pool)
        periods.append(utc(doc["next_use"]) - clock())  # type: ignore[operator]
        kinds.append(doc["lock_kind"])
        clock.advance(minutes=1)

    assert [timedelta(minutes=m) for m in (1, 2, 4, 5)] == periods[:4]  # capped at 5
    assert [pool.block_time] * 2 == periods[4:]
    assert ["locked"] * 4 + ["blocked"] * 2 == kinds
    assert 6 == doc["strikes"]


async def test_successes_decay_strikes_and_the_window_resets_them(
    pool: MongoSessions, clock: MovableClock
) -> None:
    await pool.add({"_id": 1, "session": {}})
    pool.escalation = NO_JITTER
    for _ in range(3):
        await pool.session_lock({"_id": 1})

    await pool.session_success({"_id": 1}, count_success=2)
    (doc,) = await documents(pool)
    assert (2, 2, LockKind.IN_USE) == (doc["strikes"], doc["count_success"], doc["lock_kind"])
    await pool.session_lock({"_id": 1})  # third strike: 4 minutes
    (doc,) = await documents(pool)
    assert START + timedelta(minutes=4) == utc(doc["next_use"])

    clock.advance(hours=25)  # the window (24 h) has passed: strikes start over
    await pool.session_lock({"_id": 1})
    (doc,) = await documents(pool)
    assert (1, clock() + timedelta(minutes=1)) == (doc["strikes"], utc(doc["next_use"]))
    await pool.session_lock({"_id": 1}, {"seconds": 5})  # an explicit period is no strike
    assert 1 == (await documents(pool))[0]["strikes"]


def test_jitter_stays_within_bounds() -> None:
    policy = EscalationPolicy(base=timedelta(minutes=1), jitter=0.1)
    rng = random.Random(7)
    seconds = [policy.period(2, rng).total_seconds() for _ in range(200)]
    assert 216.0 <= min(seconds) < max(seconds) <= 264.0  # 240 s +- 10 %


async def test_statistics_by_kind_equal_counts_from_the_documents(
    pool: MongoSessions, clock: MovableClock
) -> None:
    rng = random.Random(2026)
    for number in range(30):
        await pool.add({"_id": number, "session": {}})
    for _ in range(120):
        action = rng.choice(
            ["get", "get", "success", "lock", "block", "inactive", "activate", "release", "tick"]
        )
        target = {"_id": rng.randrange(30)}
        if action == "get":
            await pool.get_session(next_use_delay=rng.choice([1, 30, 300]))
        elif action == "success":
            await pool.session_success(target, next_use_delay=rng.choice([0, 5, 60]))
        elif action == "lock":
            await pool.session_lock(target, {"seconds": rng.randrange(1, 600)})
        elif action == "block":
            await pool.session_block(target, {"hours": rng.randrange(1, 48)})
        elif action == "inactive":
            await pool.session_inactive(target)
        elif action == "activate":
            await pool.session_activate(target)
        elif action == "release":
            await pool.session_release(target)
        else:
            clock.advance(seconds=rng.randrange(1, 120))

    stats = await pool.statistics()

    docs = await documents(pool)
    now = clock()
    states: Counter[str] = Counter()
    for doc in docs:
        next_use = utc(doc.get("next_use"))
        if doc.get("active") is False:
            states["inactive"] += 1
        elif next_use is None or next_use < now:
            states["available"] += 1
        else:
            states[doc.get("lock_kind") or "locked"] += 1
    locked_until = [
        utc(d["next_use"])
        for d in docs
        if d.get("active") is not False
        and d.get("next_use") is not None
        and utc(d["next_use"]) >= now
    ]  # type: ignore[operator]
    assert (
        states["available"],
        states["in_use"],
        states["locked"],
        states["blocked"],
        states["inactive"],
        len(docs),
        sum(d.get("count_use", 0) for d in docs),
        sum(d.get("count_success", 0) for d in docs),
        min(locked_until, default=None),
    ) == (
        stats.available,
        stats.in_use,
        stats.locked,
        stats.blocked,
        stats.inactive,
        stats.total,
        stats.uses,
        stats.successes,
        stats.next_unlock,
    )
    assert len(states) >= 4, f"the random walk reached too few states: {states}"
