"""Faults, hangs and load: nothing acknowledged is lost, nothing is handed out twice."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import SecantusServer
from sessionlib import (
    MongoSessions,
    OperationTimeoutError,
    ServerUnavailableError,
    SessionPoolError,
)
from sessionlib.driver import BACKOFF_CAP
from tests.documents import seed_pool
from tests.exporter_process import ExporterProcess, up_is
from tests.faults import BlackholeProxy
from tests.workers import churn

pytestmark = pytest.mark.wire


def run_workers(
    url: str, db: str, collection: str, processes: int, options: dict[str, Any], during: Any = None
) -> list[dict[str, Any]]:
    """Run *processes* churn workers; call *during()* while they run; return their results."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        barrier = manager.Barrier(processes + 1)
        futures = [
            pool.submit(churn, url, db, collection, {**options, "seed": n}, barrier)
            for n in range(processes)
        ]
        barrier.wait(timeout=120)
        if during is not None:
            during()
        return [future.result(timeout=600) for future in futures]


def assert_never_handed_out_twice(results: list[dict[str, Any]]) -> int:
    """No session handed to two workers while held; returns the number of hand-outs."""
    handouts = [tuple(h) for r in results for h in r["handouts"]]
    fences = Counter((session_id, fence) for session_id, fence, _, _ in handouts)
    twice = [key for key, count in fences.items() if count > 1]
    details = [h for h in handouts if (h[0], h[1]) in twice]
    assert [] == twice, f"same hand-out twice: {details}"
    by_session: dict[Any, list[tuple[datetime, datetime]]] = {}
    for session_id, _, last_use, next_use in handouts:
        by_session.setdefault(session_id, []).append(
            (datetime.fromisoformat(last_use), datetime.fromisoformat(next_use))
        )
    for session_id, spans in by_session.items():
        spans.sort()
        for (_, held_until), (taken_at, _) in itertools.pairwise(spans):
            # Both are stored to the millisecond: the hand-out happened after the
            # hold ended (next_use < now), so its truncated time is not earlier.
            assert taken_at >= held_until, f"session {session_id} handed out while held"
    return len(handouts)


def test_server_killed_and_restarted_under_load(tmp_path: Path, db_name: str) -> None:
    # Acknowledged means journaled here: with w:1 and no journal, a crash may
    # lose the last writes on any MongoDB server (see the README's Guarantees).
    server = SecantusServer(tmp_path / "db", durable=True).start()
    try:
        seed_pool(server.url, db_name, "pool", 50)
        timeout, reconnects = 2.0, 3
        options = {
            "duration": 8.0,
            "hold": 0.3,
            "op_timeout": timeout,
            "max_reconnect": reconnects,
            "journaled": True,
        }

        def kill_and_restart() -> None:
            time.sleep(2.5)
            server.stop(kill=True)  # SIGKILL, mid-write
            time.sleep(1.0)
            server.start()  # same port, same data

        results = run_workers(server.url, db_name, "pool", 4, options, during=kill_and_restart)

        raw = [error for r in results for error in r["raw_errors"]]
        assert [] == raw, "a driver error escaped the library"
        errors = Counter()
        for r in results:
            errors.update(r["errors"])
        assert errors, "the outage went unnoticed: the kill did not happen mid-run"
        assert set(errors) <= {"ServerUnavailableError", "OperationTimeoutError"}, errors
        bound = (reconnects + 1) * timeout + reconnects * BACKOFF_CAP + 1.0
        slowest = max(r["slowest"] for r in results)
        assert slowest < bound, f"an operation took {slowest:.1f} s (bound {bound:.1f} s)"
        assert all(r["ok_after_first_error"] > 0 for r in results), "a worker did not recover"
        handouts = assert_never_handed_out_twice(results)

        client: MongoClient[dict[str, Any]] = MongoClient(server.url)
        stored = {str(d["_id"]): d["count_success"] for d in client[db_name]["pool"].find()}
        client.close()
        acked: Counter[str] = Counter()
        for r in results:
            acked.update(r["acked"])
        lost = {key: (n, stored.get(key, 0)) for key, n in acked.items() if stored.get(key, 0) < n}
        assert {} == lost, "acknowledged successes missing after the restart"
        unsure = sum(r["success_errors"] for r in results)
        assert sum(stored.values()) - sum(acked.values()) <= unsure
        print(
            f"\nfaults: {handouts} hand-outs, {sum(acked.values())} acknowledged successes, "
            f"errors {dict(errors)}, slowest operation {slowest:.2f} s"
        )
    finally:
        server.stop()


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[SecantusServer, BlackholeProxy]]:
    with SecantusServer(tmp_path / "db") as server, BlackholeProxy(server.port) as proxy:
        yield server, proxy


