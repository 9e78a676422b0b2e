"""The pure rules, imported directly and checked without a server.

Time (stored-time conversion, one operation's now), the order key, the
updates that rules build, budgets and the breaker's state are functions of
their inputs; the expressions are evaluated by mongomock, in process, and
held equal to their Python twins.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient

from sessionlib import Budget, EscalationPolicy
from sessionlib.budgets import room_expression
from sessionlib.clock import FIRST, LAST, NEVER, ceil_ms, shift
from sessionlib.fields import MongoFields
from sessionlib.metadata import BreakerState
from sessionlib.now import Now, current
from sessionlib.order import key_of, key_stage
from sessionlib.states import LockKind, state_expression, state_of
from sessionlib.storedtime import StoredTime, zone_of
from sessionlib.updates import hand_out, lock, release, set_payload

FIELDS = MongoFields()
ZONES = [None, "Europe/Moscow", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"]
instants = st.datetimes(min_value=datetime.min, max_value=datetime.max)


# -- stored time is total ------------------------------------------------------------


@settings(max_examples=300)
@given(instants, st.sampled_from(ZONES))
def test_stored_time_converts_every_datetime_without_raising(value: datetime, zone: str) -> None:
    time = StoredTime(zone_of(zone))
    loaded = time.load(value)
    stored = time.store(value.replace(tzinfo=UTC))
    assert FIRST <= loaded <= LAST
    assert FIRST <= stored <= LAST
    assert UTC == loaded.tzinfo


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1)))
def test_stored_time_round_trips_inside_the_calendar(value: datetime) -> None:
    time = StoredTime(zone_of("Europe/Moscow"))
    instant = value.replace(tzinfo=UTC)
    assert instant == time.load(time.store(instant))


def test_the_calendars_ends_clamp() -> None:
    moscow = StoredTime(zone_of("Europe/Moscow"))
    assert FIRST == moscow.load(datetime.min)
    assert LAST == shift(LAST - timedelta(days=1), timedelta(days=2))
    assert FIRST == shift(FIRST, timedelta(days=-1))
    assert LAST == ceil_ms(LAST)


# -- one operation's now --------------------------------------------------------


def test_a_now_stores_once_and_rounds_a_holds_end_up() -> None:
    moscow = StoredTime(zone_of("Europe/Moscow"))
    earliest = datetime(2026, 1, 1, 12, 0, 0, 100, tzinfo=UTC)
    now = Now(earliest, earliest + timedelta(microseconds=1500), moscow)

    assert datetime(2026, 1, 1, 15, 0, 0, 100, tzinfo=UTC) == now.at
    assert datetime(2026, 1, 1, 15, 0, 0, 1600, tzinfo=UTC) == now.written
    assert datetime(2026, 1, 1, 15, 0, 3, 2000, tzinfo=UTC) == now.until(timedelta(seconds=3))
    assert LAST == Now.fixed(LAST - timedelta(seconds=1)).until(timedelta(days=1))


def test_the_current_now_is_the_operations_own() -> None:
    now = Now.fixed(datetime(2026, 1, 1, tzinfo=UTC))
    assert current() is None
    with now.current():
        assert now is current()
    assert current() is None


# -- expressions and their Python twins --------------------------------------------


def evaluate(expression: dict[str, Any], document: dict[str, Any]) -> Any:
    """The value of *expression* for *document*, as mongomock's aggregation computes it."""

    async def run() -> Any:
        client = AsyncMongoMockClient(tz_aware=True)
        collection = client["rules"]["documents"]
        await collection.insert_one({"_id": 1, **document})
        rows = await collection.aggregate([{"$project": {"value": expression}}]).to_list(None)
        return rows[0]["value"]

    return asyncio.run(run())


AT = datetime(2026, 6, 1, tzinfo=UTC)
moments = st.sampled_from([None, AT - timedelta(hours=1), AT, AT + timedelta(hours=1), "x"])
documents = st.fixed_dictionaries(
    {},
    optional={
        "active": st.sampled_from([True, False, [False], None, "x"]),
        "next_use": moments,
        "last_use": moments,
        "lock_kind": st.sampled_from([kind.value for kind in LockKind] + ["weird"]),
    },
)


@settings(max_examples=60, deadline=None)
@given(documents)
def test_the_state_expression_and_state_of_agree(document: dict[str, Any]) -> None:
    assert state_of(document, AT, FIELDS).value == evaluate(state_expression(FIELDS, AT), document)


