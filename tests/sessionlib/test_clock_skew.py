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


def test_trusting_the_workers_clocks_does_hold_sessions_twice(
    pool_db: Any, wire_url: str, db_name: str
) -> None:
    # The control: the same fleet deciding on its own clocks, as before.
    shifts = [None, None, "+20s", "-20s"]
    workers = [
        (options(wire_url, db_name, trust_local_clock=True), faketime_env(shift))
        for shift in shifts
    ]

    results = run_holders(workers)

    assert [d for r in results for d in r["double"]], "the markers saw no double hold"


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-timezone", "control"])
def test_seed_workers_on_moscow_time_and_sessionlib_workers_share_a_pool(
    pool_db: Any, wire_url: str, db_name: str, legacy: bool
) -> None:
    seed = options(wire_url, db_name, kind="seed")
    ours = options(wire_url, db_name, legacy_timezone="Europe/Moscow" if legacy else None)
    workers = [
        (seed, faketime_env(None, tz="Europe/Moscow")),
        (seed, faketime_env(None, tz="Europe/Moscow")),
        (ours, faketime_env(None)),
        (ours, faketime_env(None)),
    ]

    results = run_holders(workers)

    doubles = [d for r in results for d in r["double"]]
    if legacy:
        assert [] == doubles, "a session was held by a seed worker and ours at once"
        assert all(r["handouts"] >= 3 for r in results), [r["handouts"] for r in results]
    else:
        # Without the option, sessionlib's locks read 3 hours old to the seed.
        assert doubles, "the markers saw no double hold"