async def test_a_hanging_server_times_every_operation_out_within_its_bound(
    hanging: tuple[SecantusServer, BlackholeProxy], db_name: str
) -> None:
    _, proxy = hanging
    pool = await MongoSessions(
        proxy.url, db=db_name, collection="p", timeout=1, max_allowed_reconnect=0
    ).connect()
    await pool.add({"_id": 1, "session": {}})
    proxy.blackhole()
    calls = {
        "get_session": pool.get_session,
        "session_success": lambda: pool.session_success({"_id": 1}),
        "session_lock": lambda: pool.session_lock({"_id": 1}),
        "statistics": pool.statistics,
        "count_active": pool.count_active,
        "add": lambda: pool.add({"_id": 2, "session": {}}),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises((OperationTimeoutError, ServerUnavailableError)) as caught:
            await call()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"{name} took {elapsed:.2f} s"
        assert isinstance(caught.value, SessionPoolError)
    proxy.restore()
    await asyncio.sleep(0.6)  # the driver's monitor finds the server again
    deadline = time.monotonic() + 20
    while True:
        try:
            assert 1 == await pool.count_active()
            break
        except SessionPoolError:
            assert time.monotonic() < deadline, "did not recover after the server answered again"
            await asyncio.sleep(0.2)
    await pool.close()


def test_exporter_serves_up_zero_while_the_server_hangs(
    hanging: tuple[SecantusServer, BlackholeProxy], db_name: str, tmp_path: Path
) -> None:
    server, proxy = hanging
    seed_pool(server.url, db_name, "pool", 3)
    args = [
        "--mongo-url",
        proxy.url,
        "--database",
        db_name,
        "--interval",
        "0.5",
        "--pool-timeout",
        "1",
    ]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(up_is(1), 30, "up")
        proxy.blackhole()
        exporter.wait_for_sample(up_is(0), 30, "up 0")
        for _ in range(10):
            started = time.monotonic()
            assert 0 == exporter.scrape()[("sessionpool_up", frozenset())]
            assert time.monotonic() - started < 0.5
        proxy.restore()
        exporter.wait_for_sample(up_is(1), 60, "recovery")
        assert 0 == exporter.stop()


SECRET_URL_PASSWORD = "mongo-pw-never-logged-7f3a"
SECRET_AUTH_PASSWORD = "basic-pw-never-logged-91c2"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_log_line_holds_a_password(wire_url: str, tmp_path: Path, log_format: str) -> None:
    host = wire_url.split("://", 1)[1].split("/", 1)[0]
    url = f"mongodb://admin:{SECRET_URL_PASSWORD}@{host}/?directConnection=true&authSource=admin"
    env = {"SESSIONPOOL_BASIC_AUTH_PASSWORD": SECRET_AUTH_PASSWORD}
    args = [
        "--mongo-url",
        url,
        "--interval",
        "0.5",
        "--log-level",
        "debug",
        "--log-format",
        log_format,
        "--basic-auth-user",
        "prom",
    ]
    import os

    with ExporterProcess(args, tmp_path / "exporter.log", env={**os.environ, **env}) as exporter:
        # Wrong credentials, a few refreshes (which fail to authenticate or succeed).
        assert 401 == exporter.get("/metrics", headers={"Authorization": "Basic bm86bm8="})[0]
        time.sleep(2)
        assert 0 == exporter.stop()
    log = exporter.log()
    assert log.strip(), "the exporter logged nothing"
    assert SECRET_URL_PASSWORD not in log
    assert SECRET_AUTH_PASSWORD not in log
    assert "admin:***@" in log


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_eight_processes_and_two_hundred_pools(
    wire_url: str, db_name: str, tmp_path: Path
) -> None:
    seed_pool(wire_url, db_name, "busy", 40)
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url)
    for number in range(199):
        client[db_name][f"pool{number:03d}"].insert_one({"_id": 1, "session": {}})
    client.close()
    interval = 2.0
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        str(interval),
        "--pool-timeout",
        "10",
    ]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(
            lambda s: (
                s.get(("sessionpool_pools", frozenset())) == 200
                and s[("sessionpool_up", frozenset())] == 1
            ),
            60,
            "200 pools",
        )
        options = {
            "duration": 600.0,
            "hold": 0.02,
            "op_timeout": 30.0,
            "max_reconnect": 3,
            "target": 1000,
            "reports": False,
        }
        started = time.monotonic()
        durations: list[float] = []

        def watch() -> None:
            pass

        results = run_workers(wire_url, db_name, "busy", 8, options, during=watch)
        elapsed = time.monotonic() - started
        samples = exporter.scrape()
        durations.append(samples[("sessionpool_refresh_duration_seconds", frozenset())])
        errors = sum(samples[k] for k in samples if k[0] == "sessionpool_refresh_errors_total")
        assert 0 == exporter.stop()

    assert [] == [e for r in results for e in r["raw_errors"]]
    assert {} == {k: v for r in results for k, v in r["errors"].items()}
    handouts = assert_never_handed_out_twice(results)
    assert 0 == errors
    print(
        f"\nload: {handouts} hand-outs by 8 processes in {elapsed:.1f} s "
        f"({handouts / elapsed:.0f}/s); exporter refresh of 200 pools took "
        f"{durations[-1]:.2f} s (interval {interval:g} s)"
    )
    assert 8 * 1000 == handouts
