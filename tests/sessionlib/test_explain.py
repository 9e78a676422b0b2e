"""On a real mongod: hand-outs step over nothing, statistics read each document once.

SecantusDB ignores indexes (its plans read every document), so these run
only with ``MONGO_URL`` naming a real MongoDB; the benchmarks compute the
hand-out's path from the documents on any server (``benchmarks/handout.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from benchmarks.pool import explain
from sessionlib import MongoSessions

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(
        not os.environ.get("MONGO_URL"),
        reason="needs a real mongod (MONGO_URL): SecantusDB ignores indexes",
    ),
]


class WireBackend:
    """What ``benchmarks.pool.explain`` needs to know of the backend."""

    wire = True


@pytest.fixture
async def big_pool(wire_url: str, db_name: str) -> AsyncIterator[MongoSessions]:
    async with MongoSessions(wire_url, db=db_name, collection="big") as pool:
        await pool.ensure_indexes()
        await pool.sessions.insert_many(
            [pool.new_document({"_id": n, "session": {"blob": "x" * 1000}}) for n in range(3000)]
        )
        for _ in range(3000):  # every session used once
            await pool.get_session(next_use_delay=0)
        for number in range(1000):
            await pool.session_block({"_id": number})
        for number in range(1000, 2000):
            await pool.session_inactive({"_id": number})
        yield pool
        await pool.client.drop_database(db_name)


async def test_statistics_read_each_document_once(big_pool: MongoSessions) -> None:
    """One collection scan: the raw fields (``scopes`` among them) are in no index."""
    found: dict[str, Any] = await explain(WireBackend(), big_pool)  # type: ignore[arg-type]

    keys, documents = found["statistics"]
    assert (0, 3000) == (keys, documents)


async def test_a_hand_out_steps_over_no_unavailable_session(big_pool: MongoSessions) -> None:
    found: dict[str, Any] = await explain(WireBackend(), big_pool)  # type: ignore[arg-type]

    keys, documents = found["hand-out"]
    assert keys <= 2  # the first available key, and the one that ends the scan
    assert 1 == documents
