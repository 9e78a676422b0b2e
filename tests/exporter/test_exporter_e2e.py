"""The exporter as a subprocess, against the real wire server, scraped over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64
from pymongo import MongoClient

from exporter.secantus import SecantusServer
from tests.support.documents import session
from tests.support.exporter_process import ExporterProcess, Samples, pool_value, up_is
from tests.support.faketime import faketime_env

pytestmark = pytest.mark.wire

KINDS = ("in_use", "locked", "blocked")
STATES = ("available", "in_use", "locked", "blocked", "inactive", "other")


def known_states(now: datetime) -> list[dict[str, Any]]:
    """A pool with every state, locks far enough in the future to hold during the test."""
    hour, past = now + timedelta(hours=1), now - timedelta(hours=1)
    return [
        session(0),
        session(1, last_use=past, next_use=past, count_use=5, count_success=4),
        session(2, next_use=hour, lock_kind="in_use", count_use=2, count_success=1),
        session(3, next_use=hour, lock_kind="in_use", count_use=1),
        session(4, next_use=now + timedelta(hours=3), lock_kind="locked", count_use=7),
        session(5, next_use=now + timedelta(days=1), lock_kind="blocked", count_success=2),
        session(6, active=False, count_use=3),
        # Written by the seed library: a naive future next_use and no lock_kind.
        {"_id": 7, "session": {}, "next_use": (now + timedelta(hours=2)).replace(tzinfo=None)},
    ]


def expected_from_documents(docs: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """What the exporter must report, computed directly from the documents."""
    states: Counter[str] = Counter()
    unlocks = []
    for doc in docs:
        next_use = doc.get("next_use")
        if next_use is not None and next_use.tzinfo is None:
            next_use = next_use.replace(tzinfo=UTC)
        if doc.get("active") is False:
            states["inactive"] += 1
        elif next_use is None or next_use < now:
            states["available"] += 1
        else:
            kind = doc.get("lock_kind")
            states[kind if kind in KINDS else "locked"] += 1
            unlocks.append(next_use)
    return {
        "states": {state: states[state] for state in STATES},
        "uses": sum(doc.get("count_use", 0) for doc in docs),
        "successes": sum(doc.get("count_success", 0) for doc in docs),
        "next_unlock": min(unlocks).timestamp() if unlocks else None,
    }


def assert_pool_matches(samples: Samples, db: str, name: str, docs: list[dict[str, Any]]) -> None:
    expected = expected_from_documents(docs, datetime.now(UTC))
    actual = {
        state: pool_value(samples, "sessionpool_sessions", db, name, state=state)
        for state in STATES
    }
    assert expected["states"] == actual
    assert expected["uses"] == pool_value(samples, "sessionpool_session_uses_total", db, name)
    assert expected["successes"] == pool_value(
        samples, "sessionpool_session_successes_total", db, name
    )
    if expected["next_unlock"] is not None:
        assert expected["next_unlock"] == pytest.approx(
            pool_value(samples, "sessionpool_next_unlock_timestamp_seconds", db, name), abs=0.001
        )


def pools_in(samples: Samples) -> set[str]:
    return {
        dict(labels)["collection"] for name, labels in samples if name == "sessionpool_sessions"
    }


@pytest.fixture
def mongo(wire_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


def test_metrics_match_the_documents_and_follow_pools(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    mongo["alpha"].insert_many(known_states(now))
    mongo["beta"].insert_many([session(n) for n in range(3)])
    mongo["users"].insert_one({"name": "not a session"})
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        "0.5",
        "--discovery-interval",
        "0.5",
    ]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        samples = exporter.wait_for_sample(
            lambda s: pools_in(s) == {"alpha", "beta"}, 30, "two pools refreshed"
        )
        for name in ("alpha", "beta"):
            assert_pool_matches(samples, db_name, name, list(mongo[name].find()))
        assert 1 == samples[("sessionpool_up", frozenset())]
        assert 0.5 == samples[("sessionpool_refresh_interval_seconds", frozenset())]
        assert 0 == pool_value(samples, "sessionpool_refresh_errors_total", db_name, "alpha")
        assert {"alpha", "beta"} == pools_in(samples)  # "users" is not a pool
        _, text = exporter.get("/metrics")
        assert "Refreshed every 0.5 seconds." in text
        assert "sessionpool_build_info{" in text
        assert (200, "ok") == (exporter.get("/readyz")[0], exporter.get("/healthz")[1].strip())
        assert "/metrics" in exporter.get("/")[1]

        mongo["gamma"].insert_many([session(n) for n in range(4)])
        mongo.drop_collection("beta")
        samples = exporter.wait_for_sample(
            lambda s: pools_in(s) == {"alpha", "gamma"}, 30, "gamma in, beta out"
        )
        assert 4 == pool_value(samples, "sessionpool_sessions", db_name, "gamma", state="available")
        assert not [labels for _, labels in samples if ("collection", "beta") in labels]

        assert 0 == exporter.stop()
    log = exporter.log()
    assert f"skipping {db_name}.users" in log
    assert "Traceback" not in log


def test_outage_serves_up_zero_quickly_and_recovers(tmp_path: Path, db_name: str) -> None:
    server = SecantusServer(tmp_path / "db").start()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(server.url, tz_aware=True)
        client[db_name]["pool"].insert_many([session(n) for n in range(5)])
        client.close()
        args = [
            "--mongo-url",
            server.url,
            "--database",
            db_name,
            "--interval",
            "0.5",
            "--pool-timeout",
            "1",
        ]
        with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
            before = exporter.wait_for_sample(up_is(1), 30, "up")
            server.stop(kill=True)
            exporter.wait_for_sample(up_is(0), 30, "up 0")
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                samples = exporter.scrape()
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.2)
            assert slowest < 0.5, f"a scrape took {slowest:.2f} s during the outage"
            assert 503 == exporter.get("/readyz")[0]
            assert (
                "sessionpool_sessions",
                frozenset(
                    {"database": db_name, "collection": "pool", "state": "available"}.items()
                ),
            ) not in samples
            assert pool_value(samples, "sessionpool_refresh_errors_total", db_name, "pool") >= 1

            server.start()  # same port, same data
            after = exporter.wait_for_sample(
                lambda s: (
                    s.get(("sessionpool_up", frozenset())) == 1
                    and (
                        "sessionpool_sessions",
                        frozenset(
                            {
                                "database": db_name,
                                "collection": "pool",
                                "state": "available",
                            }.items()
                        ),
                    )
                    in s
                ),
                60,
                "recovery",
            )
            for state in STATES:
                assert pool_value(before, "sessionpool_sessions", db_name, "pool", state=state) == (
                    pool_value(after, "sessionpool_sessions", db_name, "pool", state=state)
                )
            assert 0 == exporter.stop()
        log = exporter.log()
        assert 1 == log.count("is unreachable"), "logged once per state change"
        assert 1 == log.count("is reachable again")
    finally:
        server.stop()


def test_auto_release_releases_only_expired_locks_and_counts_them(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=5), now + timedelta(hours=1)
    mongo["pool"].insert_many(
        [
            session(0, next_use=past, lock_kind="in_use"),
            session(1, next_use=past, lock_kind="locked"),
            session(2, next_use=past, lock_kind="locked"),
            session(3, next_use=past, lock_kind="blocked"),
            session(4, next_use=future, lock_kind="locked"),
            session(5, next_use=future, lock_kind="blocked"),
        ]
    )
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        "0.5",
        "--auto-release",
        "--auto-release-interval",
        "0.5",
    ]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:

        def released(samples: Samples, kind: str) -> float:
            return samples.get(
                (
                    "sessionpool_locks_released_total",
                    frozenset({"database": db_name, "collection": "pool", "kind": kind}.items()),
                ),
                -1,
            )

        samples = exporter.wait_for_sample(
            lambda s: released(s, "locked") == 2, 30, "released locks"
        )
        assert (1, 2, 1) == tuple(released(samples, kind) for kind in KINDS)
        assert 0 == exporter.stop()

    docs = {doc["_id"]: doc for doc in mongo["pool"].find()}
    for number in range(4):
        assert (None, None) == (docs[number]["next_use"], docs[number].get("lock_kind"))
    assert [future.replace(microsecond=future.microsecond // 1000 * 1000)] * 2 == [
        docs[4]["next_use"],
        docs[5]["next_use"],
    ]


def test_without_auto_release_nothing_is_written(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    mongo["pool"].insert_many(
        [*known_states(now), session(10, next_use=now - timedelta(minutes=1), lock_kind="locked")]
    )
    before = list(mongo["pool"].find().sort("_id"))
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.3"]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        first = exporter.wait_for_sample(lambda s: pools_in(s) == {"pool"}, 30, "the pool")
        stamp = first[("sessionpool_last_refresh_timestamp_seconds", frozenset())]
        exporter.wait_for_sample(  # three more refreshes
            lambda s: s[("sessionpool_last_refresh_timestamp_seconds", frozenset())] > stamp + 0.8,
            30,
            "more refreshes",
        )
        assert 0 == exporter.stop()

    assert before == list(mongo["pool"].find().sort("_id"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_embedded_default_serves_demo_metrics_and_exits_cleanly(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    command = shutil.which("sessionpool-exporter")
    assert command, "the console script is not installed (pip install -e .)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONPOOL_")}
    exporter = ExporterProcess(
        ["--embedded-dir", str(demo_dir), "--interval", "1"],
        tmp_path / "exporter.log",
        env=env,
        command=[command],
    )
    with exporter:
        samples = exporter.wait_for_sample(
            lambda s: (
                s.get(("sessionpool_pools", frozenset())) == 3
                and sum(v for (name, _), v in s.items() if name == "sessionpool_session_uses_total")
                > 0
            ),
            90,
            "demo pools with traffic",
        )
        assert 1 == samples[("sessionpool_up", frozenset())]
        telegram = frozenset({"database": "sessionpool_demo", "collection": "telegram"}.items())
        assert 30 == samples[("sessionpool_target_min_available", telegram)]
        # The simulated workers' telemetry is on the exporter's own /metrics.
        got = sum(
            v
            for (name, labels), v in samples.items()
            if name == "sessionpool_worker_handouts_total" and ("result", "got") in labels
        )
        assert got > 0
        assert _processes_mentioning(str(demo_dir)), "the embedded server is not running"
        assert 0 == exporter.stop()
    first_lines = exporter.log().splitlines()[:2]
    assert "embedded demo" in first_lines[0]
    assert f"http://127.0.0.1:{exporter.port}/metrics" in first_lines[1]
    assert [] == _processes_mentioning(str(demo_dir)), "a child process was left behind"


def test_the_embedded_demo_recovers_from_a_killed_exporter(tmp_path: Path) -> None:
    """kill -9 leaves the demo server running; the next start stops it and serves in 30 s."""
    demo_dir = tmp_path / "demo"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONPOOL_")}
    args = ["--embedded-dir", str(demo_dir), "--interval", "1", "--no-demo-traffic"]
    first = ExporterProcess(args, tmp_path / "first.log", env=env).start()
    first.wait_for_sample(up_is(1), 60, "the first exporter")
    lock = json.loads((demo_dir / "demo.lock").read_text())
    assert first.process is not None
    assert first.process.pid == lock["owner"]
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert lock["server"] in _processes_mentioning(str(demo_dir)), "the server died too"

    started = time.monotonic()
    with ExporterProcess(args, tmp_path / "second.log", env=env) as second:
        second.wait_for_sample(up_is(1), 30, "the second exporter to serve /metrics")
        took = time.monotonic() - started
        assert lock["server"] not in _processes_mentioning(str(demo_dir))
        assert "stopping the demo server" in second.log()
        assert 0 == second.stop()
    assert took < 30
    assert [] == _processes_mentioning(str(demo_dir)), "a child process was left behind"
    assert not (demo_dir / "demo.lock").exists()


def test_a_demo_folder_in_use_by_a_live_exporter_is_refused_naming_it(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONPOOL_")}
    args = ["--embedded-dir", str(demo_dir), "--interval", "1", "--no-demo-traffic"]
    with ExporterProcess(args, tmp_path / "first.log", env=env) as first:
        first.wait_for_sample(up_is(1), 60, "the first exporter")
        assert first.process is not None
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--port", "0", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert 1 == result.returncode
        assert f"another sessionpool-exporter (pid {first.process.pid})" in result.stderr
        assert "is the 'SecantusDB' package installed" not in result.stderr
        first.wait_for_sample(up_is(1), 10, "the first exporter, untouched")
        assert 0 == first.stop()


def test_the_embedded_demo_runs_encrypted(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONPOOL_")}
    args = ["--embedded-dir", str(demo_dir), "--interval", "1", "--demo-encrypted"]
    with ExporterProcess(args, tmp_path / "exporter.log", env=env) as exporter:
        exporter.wait_for_sample(
            lambda s: (
                sum(v for (n, _), v in s.items() if n == "sessionpool_session_uses_total") > 0
            ),
            90,
            "demo pools with traffic",
        )
        url = re.search(r"for (mongodb://\S+)", exporter.log())
        assert url is not None, exporter.log()
        client: MongoClient[dict[str, Any]] = MongoClient(url.group(1))
        try:
            stored = list(client["sessionpool_demo"]["telegram"].find({}, {"session": 1}))
        finally:
            client.close()
        assert 0 == exporter.stop()
    assert 60 == len(stored)
    assert {6} == {doc["session"].subtype for doc in stored}
    assert (demo_dir / "demo.key").stat().st_mode & 0o077 == 0
    assert "payloads encrypted" in exporter.log().splitlines()[0]


def malformed_documents(now: datetime) -> list[dict[str, Any]]:
    """Documents other programs might write, one malformation each."""
    return [
        session(0, count_use=float("nan")),
        session(1, count_use=float("inf"), count_success=Decimal128("2.5")),
        session(2, count_use=Decimal128("NaN")),
        session(3, lock_kind={"why": "dict"}, next_use=now + timedelta(hours=1)),
        session(4, lock_kind=["list"], next_use=now + timedelta(hours=1)),
        session(5, next_use="tomorrow"),
        session(6, last_use=None, count_use="many", fence=[1]),
        session(7, locked_at="then", next_use=now + timedelta(hours=2), lock_kind="locked"),
        session(8, count_use=Int64(7), session={"user_id": Int64(2**62)}),
        {"_id": 9, "session": {"nested": [[[[1]]]]}, "next_use": Binary(b"\x00")},
    ]


def test_malformed_documents_blind_neither_their_pool_nor_the_others(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    mongo["bad"].insert_many(malformed_documents(now))
    mongo["good"].insert_many([session(n) for n in range(4)])
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.5"]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        samples = exporter.wait_for_sample(
            lambda s: pools_in(s) == {"bad", "good"}, 30, "both pools"
        )
        assert 1 == samples[("sessionpool_up", frozenset())]
        assert (200, 0.0) == (
            exporter.get("/readyz")[0],
            pool_value(samples, "sessionpool_refresh_errors_total", db_name, "bad"),
        )
        bad = {
            state: pool_value(samples, "sessionpool_sessions", db_name, "bad", state=state)
            for state in STATES
        }
        # 5 and 9 have a next_use that is no date: "other"; 3 and 4 (a dict and
        # a list for a kind) count as locked, as 7 does; the rest are available.
        expected = {"available": 5, "locked": 3, "other": 2}
        assert {state: expected.get(state, 0) for state in STATES} == bad
        # Only finite counters are summed: 7 (and nothing from NaN, inf, "many").
        assert 7 == pool_value(samples, "sessionpool_session_uses_total", db_name, "bad")
        assert 4 == pool_value(samples, "sessionpool_sessions", db_name, "good", state="available")
        assert 0 == exporter.stop()
    assert "Traceback" not in exporter.log()


def test_pools_that_appear_between_refreshes_never_make_readyz_unready(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    mongo["first"].insert_many([session(n) for n in range(2)])
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        "1",
        "--discovery-interval",
        "0.1",
    ]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for(lambda: exporter.get("/readyz")[0] == 200, 30, "ready")
        answers: list[int] = []
        for number in range(6):
            mongo[f"new{number}"].insert_one(session(0))
            deadline = time.monotonic() + 0.4
            while time.monotonic() < deadline:
                answers.append(exporter.get("/readyz")[0])
                time.sleep(0.01)
        samples = exporter.wait_for_sample(
            lambda s: len(pools_in(s)) == 7, 30, "every new pool refreshed"
        )
        assert 0 == exporter.stop()

    assert len(answers) > 50
    assert {200} == set(answers)
    assert 1 == pool_value(samples, "sessionpool_sessions", db_name, "new5", state="available")


def test_the_exporter_reports_how_far_its_clock_is_off_the_servers(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    mongo["pool"].insert_many([session(n) for n in range(2)])
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.5"]
    env = faketime_env("+30s")

    with ExporterProcess(args, tmp_path / "exporter.log", env=env) as exporter:
        samples = exporter.wait_for_sample(lambda s: pools_in(s) == {"pool"}, 30, "the pool")
        assert 0 == exporter.stop()

    assert -30 == pytest.approx(samples[("sessionpool_clock_offset_seconds", frozenset())], abs=1)
    # It decides on the server's clock all the same: both sessions are available.
    assert 2 == pool_value(samples, "sessionpool_sessions", db_name, "pool", state="available")


@pytest.mark.parametrize(
    ("flags", "available", "locked"),
    [(["--legacy-timezone", "Europe/Moscow"], 2, 1), ([], 0, 3)],
    ids=["legacy-timezone", "without"],
)
def test_seed_written_moscow_times_read_true_with_the_legacy_timezone(
    mongo: Any,
    wire_url: str,
    db_name: str,
    tmp_path: Path,
    flags: list[str],
    available: int,
    locked: int,
) -> None:
    moscow = (datetime.now(UTC) + timedelta(hours=3)).replace(tzinfo=None)
    # As the seed wrote them in Moscow: naive local wall-clock times.
    mongo["seed"].insert_many(
        [
            {"_id": 1, "session": {}, "next_use": moscow - timedelta(minutes=1)},  # expired
            {"_id": 2, "session": {}, "next_use": moscow - timedelta(seconds=5)},  # expired
            {"_id": 3, "session": {}, "next_use": moscow + timedelta(hours=1)},  # locked
        ]
    )
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.5", *flags]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        samples = exporter.wait_for_sample(lambda s: pools_in(s) == {"seed"}, 30, "the pool")
        assert 0 == exporter.stop()

    assert (available, locked) == (
        pool_value(samples, "sessionpool_sessions", db_name, "seed", state="available"),
        pool_value(samples, "sessionpool_sessions", db_name, "seed", state="locked"),
    )
    if flags:  # the next unlock is the true instant, in Unix time
        unlock = pool_value(samples, "sessionpool_next_unlock_timestamp_seconds", db_name, "seed")
        truth = (moscow + timedelta(hours=1) - timedelta(hours=3)).replace(tzinfo=UTC)
        assert truth.timestamp() == pytest.approx(unlock, abs=0.002)


def test_auto_release_never_brings_back_a_dropped_pool(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    mongo["doomed"].insert_many([session(n, next_use=past, lock_kind="locked") for n in range(3)])
    mongo["kept"].insert_many([session(n) for n in range(2)])
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.3"]
    args += ["--discovery-interval", "0.5", "--auto-release", "--auto-release-interval", "0.1"]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(
            lambda s: (
                s.get(
                    (
                        "sessionpool_locks_released_total",
                        frozenset(
                            {"database": db_name, "collection": "doomed", "kind": "locked"}.items()
                        ),
                    )
                )
                == 3
            ),
            30,
            "the expired locks released",
        )
        mongo.drop_collection("doomed")
        samples = exporter.wait_for_sample(
            lambda s: pools_in(s) == {"kept"}, 30, "the dropped pool gone"
        )
        time.sleep(2)  # twenty auto-release intervals more
        names = mongo.list_collection_names()
        later = exporter.scrape()
        assert 0 == exporter.stop()

    assert ["kept"] == sorted(names)
    assert {"kept"} == pools_in(samples) == pools_in(later)


def test_scopes_are_exported_folded_beyond_the_limit_and_their_ended_locks_released(
    mongo: Any, wire_url: str, db_name: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=5), now + timedelta(hours=1)
    mongo["pool"].insert_many(
        [
            session(0, scopes={"search": future}),
            session(1, scopes={"search": past, "profile": future}),  # search's lock ended
            session(2, scopes={}),
            session(3, next_use=future, lock_kind="locked", scopes={"search": future}),
            session(4, scopes={"profile": future}),
        ]
    )
    args = ["--mongo-url", wire_url, "--database", db_name, "--interval", "0.5"]
    args += ["--scope-limit", "1", "--auto-release", "--auto-release-interval", "0.5"]

    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:

        def scope(samples: Samples, name: str, state: str) -> float:
            labels = {"scope": name, "state": state}
            return samples.get(
                (
                    "sessionpool_scope_sessions",
                    frozenset({"database": db_name, "collection": "pool", **labels}.items()),
                ),
                -1,
            )

        def released(samples: Samples) -> float:
            labels = {"database": db_name, "collection": "pool", "kind": "scope"}
            return samples.get(("sessionpool_locks_released_total", frozenset(labels.items())), -1)

        samples = exporter.wait_for_sample(lambda s: released(s) == 1, 30, "a scoped release")
        # Released: "search" locks session 0 only now; "profile" locks 1 and 4,
        # so it is kept and "search" is folded into "other". Session 3 is
        # locked for everyone, so it counts as locked for each scope.
        samples = exporter.wait_for_sample(
            lambda s: scope(s, "profile", "available") == 2, 30, "scopes after the release"
        )
        assert (2, 3) == (
            scope(samples, "profile", "available"),
            scope(samples, "profile", "locked"),
        )
        assert (3, 2) == (scope(samples, "other", "available"), scope(samples, "other", "locked"))
        assert -1 == scope(samples, "search", "available")
        assert 4 == pool_value(samples, "sessionpool_sessions", db_name, "pool", state="available")
        assert 0 == exporter.stop()

    assert {"profile"} == set(mongo["pool"].find_one({"_id": 1})["scopes"])
    assert {"search"} == set(mongo["pool"].find_one({"_id": 0})["scopes"])
