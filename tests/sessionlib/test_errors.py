"""Driver errors become the library's errors, within the timeout, and leak no password."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymongo.errors
import pytest
from pymongo import AsyncMongoClient

from exporter.secantus import SecantusServer, free_port
from sessionlib import (
    DatabaseError,
    DuplicateSessionError,
    MongoSessions,
    OperationTimeoutError,
    ServerUnavailableError,
)
from sessionlib.driver import translate
from tests.support.faults import silent_server as quiet_server

PASSWORD = "pa55-w0rd-never-logged"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers; yields its port."""
    with quiet_server() as port:
        yield port


@pytest.fixture
async def fault_pool(fault_server: SecantusServer, db_name: str) -> AsyncIterator[MongoSessions]:
    async with MongoSessions(fault_server.url, db=db_name, collection="pool", timeout=1) as pool:
        await pool.add({"_id": 1, "session": {}})
        yield pool
        await pool.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await pool.client.drop_database(db_name)


async def test_a_server_that_never_answers_times_out_within_the_bound(silent_server: int) -> None:
    pool = MongoSessions(
        f"mongodb://127.0.0.1:{silent_server}/?directConnection=true",
        db="pools",
        collection="p",
        timeout=0.5,
        max_allowed_reconnect=0,
    )
    started = time.monotonic()

    with pytest.raises((OperationTimeoutError, ServerUnavailableError)) as caught:
        await pool.connect()

    assert time.monotonic() - started < 2.0
    assert caught.value.__cause__ is not None
    assert not pool.connected


@pytest.mark.wire
async def test_a_blocked_command_times_out_with_the_library_error(
    fault_pool: MongoSessions,
) -> None:
    await fault_pool.client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {
                "failCommands": ["findAndModify"],
                "blockConnection": True,
                "blockTimeMS": 3000,
            },
        }
    )
    started = time.monotonic()

    with pytest.raises(
        OperationTimeoutError, match=r"find_one_and_update did not finish within 1 s"
    ):
        await fault_pool.get_session()

    assert time.monotonic() - started < 1.5
    assert isinstance(fault_pool.operation_timeout, float)


@pytest.mark.wire
async def test_a_server_error_keeps_the_driver_error_as_cause(fault_pool: MongoSessions) -> None:
    await fault_pool.client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["update"], "errorCode": 2},
        }
    )

    with pytest.raises(DatabaseError, match=r"update_one failed: .*BadValue") as caught:
        await fault_pool.session_lock({"_id": 1})

    assert isinstance(caught.value.__cause__, pymongo.errors.OperationFailure)


async def test_an_unreachable_server_is_retried_then_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = MongoSessions(
        f"mongodb://worker:{PASSWORD}@127.0.0.1:{free_port()}/?directConnection=true",
        db="pools",
        collection="p",
        timeout=1,
        max_allowed_reconnect=2,
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ServerUnavailableError) as caught:
        await pool.connect()

    assert isinstance(caught.value.__cause__, pymongo.errors.ServerSelectionTimeoutError)
    attempts = [r.getMessage() for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert 2 == len(attempts)
    assert "reconnect attempt 2/2" in attempts[-1]
    everything = caplog.text + str(caught.value) + repr(pool) + str(pool.mongo_url)
    assert PASSWORD not in everything
    assert "worker:***@" in repr(pool)


@pytest.mark.parametrize("backend", ["mock", pytest.param("pymongo", marks=pytest.mark.wire)])
async def test_adding_a_duplicate_raises_duplicate_session_error(pool: MongoSessions) -> None:
    await pool.add({"_id": "same", "session": {}})

    with pytest.raises(DuplicateSessionError) as caught:
        await pool.add({"_id": "same", "session": {"other": 1}})

    assert isinstance(caught.value.__cause__, pymongo.errors.DuplicateKeyError)
    assert 1 == await pool.sessions.count_documents({})


@pytest.mark.parametrize(
    ("driver_error", "expected"),
    [
        (pymongo.errors.ServerSelectionTimeoutError("no server"), ServerUnavailableError),
        (pymongo.errors.AutoReconnect("reset"), ServerUnavailableError),
        (pymongo.errors.NetworkTimeout("slow"), OperationTimeoutError),
        (pymongo.errors.ExecutionTimeout("maxTimeMS", 50), OperationTimeoutError),
        (pymongo.errors.OperationFailure("denied", 13), "PermissionDeniedError"),
        (pymongo.errors.OperationFailure("bad", 2), "DatabaseError"),
        (pymongo.errors.DocumentTooLarge("16 MB"), "InvalidPayloadError"),
        (OverflowError("MongoDB can only handle up to 8-byte ints"), "InvalidPayloadError"),
    ],
)
def test_translation_table(driver_error: Exception, expected: Any) -> None:
    import sessionlib

    expected_type = getattr(sessionlib, expected) if isinstance(expected, str) else expected

    translated = translate(driver_error, "op")

    assert expected_type is type(translated)
    assert str(translated).startswith("op failed: ")


async def test_an_invalid_url_is_a_configuration_error_without_the_password() -> None:
    import sessionlib

    pool = MongoSessions(f"mongodb://u:{PASSWORD}@127.0.0.1:1/?w=-5", db="d", collection="c")
    with pytest.raises(sessionlib.ConfigurationError) as caught:
        await pool.connect()

    assert PASSWORD not in str(caught.value)
    assert "u:***@" in str(caught.value)


@pytest.mark.wire
async def test_the_default_client_is_pymongo_async_and_timezone_aware(
    wire_url: str, db_name: str
) -> None:
    pool = MongoSessions(wire_url, db=db_name, collection="c")
    assert pool.client is None  # the constructor does no I/O

    async with pool:
        assert isinstance(pool.client, AsyncMongoClient)
        assert pool.client.codec_options.tz_aware
        await pool.add({"_id": 1, "session": {}})
        assert (await pool.get_session())["created"].tzinfo is not None  # type: ignore[index]
        await pool.client.drop_database(db_name)

    assert (None, False) == (pool.client, pool.connected)
