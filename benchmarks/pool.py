"""Hand-out and statistics: round trips, library overhead, the seed's design, scaling."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ReturnDocument

from sessionlib import MongoSessions, handout
from sessionlib.now import Now
from sessionlib.stats import grouped_pipeline

from .backends import Backend
from .report import Figure, Report
from .seed import SeedPool

CONCURRENCY = 4
OVERHEAD_POOL = 50


async def populate(collection: Any, size: int, locked_share: float = 0.0) -> None:
    """*size* sessions; *locked_share* of them blocked long ago (the oldest last_use)."""
    now = datetime.now(UTC)
    locked = int(size * locked_share)
    documents = []
    for number in range(size):
        document = {
            "_id": number,
            "session": {"token": f"t{number}"},
            "active": True,
            "count_use": 0,
            "count_success": 0,
            "created": now,
            "last_use": now - timedelta(days=30) + timedelta(seconds=number),
            "next_use": None,
        }
        if number < locked:
            # Blocked for long and least recently used: the worst case for a hand-out scan.
            document.update(next_use=now + timedelta(days=7), lock_kind="blocked")
        documents.append(document)
    for start in range(0, size, 1000):
        await collection.insert_many(documents[start : start + 1000])


async def pool_on(backend: Backend, collection: Any, **kwargs: Any) -> MongoSessions:
    # A generous timeout: a slow backend under concurrent load must not end the run.
    return await MongoSessions(
        db=collection.database.name,
        collection=collection.name,
        client=backend.client,
        timeout=120,
        **kwargs,
    ).connect()


async def rate(call: Callable[[], Awaitable[Any]], operations: int) -> float:
    """Operations per second of *call*, run by CONCURRENCY coroutines."""
    per_worker = max(1, operations // CONCURRENCY)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return per_worker * CONCURRENCY / (time.perf_counter() - started)


async def median_seconds(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def round_trips(backend: Backend, report: Report) -> None:
    """Commands sent per operation, counted by the driver's command listener."""
    section = "round trips"
    if backend.counter is None:
        report.add(
            backend.name,
            Figure(section, "commands per operation", None, note="needs the wire protocol"),
        )
        return
    collection = backend.database()["rt"]
    await populate(collection, 10)
    pool = await pool_on(backend, collection)
    session = {"_id": 5}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_session": pool.get_session,
        "session_success": lambda: pool.session_success(session),
        "session_lock": lambda: pool.session_lock(session),
        "session_block": lambda: pool.session_block(session),
        "session_inactive": lambda: pool.session_inactive(session),
        "session_release": lambda: pool.session_release(session),
        "count_active": pool.count_active,
        "aggregate_statistics": pool.aggregate_statistics,
    }
    for name, call in calls.items():
        backend.counter.reset()
        await call()
        goal = "1 (the seed: 4)" if name == "aggregate_statistics" else "1"
        report.add(
            backend.name, Figure(section, name, len(backend.counter.names), "commands", goal)
        )
    seed = SeedPool(collection)
    backend.counter.reset()
    await seed.aggregate_statistics()
    report.add(
        backend.name,
        Figure(
            section, "seed design: aggregate_statistics", len(backend.counter.names), "commands"
        ),
    )


async def overhead(backend: Backend, report: Report, operations: int, rounds: int) -> None:
    """get_session against a raw find_one_and_update with the same filter, sort and update.

    A small pool keeps the server's share of each call small, so the library's
    own cost shows as much as it can.
    """
    collection = backend.database()["overhead"]
    await populate(collection, OVERHEAD_POOL)
    pool = await pool_on(backend, collection, next_use_delay=0)

    async def raw() -> Any:
        # The very command get_session sends: its filter, sort and update (sessionlib.handout).
        core = pool.core
        now = Now.read(pool.clock)
        return await collection.find_one_and_update(
            handout.query(core, now),
            handout.update(core, now, hold=timedelta(0)),
            sort=pool.default_sort,
            return_document=ReturnDocument.AFTER,
        )

    ratios, lib_rates, raw_rates = [], [], []
    for _ in range(rounds):  # interleaved, so drift hits both sides alike
        lib_rate = await rate(pool.get_session, operations)
        raw_rate = await rate(raw, operations)
        lib_rates.append(lib_rate)
        raw_rates.append(raw_rate)
        ratios.append(lib_rate / raw_rate)
    section = "overhead"
    report.add(
        backend.name,
        Figure(
            section,
            f"get_session rate / raw rate ({OVERHEAD_POOL} sessions)",
            statistics.median(ratios),
            "ratio",
            ">= 0.9",
        ),
    )
    report.add(
        backend.name,
        Figure(
            section,
            "get_session rate",
            statistics.median(lib_rates),
            "ops/s",
            f"{CONCURRENCY} coroutines",
        ),
    )
    report.add(
        backend.name,
        Figure(section, "raw find_one_and_update rate", statistics.median(raw_rates), "ops/s"),
    )


