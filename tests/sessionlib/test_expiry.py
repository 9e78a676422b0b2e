"""Expired locks across pools: counts and writes agree; two releasers never double-count."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sessionlib import PoolKey, SessionStore
from sessionlib.expiry import KINDS, SCOPED, fit


@pytest.mark.parametrize(
    ("counts", "total", "expected"),
    [
        ({"locked": 3, "in_use": 1}, 4, {"locked": 3, "in_use": 1}),  # as counted
        ({"locked": 3, "in_use": 1}, 6, {"locked": 3, "in_use": 1}),  # more: never invented
        ({"locked": 3, "in_use": 1}, 2, {"locked": 1, "in_use": 1}),  # the largest gives first
        ({"locked": 2, "in_use": 2}, 0, {"locked": 0, "in_use": 0}),
        ({"locked": 2}, -1, {"locked": 0}),
    ],
)
def test_counts_are_cut_to_what_the_write_changed(
    counts: dict[str, int], total: int, expected: dict[str, int]
) -> None:
    assert expected == fit(counts, total)


async def test_two_releasers_at_once_count_each_lock_once(client: Any, db_name: str) -> None:
    """Both count the same work; each write's total keeps their sums to the locks released.

    The split between kinds is each count's, cut to its write's total, so
    under a race only the pool's total is exact; alone, every kind is.
    """
    past = datetime.now(UTC) - timedelta(minutes=1)
    pools = [PoolKey(db_name, f"p{number}") for number in range(3)]
    for key in pools:
        await client[db_name][key.collection].insert_many(
            [
                {"_id": n, "session": {}, "next_use": past, "lock_kind": KINDS[n % len(KINDS)]}
                for n in range(8)
            ]
            + [{"_id": 99, "session": {}, "scopes": {"search": past}}]
        )
    first, second = SessionStore(client=client), SessionStore(client=client)
    async with first, second:
        outcomes = await asyncio.gather(first.release_expired(pools), second.release_expired(pools))
        alone = await first.release_expired(pools)

    for key in pools:
        released = [outcome[key] for outcome in outcomes if key in outcome]
        kinds = (*KINDS, SCOPED)
        assert 9 == sum(by_kind[kind] for by_kind in released for kind in kinds)  # type: ignore[index]
        left = await client[db_name][key.collection].count_documents({"lock_kind": {"$exists": 1}})
        assert 0 == left
    assert {} == alone


async def test_a_pool_alone_is_counted_per_kind_exactly(client: Any, db_name: str) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    documents = [
        {"_id": n, "session": {}, "next_use": past, "lock_kind": KINDS[n % len(KINDS)]}
        for n in range(7)
    ]
    await client[db_name]["alone"].insert_many(documents)
    async with SessionStore(client=client) as store:
        released = await store.release_expired([PoolKey(db_name, "alone")])

    expected = {"in_use": 2, "locked": 2, "blocked": 2, "budget": 1, SCOPED: 0, "requeue": 0}
    assert {PoolKey(db_name, "alone"): expected} == released
