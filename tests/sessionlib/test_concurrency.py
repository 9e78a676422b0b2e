"""Several OS processes taking sessions from one pool at once."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.support.workers import drain_pool

PROCESSES = 4
SESSIONS = 200

pytestmark = pytest.mark.wire


async def test_processes_never_get_the_same_session(wire_url: str, db_name: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url)
    try:
        await client[db_name]["pool"].insert_many(
            [
                {"_id": n, "session": {}, "active": True, "next_use": None, "last_use": None}
                for n in range(SESSIONS)
            ]
        )
        context = multiprocessing.get_context("spawn")
        with (
            context.Manager() as manager,
            ProcessPoolExecutor(PROCESSES, mp_context=context) as executor,
        ):
            barrier = manager.Barrier(PROCESSES)
            # The hold (600 s) outlasts the test, so a session can never come back.
            futures = [
                executor.submit(drain_pool, wire_url, db_name, "pool", 600, barrier)
                for _ in range(PROCESSES)
            ]
            results = [future.result(timeout=120) for future in futures]

        taken = [session_id for ids, _ in results for session_id in ids]
        assert sorted(taken) == list(range(SESSIONS))  # every session once, none twice
        assert [True] * PROCESSES == [got_none for _, got_none in results]
        per_process = [len(ids) for ids, _ in results]
        assert sum(1 for n in per_process if n) >= 2, (
            f"the processes did not overlap: {per_process}"
        )
        docs = await client[db_name]["pool"].find({}, {"count_use": 1}).to_list(None)
        assert {1} == {doc["count_use"] for doc in docs}
    finally:
        await client.drop_database(db_name)
        await client.close()
