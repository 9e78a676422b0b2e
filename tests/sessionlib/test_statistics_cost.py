"""Statistics read raw fields and one state expression: equal to the per-document checks.

The statistics group by each document's state and take the sums and
minimums of raw fields, checking each row once (see
:func:`sessionlib.stats.grouped_pipeline`); a row they cannot be sure of is
read again with every document checked. The property test holds the result
equal to the expression it replaced, which checked every field of every
document, on pools of hostile documents, over the wire and on mongomock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Decimal128, Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient
from pymongo import AsyncMongoClient

from sessionlib import Budget, MongoSessions, PoolStatistics
from sessionlib.budgets import room_expression
from sessionlib.now import Now
from sessionlib.states import (
    LOCK_KINDS,
    State,
    is_date_expression,
    number_or_zero,
    state_expression,
)
from tests.support.backends import run_with_client

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MISSING = object()
BUDGET = Budget(uses=2, per={"minutes": 1})
KINDS = [kind.value for kind in LOCK_KINDS]


def replaced_pipeline(pool: MongoSessions, instant: datetime) -> list[dict[str, Any]]:
    """The statistics pipeline this design replaced: every field checked in every document."""
    fields = pool.core.connection
    next_use = f"${fields.next_use}"
    room = room_expression(pool.core.options.budgets, scope=None, now=Now.fixed(instant))

    def date_or_null(path: str) -> dict[str, Any]:
        return {"$cond": [is_date_expression(path), path, None]}

    return [
        {
            "$group": {
                "_id": state_expression(fields, instant, budget_spent={"$not": room}),
                "n": {"$sum": 1},
                "uses": {"$sum": number_or_zero(f"${fields.count_use}")},
                "successes": {"$sum": number_or_zero(f"${fields.count_success}")},
                "next_unlock": {"$min": date_or_null(next_use)},
                "oldest_lock": {"$min": date_or_null(f"${fields.locked_at}")},
            }
        }
    ]


def hostile_pools(bson: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Pools of 1 to 6 sessions whose counters and lock times any program may have written."""
    past, future = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    counters = [MISSING, None, 0, 3, 2**31 - 1, -4, 1.5, math.nan, math.inf, "7", True]
    if bson:  # mongomock sums neither
        counters += [Int64(2**60), Int64(-(2**60)), Decimal128("2.5"), Decimal128("NaN")]
    counter = st.sampled_from(counters)
    instant = st.sampled_from(
        [MISSING, None, past, future, datetime(1, 1, 1, tzinfo=UTC), "soon", 5, [future]]
    )
    document = st.fixed_dictionaries(
        {
            "active": st.sampled_from([MISSING, True, False, [False], "no"]),
            "next_use": instant,
            "lock_kind": st.sampled_from([MISSING, *KINDS, "weird"]),
            "locked_at": instant,
            "count_use": counter,
            "count_success": counter,
            "budgets": st.sampled_from(
                [MISSING, None, "x", {}, {BUDGET.key: [past]}, {BUDGET.key: [future, future]}]
            ),
        }
    )
    return st.lists(document, min_size=1, max_size=6).map(
        lambda documents: [
            {"_id": n, "session": {}, **{k: v for k, v in d.items() if v is not MISSING}}
            for n, d in enumerate(documents)
        ]
    )


def expired_pipeline(pool: MongoSessions, instant: datetime) -> list[dict[str, Any]]:
    """Available sessions whose lock, of a kind sessionlib writes, has ended: checked one by one."""
    fields = pool.core.connection
    room = room_expression(pool.core.options.budgets, scope=None, now=Now.fixed(instant))
    state = state_expression(fields, instant, budget_spent={"$not": room})
    ended = [
        {"$eq": [state, State.AVAILABLE.value]},
        {"$in": [f"${fields.lock_kind}", KINDS]},
        is_date_expression(f"${fields.next_use}"),
    ]
    return [{"$match": {"$expr": {"$and": ended}}}, {"$count": "n"}]


def check_equal(new_client: Callable[[], Any], bson: bool) -> Callable[[list[Any]], None]:
    def check(documents: list[dict[str, Any]]) -> None:
        async def body(client: Any) -> None:
            async with MongoSessions(
                db="cost", collection=f"pool_{bson}", client=client, clock=lambda: NOW,
                budgets=[BUDGET],
            ) as pool:  # fmt: skip
                await pool.sessions.delete_many({})
                await pool.sessions.insert_many([dict(d) for d in documents])
                found = await pool.statistics()
                rows = await pool.core.connection.aggregate(replaced_pipeline(pool, NOW))
                reference = PoolStatistics.from_groups(rows, lambda at: at)
                ended = await pool.core.connection.aggregate(expired_pipeline(pool, NOW))
                expired = ended[0]["n"] if ended else 0
                assert {**reference.as_dict(), "expired": expired} == {
                    **found.as_dict(),
                    "expired": found.expired,
                }, documents

        run_with_client(new_client, body)

    return check


PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_equal_to_the_replaced_expression_on_mongomock() -> None:
    check = check_equal(lambda: AsyncMongoMockClient(tz_aware=True), bson=False)
    given(hostile_pools(bson=False))(PROPERTY(check))()


@pytest.mark.wire
def test_equal_to_the_replaced_expression_over_the_wire(wire_url: str) -> None:
    check = check_equal(lambda: AsyncMongoClient(wire_url, tz_aware=True), bson=True)
    given(hostile_pools(bson=True))(PROPERTY(check))()
