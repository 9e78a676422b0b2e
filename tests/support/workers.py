"""Code run in child processes by the multi-process tests (importable under spawn)."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sessionlib import Budget, MongoSessions


async def _drain(
    url: str, db: str, collection: str, delay: float, barrier: Any
) -> tuple[list[Any], bool]:
    taken: list[Any] = []
    async with MongoSessions(url, db=db, collection=collection, timeout=30) as pool:
        await pool.count_active()  # connected and warm: now start together
        barrier.wait()
        while True:
            session = await pool.get_session(next_use_delay=delay)
            if session is None:
                return taken, True
            taken.append(session["_id"])


def drain_pool(
    url: str, db: str, collection: str, delay: float, barrier: Any
) -> tuple[list[Any], bool]:
    """Take sessions until the pool returns None; return the ids taken and that None came.

    All workers pass *barrier* (a ``multiprocessing`` barrier) once connected,
    so they really take sessions at the same time.
    """
    return asyncio.run(_drain(url, db, collection, delay, barrier))


def ended_hold(result: dict[str, Any], after: float) -> None:
    """Record that this holder's own report ended its last hold, *after* s from now at most.

    A success with delay 0 or a short lock may end a hold before the
    ``next_use`` the hand-out wrote; another worker may then take it.
    """
    ended = (datetime.now(UTC) + timedelta(seconds=after)).isoformat()
    result["handouts"][-1] = (*result["handouts"][-1][:4], ended)


async def _churn(
    url: str,
    db: str,
    collection: str,
    *,
    duration: float,
    hold: float,
    op_timeout: float,
    max_reconnect: int,
    barrier: Any,
    seed: int,
    journaled: bool = False,
    target: int | None = None,
    reports: bool = True,
    recover_within: float = 0.0,
) -> dict[str, Any]:
    import random

    from sessionlib import SessionPoolError

    rng = random.Random(seed)
    result: dict[str, Any] = {
        "handouts": [],
        "acked": {},
        "success_errors": 0,
        "errors": {},
        "raw_errors": [],
        "slowest": 0.0,
        "ok_after_first_error": 0,
    }
    from pymongo import WriteConcern

    async with MongoSessions(
        url,
        db=db,
        collection=collection,
        timeout=op_timeout,
        max_allowed_reconnect=max_reconnect,
        write_concern=WriteConcern(j=True) if journaled else None,
    ) as pool:
        await pool.count_active()
        barrier.wait()
        deadline = time.monotonic() + duration
        seen_error = False

        def going() -> bool:
            # Past the deadline, a worker that saw an error and no success
            # since goes on a while longer: recovering is what is tested.
            now = time.monotonic()
            if now < deadline:
                return True
            waiting = seen_error and result["ok_after_first_error"] == 0
            return waiting and now < deadline + recover_within

        while going():
            if target is not None and len(result["handouts"]) >= target:
                break
            started = time.monotonic()
            step = "get"
            try:
                session = await pool.get_session(next_use_delay=hold)
                if session is not None:
                    result["handouts"].append(
                        (
                            session["_id"],
                            session["fence"],
                            session["last_use"].isoformat(),
                            session["next_use"].isoformat(),
                            None,  # when this holder's own report ended the hold
                        )
                    )
                    if not reports:
                        pass
                    elif rng.random() < 0.8:
                        step = "success"
                        try:
                            reply = await pool.session_success(
                                {"_id": session["_id"]}, next_use_delay=0
                            )
                        finally:
                            # Applied or not (a lost reply), the hold ends by now.
                            ended_hold(result, 0.0)
                        if reply.modified_count == 1:
                            key = str(session["_id"])
                            result["acked"][key] = result["acked"].get(key, 0) + 1
                    else:
                        step = "lock"
                        try:
                            await pool.session_lock({"_id": session["_id"]}, {"seconds": 0.2})
                        finally:
                            ended_hold(result, 0.2)
                    if seen_error:
                        result["ok_after_first_error"] += 1
                else:
                    await asyncio.sleep(0.005)  # all held right now
            except SessionPoolError as exc:
                seen_error = True
                name = type(exc).__name__
                result["errors"][name] = result["errors"].get(name, 0) + 1
                if step == "success":
                    result["success_errors"] += 1
                await asyncio.sleep(0.05)
            except Exception as exc:
                result["raw_errors"].append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            result["slowest"] = max(result["slowest"], time.monotonic() - started)
    return result


def churn(
    url: str, db: str, collection: str, options: dict[str, Any], barrier: Any
) -> dict[str, Any]:
    """Hand out, report success (80 %) or lock (20 %) until *duration* passes.

    With ``target`` in *options*, stop after that many hand-outs instead. With
    ``recover_within``, a worker that has seen errors and no success since
    goes on for up to that many seconds more, so a slow restart under load
    does not end the run before the worker could recover.
    """
    return asyncio.run(_churn(url, db, collection, barrier=barrier, **options))


async def _spend(
    url: str, db: str, collection: str, *, uses: int, per: float, duration: float, barrier: Any
) -> dict[str, Any]:
    handouts: list[tuple[Any, int]] = []
    budget = Budget(uses=uses, per=timedelta(seconds=per))
    async with MongoSessions(
        url, db=db, collection=collection, timeout=30, fenced=True, budgets=[budget]
    ) as pool:
        await pool.count_active()  # connected and warm: now start together
        barrier.wait()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            session = await pool.get_session(next_use_delay=0)
            if session is not None:
                handouts.append((session["_id"], session["fence"]))
    return {"handouts": handouts}


def spend_budget(
    url: str, db: str, collection: str, options: dict[str, Any], barrier: Any
) -> dict[str, Any]:
    """Ask for sessions, as fast as answers come, until *duration* s pass; log each hand-out.

    The pool has one ``Budget(uses, per)``; each hand-out is logged as
    ``(_id, fence)``: the fence numbers a session's hand-outs on the server,
    so the log needs no clock.
    """
    options = {key: options[key] for key in ("uses", "per", "duration")}
    return asyncio.run(_spend(url, db, collection, barrier=barrier, **options))


def run_workers(
    url: str,
    db: str,
    collection: str,
    processes: int,
    options: dict[str, Any],
    during: Any = None,
    work: Callable[..., dict[str, Any]] = churn,
) -> list[dict[str, Any]]:
    """Run *processes* workers (churn by default); call *during()* while they run.

    Returns the workers' results.
    """
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        barrier = manager.Barrier(processes + 1)
        futures = [
            pool.submit(work, url, db, collection, {**options, "seed": n}, barrier)
            for n in range(processes)
        ]
        barrier.wait(timeout=120)
        if during is not None:
            during()
        return [future.result(timeout=600) for future in futures]


def assert_never_handed_out_twice(results: list[dict[str, Any]]) -> int:
    """No session handed to two workers while held; returns the number of hand-outs."""
    handouts = [tuple(h) for r in results for h in r["handouts"]]
    fences = Counter((session_id, fence) for session_id, fence, *_ in handouts)
    twice = [key for key, count in fences.items() if count > 1]
    details = [h for h in handouts if (h[0], h[1]) in twice]
    assert [] == twice, f"same hand-out twice: {details}"
    by_session: dict[Any, list[tuple[datetime, datetime]]] = {}
    for session_id, _, last_use, next_use, ended in handouts:
        held_until = datetime.fromisoformat(next_use)
        if ended is not None:
            # The holder's own report ended its hold early: it holds until then
            # at the latest (read on the same machine's clock as the server's,
            # so allow the millisecond BSON keeps).
            held_until = min(held_until, datetime.fromisoformat(ended) - timedelta(milliseconds=1))
        by_session.setdefault(session_id, []).append((datetime.fromisoformat(last_use), held_until))
    for session_id, spans in by_session.items():
        spans.sort()
        for (_, held_until), (taken_at, _) in itertools.pairwise(spans):
            # Both are stored to the millisecond: the hand-out happened after the
            # hold ended (next_use < now), so its truncated time is not earlier.
            assert taken_at >= held_until, f"session {session_id} handed out while held"
    return len(handouts)
