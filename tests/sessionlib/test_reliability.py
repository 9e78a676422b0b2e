"""Faults, hangs and load: nothing acknowledged is lost, nothing is handed out twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
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
from sessionlib.backoff import RECONNECT
from tests.support.documents import seed_pool
from tests.support.faults import BlackholeProxy
from tests.support.workers import assert_never_handed_out_twice, run_workers

pytestmark = pytest.mark.wire


def test_server_killed_and_restarted_under_load(tmp_path: Path, db_name: str) -> None:
    # Acknowledged means journaled here: with w:1 and no journal, a crash may
    # lose the last writes on any MongoDB server (see docs/guarantees.md).
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
            "recover_within": 30.0,
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
        bound = (reconnects + 1) * timeout + reconnects * RECONNECT.cap + 1.0
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
