"""Workers whose clocks are wrong, and seed workers on Moscow time, sharing one pool.

Worker processes run under libfaketime (Debian's ``faketime`` package), which
shifts their wall clock. Double holds are detected with markers in a side
collection (see :mod:`tests.support.holders`), never with a clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support.documents import session
from tests.support.faketime import faketime_env

pytestmark = [pytest.mark.wire, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[2]


def run_holders(
    workers: list[tuple[dict[str, Any], dict[str, str]]], timeout: float = 120
) -> list[dict[str, Any]]:
    """Start every ``(options, env)`` holder at once; return their results."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.holders", json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPOSITORY,
            text=True,
        )
        for options, env in workers
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert 0 == process.returncode, err
        results.append({**json.loads(out.splitlines()[-1]), "stderr": err})
    return results


@pytest.fixture
def pool_db(wire_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    database = client[db_name]
    database["pool"].insert_many([session(n) for n in range(8)])
    yield database
    client.drop_database(db_name)
    client.close()


def options(wire_url: str, db_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": wire_url,
        "db": db_name,
        "collection": "pool",
        "markers": "markers",
        "hold": 2.0,
        "duration": 7.0,
        "kind": "sessionlib",
        **extra,
    }


def test_no_double_hold_whatever_the_workers_clocks_say(
    pool_db: Any, wire_url: str, db_name: str
) -> None:
    shifts = [None, None, "+20s", "-20s", "+3600s", "-3600s"]
    workers = [(options(wire_url, db_name), faketime_env(shift)) for shift in shifts]

    results = run_holders(workers)

    doubles = [d for r in results for d in r["double"]]
    assert [] == doubles, "a session was held by two workers at once"
    assert all(r["handouts"] >= 3 for r in results), [r["handouts"] for r in results]
    offsets = [r["offset"] for r in results]
    for shift, offset in zip(shifts, offsets, strict=True):
        expected = -float(shift[:-1]) if shift else 0.0
        assert expected == pytest.approx(offset, abs=0.5), (shift, offset)
    # A clock an hour off is worth a warning in the worker's log.
    assert "off the MongoDB server's" in results[4]["stderr"]
    assert "off the MongoDB server's" not in results[0]["stderr"]


def one_session(pool_db: Any) -> None:
    """Leave session 0 alone in the pool, so the second holder can only ask for it."""
    pool_db["pool"].delete_many({"_id": {"$ne": 0}})


def run_in_turn(
    first: tuple[dict[str, Any], dict[str, str]], second: tuple[dict[str, Any], dict[str, str]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """*first* takes the only session and works on it; *second* asks while it does.

    The first holds for 8 s with its marker in for 4.8 s and asks once; the
    second waits for that marker (no sleep, no clock), then asks for 1 s.
    """
    first_options, first_env = first
    second_options, second_env = second
    results = run_holders(
        [
            ({**first_options, "hold": 8.0, "duration": 0.1}, first_env),
            ({**second_options, "hold": 8.0, "duration": 1.0, "after_marker": True}, second_env),
        ]
    )
    assert 1 == results[0]["handouts"], results[0]
    assert results[1]["waited"], "the second holder never saw the first one's marker"
    return results[0], results[1]


# Which of the two holders is off, and by how much: ahead, a worker takes
# what one on time holds; behind, a worker writes a hold that has already
# ended on the server's clock.
TURNS = {"ahead": (None, "+20s"), "behind": ("-20s", None)}


@pytest.mark.parametrize("trust", [False, True], ids=["server-clock", "own-clocks"])
@pytest.mark.parametrize("turn", sorted(TURNS))
def test_a_worker_whose_clock_is_off_never_takes_a_held_session(
    pool_db: Any, wire_url: str, db_name: str, turn: str, trust: bool
) -> None:
    one_session(pool_db)
    first_shift, second_shift = TURNS[turn]
    worker = options(wire_url, db_name, trust_local_clock=trust)

    _, second = run_in_turn(
        (worker, faketime_env(first_shift)), (worker, faketime_env(second_shift))
    )

    if trust:
        # The control: deciding on the workers' own clocks, as before, does
        # hold the session twice, so the markers can tell.
        assert second["double"], "the markers saw no double hold"
    else:
        assert [] == second["double"]
        assert 0 == second["handouts"]


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-timezone", "control"])
def test_a_seed_worker_on_moscow_time_never_takes_a_session_sessionlib_holds(
    pool_db: Any, wire_url: str, db_name: str, legacy: bool
) -> None:
    one_session(pool_db)
    ours = options(wire_url, db_name, legacy_timezone="Europe/Moscow" if legacy else None)
    seed = options(wire_url, db_name, kind="seed")

    _, second = run_in_turn(
        (ours, faketime_env(None)), (seed, faketime_env(None, tz="Europe/Moscow"))
    )

    if legacy:
        assert [] == second["double"]
        assert 0 == second["handouts"]
    else:
        # Without the option, sessionlib's holds read 3 hours old to the seed.
        assert second["double"], "the markers saw no double hold"


def test_seed_workers_on_moscow_time_and_sessionlib_workers_share_a_pool(
    pool_db: Any, wire_url: str, db_name: str
) -> None:
    seed = options(wire_url, db_name, kind="seed")
    ours = options(wire_url, db_name, legacy_timezone="Europe/Moscow")
    workers = [
        (seed, faketime_env(None, tz="Europe/Moscow")),
        (seed, faketime_env(None, tz="Europe/Moscow")),
        (ours, faketime_env(None)),
        (ours, faketime_env(None)),
    ]

    results = run_holders(workers)

    doubles = [d for r in results for d in r["double"]]
    assert [] == doubles, "a session was held by a seed worker and ours at once"
    assert all(r["handouts"] >= 3 for r in results), [r["handouts"] for r in results]
