"""Code written for the seed's mongo_client works with the package name changed."""

from __future__ import annotations

from typing import Any

import pytest

import sessionlib
import sessionlib.client
import sessionlib.connect
import sessionlib.connection
import sessionlib.fields
import sessionlib.logger
import sessionlib.operations
from sessionlib import MongoSessions
from tests.support.clock import START, MovableClock


def test_seed_module_paths_and_names_exist() -> None:
    assert sessionlib.client.MongoSessions is MongoSessions
    assert issubclass(MongoSessions, sessionlib.connection.MongoConnectionInterface)
    assert issubclass(MongoSessions, sessionlib.connect.MongoConnectInterface)
    assert issubclass(MongoSessions, sessionlib.fields.MongoFields)
    assert issubclass(MongoSessions, sessionlib.operations.MongoOperations)
    assert callable(sessionlib.operations.timeout)
    assert "sessionlib" == sessionlib.logger.logger.name
    for name in (
        "count_documents",
        "update_one",
        "delete_one",
        "insert_one",
        "find_one_and_update",
        "index_information",
        "create_index",
        "drop_index",
        "find",
    ):
        assert callable(getattr(sessionlib.operations.MongoOperations, name)), name
    fields = sessionlib.fields.MongoFields()
    assert ("next_use", "active", "session", "last_use") == (
        fields.next_use,
        fields.active,
        fields.session,
        fields.last_use,
    )


def test_connect_interface_takes_the_seeds_positional_arguments() -> None:
    interface = sessionlib.connect.MongoConnectInterface(
        "mongodb://worker:s3cret@127.0.0.1:1/", "pools", "telegram"
    )
    assert ("pools", "telegram") == (interface.db_name, interface.collection_name)
    assert "s3cret" not in repr(interface)
    assert "s3cret" not in str(interface.mongo_url)


@pytest.mark.parametrize("backend", ["mock", pytest.param("pymongo", marks=pytest.mark.wire)])
async def test_the_seed_usage_snippet_runs_unchanged(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    """SPEC 3.1's snippet, with the URL replaced by the test's client."""
    seeded = client[db_name]["telegram"]
    await seeded.insert_many(
        [
            {
                "_id": n,
                "session": {"n": n},
                "active": True,
                "next_use": None,
                "last_use": None,
                "count_use": 0,
                "count_success": 0,
            }
            for n in range(3)
        ]
    )
    await seeded.insert_one({"_id": "dead", "session": {}, "active": False})

    mongo = await MongoSessions(
        db=db_name, collection="telegram", client=client, max_allowed_reconnect=5, clock=clock
    ).connect()
    assert mongo.__class__ is MongoSessions  # connect() returns self
    session = await mongo.get_session()
    assert session is not None
    assert 0 == session["_id"]
    result = await mongo.session_success(session)
    assert 1 == result.modified_count
    await mongo.session_lock(session, {"hours": 10})
    doc = await seeded.find_one({"_id": 0})
    assert (1, 1) == (doc["count_use"], doc["count_success"])

    mongo.default_filter = {"active": False}
    mongo.projection = {"_id": 1, "session": 1}
    dead = await mongo.get_sessions()
    assert [{"_id": "dead", "session": {}}] == dead

    mongo.default_filter = {"active": {"$ne": False}}
    count = await mongo.sessions.count_documents(
        {"active": True, **mongo._filter_exclude_lock(offset=10)}
    )
    assert 2 == count  # 1 and 2; 0 is locked for 10 hours

    mongo.switch_collection("truecaller")
    await mongo.add({"_id": "tc", "session": {}})
    names = await mongo.db.list_collection_names()
    assert ["telegram", "truecaller"] == sorted(names)
    stats = await mongo.aggregate_statistics()
    assert (1, 0, 0, 1) == (
        stats["count_active"],
        stats["count_blocked"],
        stats["count_locked"],
        stats["count_total"],
    )

    class MyPool(MongoSessions):
        def _filter_exclude_lock(self, offset: float = 0) -> dict[str, Any]:
            return super()._filter_exclude_lock(30)

    mine = await MyPool(db=db_name, collection="telegram", client=client, clock=clock).connect()
    await mine.get_session(next_use_delay=20)  # session 1, held for 20 s
    # Counting "available 30 s from now", the held session counts as available.
    assert 2 == await mine.count_active()
    await mine.close()

    await mongo.close()
    assert START == clock()