@settings(max_examples=60, deadline=None)
@given(documents, st.sampled_from([AT, AT + timedelta(hours=2)]))
def test_the_order_keys_stage_and_key_of_agree(document: dict[str, Any], since: datetime) -> None:
    stage = key_stage(FIELDS, since)["$set"]["ready_at"]
    expected = key_of(document, FIELDS, since)
    found = evaluate(stage, document)
    assert expected == (found.replace(tzinfo=UTC) if isinstance(found, datetime) else found)


def test_an_inactive_sessions_key_is_never() -> None:
    assert NEVER == key_of({"active": [True, False]}, FIELDS, AT)
    assert AT == key_of({"active": [0]}, FIELDS, AT)  # 0 is not false to the server


# -- updates -------------------------------------------------------------------------


def test_every_write_that_changes_availability_ends_with_the_order_key() -> None:
    now = Now.fixed(AT)
    key = key_stage(FIELDS, now.written)
    built = [
        lock(FIELDS, kind=LockKind.BLOCKED, now=now, until=AT),
        release(FIELDS, now=now),
        set_payload(FIELDS, {"active": True}, [], now=now),
    ]
    assert [key] * len(built) == [update[-1] for update in built]  # type: ignore[index]
    for update in built:
        assert all("ready_at" not in stage.get("$set", {}) for stage in update[:-1])  # type: ignore[union-attr]


def test_a_hand_out_keys_its_session_by_its_holds_end_in_its_own_stage() -> None:
    now = Now.fixed(AT)
    plain = hand_out(FIELDS, now=now, hold=timedelta(seconds=3), count_use=1, token="t")
    budgeted = hand_out(
        FIELDS,
        now=now,
        hold=timedelta(0),
        count_use=1,
        token="t",
        budgets=[Budget(1, {"minutes": 1})],
    )
    for update in (plain, budgeted):
        last = update[-1]["$set"]
        assert last["next_use"] == last["ready_at"]
    assert 1 == len(plain)  # one stage: the hottest write stays cheap


def test_a_payload_keeps_mongodbs_dotted_paths_unless_it_changes_availability() -> None:
    now = Now.fixed(AT)
    assert {"$set": {"session.phone": "+7"}} == set_payload(
        FIELDS, {"session.phone": "+7"}, [], now=now
    )
    pipeline = set_payload(FIELDS, {"next_use": None}, ["session.old"], now=now)
    assert [
        {"$set": {"next_use": {"$literal": None}}},
        {"$unset": ["session.old"]},
        key_stage(FIELDS, now.written),
    ] == pipeline
    assert [{"$set": {"ready_at": {"$literal": AT}}}] == set_payload(
        FIELDS, {"ready_at": AT}, [], now=now
    )


def test_an_escalated_lock_is_written_from_one_now() -> None:
    moscow = Now.fixed(AT, StoredTime(zone_of("Europe/Moscow")))
    policy = EscalationPolicy(jitter=0.0, block_after=2)
    stages = policy.lock_pipeline(now=moscow, block_period=timedelta(days=1), fields=FIELDS)
    ends = stages[1]["$set"]["next_use"]["$switch"]
    assert moscow.until(timedelta(minutes=1)) == ends["branches"][0]["then"]
    assert moscow.until(timedelta(days=1)) == ends["default"]


# -- budgets and the breaker ---------------------------------------------------------


def test_budgets_apply_by_scope() -> None:
    now = Now.fixed(AT)
    scoped = Budget(uses=1, per={"minutes": 1}, scope="search")
    assert room_expression([scoped], scope=None, now=now) is None
    assert room_expression([scoped], scope="search", now=now) is not None


@given(st.sampled_from([[], [AT + timedelta(seconds=30)], ["x", 5], [AT - timedelta(seconds=1)]]))
def test_only_dates_still_in_the_window_count_against_a_budget(entries: list[Any]) -> None:
    budget = Budget(uses=1, per={"minutes": 1})
    room = room_expression([budget], scope=None, now=Now.fixed(AT))
    assert room is not None
    live = [entry for entry in entries if isinstance(entry, datetime) and entry > AT]
    assert (not live) == evaluate(room, {"budgets": {budget.key: entries}})


def test_a_breaker_is_open_only_until_its_cool_down_ends() -> None:
    stored = {"open": True, "error": "E", "until": AT + timedelta(minutes=5)}
    assert BreakerState.from_document(stored, Now.fixed(AT)).open
    assert not BreakerState.from_document(stored, Now.fixed(AT + timedelta(minutes=5))).open
    moscow = StoredTime(zone_of("Europe/Moscow"))
    wall = {**stored, "until": AT + timedelta(hours=3, minutes=5)}  # Moscow's wall clock
    assert BreakerState.from_document(wall, Now.fixed(AT + timedelta(minutes=4), moscow)).open
    assert not BreakerState.from_document(wall, Now.fixed(AT + timedelta(minutes=6), moscow)).open
