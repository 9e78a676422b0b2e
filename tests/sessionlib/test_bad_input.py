"""Bad input raises the library's error and leaves the collection unchanged."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionlib import (
    InvalidInputError,
    InvalidPayloadError,
    InvalidPeriodError,
    InvalidSessionError,
    MongoSessions,
    SessionPoolError,
)
from tests.support.backends import documents

Call = Callable[[MongoSessions], Awaitable[Any]]

CASES: list[tuple[str, type[InvalidInputError], Call]] = [
    ("success without _id", InvalidSessionError, lambda p: p.session_success({"session": {}})),
    ("lock on a non-dict", InvalidSessionError, lambda p: p.session_lock("s1")),  # type: ignore[arg-type]
    ("block None", InvalidSessionError, lambda p: p.session_block(None)),  # type: ignore[arg-type]
    ("inactive without _id", InvalidSessionError, lambda p: p.session_inactive({})),
    ("delete without _id", InvalidSessionError, lambda p: p.session_delete({"id": "s1"})),
    (
        "unknown period key",
        InvalidPeriodError,
        lambda p: p.session_lock({"_id": "s1"}, {"hour": 1}),
    ),
    ("negative period", InvalidPeriodError, lambda p: p.session_block({"_id": "s1"}, {"days": -1})),
    (
        "NaN period",
        InvalidPeriodError,
        lambda p: p.session_lock({"_id": "s1"}, {"seconds": math.nan}),
    ),
    ("huge period", InvalidPeriodError, lambda p: p.session_lock({"_id": "s1"}, {"weeks": 1e12})),
    ("string period", InvalidPeriodError, lambda p: p.session_lock({"_id": "s1"}, {"hours": "1"})),
    ("period not a dict", InvalidPeriodError, lambda p: p.session_lock({"_id": "s1"}, 10)),  # type: ignore[arg-type]
    ("negative delay", InvalidPeriodError, lambda p: p.get_session(next_use_delay=-1)),
    (
        "negative success delay",
        InvalidPeriodError,
        lambda p: p.session_success({"_id": "s1"}, next_use_delay=-0.5),
    ),
    ("negative count_use", InvalidInputError, lambda p: p.get_session(count_use=-1)),
    (
        "payload not a dict",
        InvalidPayloadError,
        lambda p: p.session_update({"_id": "s1"}, ["session.phone"]),
    ),  # type: ignore[arg-type]
    (
        "operator in payload",
        InvalidPayloadError,
        lambda p: p.session_update({"_id": "s1"}, {"$set": {"active": False}}),
    ),
    ("_id change", InvalidPayloadError, lambda p: p.session_update({"_id": "s1"}, {"_id": "s2"})),
    ("empty update", InvalidPayloadError, lambda p: p.session_update({"_id": "s1"}, {})),
    (
        "unset _id",
        InvalidPayloadError,
        lambda p: p.session_update({"_id": "s1"}, {"a": 1}, unset_payload=["_id"]),
    ),
    ("add a list", InvalidPayloadError, lambda p: p.add([("_id", "x")])),  # type: ignore[arg-type]
    (
        "add with operator",
        InvalidPayloadError,
        lambda p: p.add({"_id": "x", "session": {"$where": "1"}}),
    ),
]


@pytest.mark.parametrize(("name", "error", "call"), CASES, ids=[case[0] for case in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    pool: MongoSessions, name: str, error: type[InvalidInputError], call: Call
) -> None:
    await pool.add({"_id": "s1", "session": {"phone": "+7000"}})
    before = await documents(pool)

    with pytest.raises(error) as caught:
        await call(pool)

    assert isinstance(caught.value, SessionPoolError)
    assert isinstance(caught.value, ValueError)
    assert before == await documents(pool)