async def against_seed(backend: Backend, report: Report, size: int, repeat: int) -> None:
    """Statistics and hand-out time, ours against the seed's design, on the same data."""
    collection = backend.database()["seed"]
    await populate(collection, size, locked_share=0.5)
    ours = await pool_on(backend, collection, next_use_delay=0)
    await ours.ensure_indexes()
    seed = SeedPool(collection, next_use_delay=0)
    section = "vs seed"
    stats_ours = await median_seconds(ours.aggregate_statistics, repeat)
    stats_seed = await median_seconds(seed.aggregate_statistics, repeat)
    report.add(
        backend.name,
        Figure(
            section,
            f"statistics time, ours / seed ({size} sessions)",
            stats_ours / stats_seed,
            "ratio",
            "< 1",
        ),
    )
    report.add(backend.name, Figure(section, "statistics time, ours", stats_ours * 1000, "ms"))
    report.add(backend.name, Figure(section, "statistics time, seed", stats_seed * 1000, "ms"))
    hand_ours = await median_seconds(ours.get_session, repeat * 4)
    hand_seed = await median_seconds(seed.get_session, repeat * 4)
    report.add(
        backend.name,
        Figure(
            section,
            f"hand-out time, ours / seed ({size} sessions)",
            hand_ours / hand_seed,
            "ratio",
            "<= 1.3",
        ),
    )


async def drain(call: Callable[[], Awaitable[Any]], coroutines: int) -> list[float]:
    """Latencies of *coroutines* coroutines handing out until the pool is empty."""
    latencies: list[float] = []

    async def worker() -> None:
        while True:
            started = time.perf_counter()
            got = await call()
            latencies.append(time.perf_counter() - started)
            if got is None:
                return

    await asyncio.gather(*(worker() for _ in range(coroutines)))
    return latencies


async def contention(backend: Backend, report: Report, size: int, rounds: int) -> None:
    """Hand-out latency while CONCURRENCY x 4 coroutines drain a pool: ours and the seed's.

    Rounds alternate ours and the seed's design on fresh copies of the same
    pool; every hand-out holds its session for a minute, so each is a real take.
    """
    section = "vs seed"
    ours: list[float] = []
    seeds: list[float] = []
    coroutines = CONCURRENCY * 4
    for number in range(rounds):
        collection = backend.database()[f"drain{number}"]
        await populate(collection, size)
        pool = await pool_on(backend, collection, next_use_delay=60)
        ours += await drain(pool.get_session, coroutines)
        await pool.close()
        collection = backend.database()[f"drain_seed{number}"]
        await populate(collection, size)
        seeds += await drain(SeedPool(collection, next_use_delay=60).get_session, coroutines)
    label = f"{coroutines} coroutines draining {size} sessions"
    ratio = statistics.median(ours) / statistics.median(seeds)
    report.add(
        backend.name,
        Figure(section, f"hand-out latency under contention, ours / seed ({label})", ratio,
               "ratio", "<= 1.3"),
    )  # fmt: skip
    for name, found in (("ours", ours), ("seed", seeds)):
        found.sort()
        p99 = found[min(len(found) - 1, int(len(found) * 0.99))]
        report.add(
            backend.name,
            Figure(section, f"hand-out latency under contention, {name}, median / p99",
                   f"{statistics.median(found) * 1000:.1f} / {p99 * 1000:.1f}", "ms"),
        )  # fmt: skip


def _examined(plan: dict[str, Any]) -> tuple[Any, Any]:
    """Keys and documents examined, wherever this server's explain puts them."""
    stats = plan.get("executionStats")
    if stats is None:
        for stage in plan.get("stages", []):
            stats = stage.get("$cursor", {}).get("executionStats")
            if stats is not None:
                break
    stats = stats or {}
    return stats.get("totalKeysExamined"), stats.get("totalDocsExamined")


async def explain(backend: Backend, pool: MongoSessions) -> dict[str, tuple[Any, Any]]:
    """Keys and documents the server examined for a hand-out and for statistics, if it says."""
    if not backend.wire:
        return {}  # mongomock has no query planner
    core = pool.core
    now = await core.now()
    commands = {
        "hand-out": {
            "findAndModify": pool.collection_name,
            "query": handout.query(core, now),
            "sort": dict(pool.default_sort),
            "update": {"$set": {"last_use": now.written}},
        },
        "statistics": {
            "aggregate": pool.collection_name,
            "pipeline": grouped_pipeline(pool, now.at),
            "cursor": {},
        },
    }
    found = {}
    for name, command in commands.items():
        try:
            plan = await pool.db.command("explain", command, verbosity="executionStats")
        except pymongo.errors.PyMongoError:  # no explain of that command here: n/a
            continue
        found[name] = _examined(plan)
    return found


async def scaling(
    backend: Backend, report: Report, sizes: list[int], shares: list[float], repeat: int
) -> None:
    """Hand-out and statistics cost as the pool grows and as more of it is locked."""
    section = "scaling"
    for size in sizes:
        for share in shares:
            collection = backend.database()[f"s{size}"]
            await populate(collection, size, share)
            pool = await pool_on(backend, collection, next_use_delay=3600)
            await pool.ensure_indexes()
            examined = await explain(backend, pool)
            # Hand-outs with a long hold: each takes a new session, as in a drain.
            hand = await median_seconds(pool.get_session, repeat)
            stats = await median_seconds(pool.statistics, max(3, repeat // 4))
            label = f"{size} sessions, {share:.0%} blocked"
            report.add(backend.name, Figure(section, f"hand-out, {label}", hand * 1e6, "us"))
            report.add(backend.name, Figure(section, f"statistics, {label}", stats * 1e3, "ms"))
            for name, (keys, docs) in examined.items():
                if keys is not None or docs is not None:
                    report.add(
                        backend.name,
                        Figure(section, f"{name} keys/docs examined, {label}", f"{keys}/{docs}"),
                    )
