"""The exporter under faults and load: a hanging server, secrets in logs, 200 pools."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import SecantusServer
from tests.support.documents import seed_pool
from tests.support.exporter_process import ExporterProcess, up_is
from tests.support.faults import BlackholeProxy
from tests.support.workers import assert_never_handed_out_twice, run_workers

pytestmark = pytest.mark.wire


def test_exporter_serves_up_zero_while_the_server_hangs(
    hanging: tuple[SecantusServer, BlackholeProxy], db_name: str, tmp_path: Path
) -> None:
    server, proxy = hanging
    seed_pool(server.url, db_name, "pool", 3)
    args = [
        "--mongo-url",
        proxy.url,
        "--database",
        db_name,
        "--interval",
        "0.5",
        "--pool-timeout",
        "1",
    ]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(up_is(1), 30, "up")
        proxy.blackhole()
        exporter.wait_for_sample(up_is(0), 30, "up 0")
        for _ in range(10):
            started = time.monotonic()
            assert 0 == exporter.scrape()[("sessionpool_up", frozenset())]
            assert time.monotonic() - started < 0.5
        proxy.restore()
        exporter.wait_for_sample(up_is(1), 60, "recovery")
        assert 0 == exporter.stop()


SECRET_URL_PASSWORD = "mongo-pw-never-logged-7f3a"
SECRET_AUTH_PASSWORD = "basic-pw-never-logged-91c2"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_log_line_holds_a_password(wire_url: str, tmp_path: Path, log_format: str) -> None:
    host = wire_url.split("://", 1)[1].split("/", 1)[0]
    url = f"mongodb://admin:{SECRET_URL_PASSWORD}@{host}/?directConnection=true&authSource=admin"
    env = {"SESSIONPOOL_BASIC_AUTH_PASSWORD": SECRET_AUTH_PASSWORD}
    args = [
        "--mongo-url",
        url,
        "--interval",
        "0.5",
        "--log-level",
        "debug",
        "--log-format",
        log_format,
        "--basic-auth-user",
        "prom",
    ]

    with ExporterProcess(args, tmp_path / "exporter.log", env={**os.environ, **env}) as exporter:
        # Wrong credentials, a few refreshes (which fail to authenticate or succeed).
        assert 401 == exporter.get("/metrics", headers={"Authorization": "Basic bm86bm8="})[0]
        time.sleep(2)
        assert 0 == exporter.stop()
    log = exporter.log()
    assert log.strip(), "the exporter logged nothing"
    assert SECRET_URL_PASSWORD not in log
    assert SECRET_AUTH_PASSWORD not in log
    assert "admin:***@" in log


LOAD_HANDOUTS = int(os.environ.get("SESSIONPOOL_LOAD_HANDOUTS", "250"))
"""Hand-outs per worker process in the load test: 250 in CI (about a minute on
the test server); ``SESSIONPOOL_LOAD_HANDOUTS=1000`` for the full load (about
five minutes)."""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_eight_processes_and_two_hundred_pools(
    wire_url: str, db_name: str, tmp_path: Path
) -> None:
    seed_pool(wire_url, db_name, "busy", 40)
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url)
    for number in range(199):
        client[db_name][f"pool{number:03d}"].insert_one({"_id": 1, "session": {}})
    client.close()
    interval = 2.0
    args = [
        "--mongo-url",
        wire_url,
        "--database",
        db_name,
        "--interval",
        str(interval),
        "--pool-timeout",
        "10",
    ]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(
            lambda s: (
                s.get(("sessionpool_pools", frozenset())) == 200
                and s[("sessionpool_up", frozenset())] == 1
            ),
            60,
            "200 pools",
        )
        options = {
            "duration": 600.0,
            "hold": 0.02,
            "op_timeout": 30.0,
            "max_reconnect": 3,
            "target": LOAD_HANDOUTS,
            "reports": False,
        }
        started = time.monotonic()
        durations: list[float] = []

        def watch() -> None:
            pass

        results = run_workers(wire_url, db_name, "busy", 8, options, during=watch)
        elapsed = time.monotonic() - started
        samples = exporter.scrape()
        durations.append(samples[("sessionpool_refresh_duration_seconds", frozenset())])
        errors = sum(samples[k] for k in samples if k[0] == "sessionpool_refresh_errors_total")
        assert 0 == exporter.stop()

    assert [] == [e for r in results for e in r["raw_errors"]]
    assert {} == {k: v for r in results for k, v in r["errors"].items()}
    handouts = assert_never_handed_out_twice(results)
    assert 0 == errors
    print(
        f"\nload: {handouts} hand-outs by 8 processes in {elapsed:.1f} s "
        f"({handouts / elapsed:.0f}/s); exporter refresh of 200 pools took "
        f"{durations[-1]:.2f} s (interval {interval:g} s)"
    )
    assert 8 * LOAD_HANDOUTS == handouts


def test_overruns_are_logged_once_and_a_stop_mid_refresh_logs_no_traceback(
    hanging: tuple[SecantusServer, BlackholeProxy], db_name: str, tmp_path: Path
) -> None:
    server, proxy = hanging
    seed_pool(server.url, db_name, "pool", 3)
    args = ["--mongo-url", proxy.url, "--database", db_name, "--interval", "0.2"]
    args += ["--pool-timeout", "2.5", "--discovery-interval", "0.2"]
    with ExporterProcess(args, tmp_path / "exporter.log") as exporter:
        exporter.wait_for_sample(up_is(1), 30, "up")
        proxy.blackhole()  # each refresh now waits 2.5 s: a dozen intervals
        time.sleep(6)  # two overrunning refreshes, then a stop in the third
        assert 0 == exporter.stop()  # while a refresh is running

    log = exporter.log()
    assert 1 == log.count("the refresh job has been running for"), log
    assert "maximum number of running instances" not in log
    assert "Traceback" not in log
    assert " ERROR " not in log
