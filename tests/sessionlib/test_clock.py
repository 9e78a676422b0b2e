"""The server's clock as sessionlib estimates it, and the seed's local-time documents."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sessionlib import MongoSessions
from sessionlib.clock import DRIFT, ClockSample, ServerClock, latest
from sessionlib.storedtime import StoredTime, zone_of
from tests.support.backends import documents
from tests.support.clock import START, MovableClock

SERVER = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock tests move."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_interval_holds_the_servers_time_whenever_it_read_its_clock() -> None:
    ticks = Ticks()
    clock = ServerClock(monotonic=ticks)
    # Sent at 1000.000, answered at 1000.004: the server read its clock then.
    clock.add(ClockSample(SERVER, sent=1000.0, received=1000.004, wall=0.0))

    assert (SERVER, SERVER + timedelta(milliseconds=5)) == (clock(), clock.latest())
    ticks.now = 1100.004  # a hundred seconds after the answer, with the drift allowance
    drift = timedelta(seconds=100 * DRIFT)
    assert SERVER + timedelta(seconds=100) - drift == clock()
    assert SERVER + timedelta(seconds=100.005) + drift == clock.latest()
    assert 0.005 + 2 * 100 * DRIFT == pytest.approx(clock.uncertainty())


def test_the_offset_is_the_servers_clock_minus_ours() -> None:
    clock = ServerClock(monotonic=Ticks())
    # Our wall clock says 20 s later than the server's.
    ours = SERVER.timestamp() + 20.0
    clock.add(ClockSample(SERVER, sent=1000.0, received=1000.002, wall=ours))

    assert -20.0 == pytest.approx(clock.offset, abs=0.002)


def test_a_far_off_clock_is_a_warning_once_in_ten_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = Ticks()
    clock = ServerClock(monotonic=ticks, warn_above=2.0)
    far = SERVER.timestamp() + 3.0
    near = SERVER.timestamp() + 1.0

    clock.add(ClockSample(SERVER, 1000.0, 1000.001, wall=near))
    assert [] == caplog.records
    for _ in range(3):
        clock.add(ClockSample(SERVER, ticks.now, ticks.now, wall=far))
        ticks.now += 60
    ticks.now += 600
    clock.add(ClockSample(SERVER, ticks.now, ticks.now, wall=far))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 2 == len(warnings)
    assert "+3.000 s off the MongoDB server's" in warnings[0].getMessage()


def test_a_new_reading_is_due_after_the_interval() -> None:
    ticks = Ticks()
    clock = ServerClock(monotonic=ticks, refresh=60)
    assert clock.needs_sample()
    clock.add(ClockSample(SERVER, ticks.now, ticks.now, wall=0.0))
    ticks.now += 59
    assert not clock.needs_sample()
    ticks.now += 2
    assert clock.needs_sample()


def test_a_clock_passed_in_is_trusted_as_it_is() -> None:
    clock = MovableClock()

    assert (START, START) == (clock(), latest(clock))


@pytest.mark.wire
async def test_a_pool_decides_on_the_servers_clock(wire_url: str, db_name: str) -> None:
    async with MongoSessions(wire_url, db=db_name, collection="pool") as pool:
        await pool.add({"_id": 1, "session": {}})
        handed = await pool.get_session(next_use_delay=10)
        clock = pool.clock
        await pool.client.drop_database(db_name)

    assert isinstance(clock, ServerClock)
    assert clock.offset is not None
    assert abs(clock.offset) < 0.5  # one machine: the same clock
    assert handed is not None
    held = handed["next_use"] - handed["last_use"]
    # The hold is written from the latest bound, never shorter than asked.
    assert timedelta(seconds=10) <= held < timedelta(seconds=10.1)


MOSCOW = zone_of("Europe/Moscow")


def test_stored_wall_clock_times_round_trip() -> None:
    stored = StoredTime(MOSCOW)
    instant = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    written = stored.store(instant)

    assert datetime(2026, 3, 1, 12, 0, tzinfo=UTC) == written  # 12:00 in Moscow
    assert instant == stored.load(written)
    assert instant == stored.load(written.replace(tzinfo=None))  # Motor without tz_aware
    assert instant == StoredTime().store(instant) == StoredTime().load(instant)


def test_daylight_saving_is_followed_where_a_zone_has_it() -> None:
    berlin = StoredTime(zone_of("Europe/Berlin"))
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)

    assert (13, 14) == (berlin.store(winter).hour, berlin.store(summer).hour)
    assert (winter, summer) == (
        berlin.load(berlin.store(winter)),
        berlin.load(berlin.store(summer)),
    )


async def test_a_legacy_pool_writes_and_reads_moscow_wall_clock(
    client: Any, db_name: str, clock: MovableClock
) -> None:
    async with MongoSessions(
        db=db_name, collection="seed", client=client, clock=clock, legacy_timezone="Europe/Moscow"
    ) as pool:
        msk = timedelta(hours=3)
        # Written by a seed worker in Moscow: held until 3 s after 15:00 local.
        await pool.sessions.insert_many(
            [
                {
                    "_id": "seed-held",
                    "session": {},
                    "next_use": (START + msk + timedelta(seconds=3)),
                },
                {
                    "_id": "seed-free",
                    "session": {},
                    "next_use": (START + msk - timedelta(seconds=1)),
                },
            ]
        )
        stats = await pool.statistics()
        handed = await pool.get_session(next_use_delay=30)
        raw = {doc["_id"]: doc for doc in await documents(pool)}

    assert (1, 1) == (stats.available, stats.locked)
    assert START + timedelta(seconds=3) == stats.next_unlock
    assert handed is not None
    assert ("seed-free", START + timedelta(seconds=30)) == (handed["_id"], handed["next_use"])
    stored = raw["seed-free"]["next_use"].replace(tzinfo=None)
    # As the seed writes it: Moscow's wall clock, naive.
    assert (START + msk + timedelta(seconds=30)).replace(tzinfo=None) == stored


def test_an_unknown_zone_is_refused() -> None:
    from sessionlib import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown time zone"):
        MongoSessions("mongodb://h", db="d", collection="c", legacy_timezone="Moscow/Kremlin")
