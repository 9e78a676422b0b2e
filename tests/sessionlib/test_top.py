"""``sessionpool top`` in a real terminal (tmux), and its pieces."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from sessionlib import CircuitBreaker, MongoSessions, PoolKey, PoolStatistics, Target
from sessionlib.cli.top import PoolRow, bar, sparkline, split_pattern, until
from tests.sessionlib.test_cli import cli
from tests.support.documents import session


def figures(**counts: Any) -> PoolStatistics:
    """Statistics with *counts*, the rest 0 or none."""
    base: dict[str, Any] = dict.fromkeys(
        ("total", "available", "in_use", "locked", "blocked", "inactive", "uses", "successes"), 0
    )
    return PoolStatistics(**{**base, "next_unlock": None, "oldest_lock": None, **counts})


def test_the_bar_shows_each_state_in_proportion_with_its_own_mark() -> None:
    stats = figures(total=20, available=14, locked=6)
    assert "█" * 17 + "▒" * 7 == bar(stats).plain
    tiny = figures(total=1000, available=999, blocked=1)
    assert "░" in bar(tiny).plain  # present, so shown however small
    assert 24 == len(bar(figures(total=3, available=1, in_use=1, inactive=1)).plain)
    assert "·" * 24 == bar(figures()).plain


def test_sparkline_until_and_the_pattern() -> None:
    assert "▁▄█" == sparkline([0, 5, 10])
    assert "" == sparkline([])
    assert "▁▁" == sparkline([0, 0])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert "in 30s" == until(now + timedelta(seconds=30), now)
    assert "in 5m" == until(now + timedelta(minutes=5), now)
    assert "in 3h" == until(now + timedelta(hours=3), now)
    assert "now" == until(now - timedelta(seconds=1), now)
    assert "-" == until(None, now)
    assert (["pools"], []) == split_pattern("pools")
    assert (["pools"], ["tg*"]) == split_pattern("pools.tg*")
    assert (None, ["*.tg*"]) == split_pattern("*.tg*")
    assert (None, []) == split_pattern("*")


def test_hand_outs_per_minute_come_from_the_uses_counter() -> None:
    row = PoolRow(PoolKey("pools", "tg"))
    row.update(figures(total=5, available=5, uses=100), at=10.0)
    assert row.per_minute is None
    row.update(figures(total=5, available=4, uses=130), at=40.0)
    assert 60.0 == row.per_minute
    assert [5, 4] == list(row.available)
    row.update(RuntimeError("the server failed\nwith details"), at=50.0)
    assert "the server failed" == row.error
    assert [5, 4] == list(row.available)


@pytest.fixture
def pools(wire_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    db = client[db_name]
    now = datetime.now(UTC)
    locked = now + timedelta(hours=1)
    db["watched"].insert_many(
        [session(n) for n in range(14)]
        + [session(n, next_use=locked, lock_kind="locked", locked_at=now) for n in range(14, 20)]
    )
    db["healthy"].insert_many([session(n) for n in range(10)])
    db["tripped"].insert_many([session(n) for n in range(4)])
    db["other"].insert_one({"_id": 1, "name": "not a pool"})
    yield db
    client.drop_database(db_name)
    client.close()


async def prepare(url: str, db: str) -> None:
    async with MongoSessions(url, db=db, collection="watched") as watched:
        await watched.set_target(Target(min_available=15))
    breaker = CircuitBreaker(min_sessions=1, cooldown={"hours": 1})
    async with MongoSessions(url, db=db, collection="tripped", breaker=breaker) as tripped:
        from sessionlib import Block

        try:
            async with tripped.lease(on_error={KeyError: Block()}):
                raise KeyError
        except KeyError:
            pass


def row_of(screen: str, pool: str) -> str:
    return next((line for line in screen.splitlines() if pool in line), "")


class Terminal:
    """A tmux session of its own running one command, 160 columns by 20 lines."""

    def __init__(self, command: str) -> None:
        binary = shutil.which("tmux")
        assert binary, "tmux is not installed: apt-get install tmux (see .ci/run)"
        self.tmux = [binary, "-L", f"test-{uuid.uuid4().hex[:8]}"]
        self.name = "top"
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", "160", "-y", "20", command],
            check=True,
        )

    def screen(self) -> str:
        result = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout

    def wait_for(self, what: str, condition: Any, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if condition(shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


@pytest.mark.wire
def test_top_shows_the_pools_live_and_quits_on_q(pools: Any, wire_url: str, db_name: str) -> None:
    import asyncio

    asyncio.run(prepare(wire_url, db_name))
    command = " ".join(
        shlex.quote(word)
        for word in [
            *(sys.executable, "-m", "sessionlib", "--mongo-url", wire_url, "--tz", "UTC"),
            *("top", db_name, "--interval", "1"),
        ]
    )
    # COLUMNS and LINES from this process would override the terminal's own size.
    terminal = Terminal(f"env -u COLUMNS -u LINES {command}; echo EXITED $?; sleep 30")
    try:
        shown = terminal.wait_for(
            "the three pools", lambda s: all(p in s for p in ("watched", "healthy", "tripped"))
        )
        watched = row_of(shown, f"{db_name}.watched")
        assert "14/20" in watched
        assert " 15 " in watched  # its target
        assert "█" * 17 + "▒" * 7 in watched
        assert "in 59m" in watched or "in 60m" in watched
        assert "OPEN" in row_of(shown, f"{db_name}.tripped")
        assert "closed" in row_of(shown, f"{db_name}.healthy")
        assert "other" not in shown  # not a pool
        assert "3 pool(s) matching" in shown

        # Hand-outs between two refreshes show as a rate; a lock shows at the next refresh.
        pools["healthy"].update_one({"_id": 1}, {"$inc": {"count_use": 50}})
        pools["watched"].update_one(
            {"_id": 0},
            {
                "$set": {
                    "next_use": datetime.now(UTC) + timedelta(hours=1),
                    "lock_kind": "locked",
                    "locked_at": datetime.now(UTC),
                }
            },
        )
        shown = terminal.wait_for(
            "the rate and the lock",
            lambda s: (
                "13/20" in row_of(s, f"{db_name}.watched")
                and any(
                    cell.isdigit() and int(cell) > 0
                    for cell in row_of(s, f"{db_name}.healthy").replace("│", " ").split()
                    if cell not in ("10/10",)
                )
            ),
        )
        assert "▁" in row_of(shown, f"{db_name}.watched") or "▇" in row_of(
            shown, f"{db_name}.watched"
        )  # the sparkline moved

        terminal.keys("q")
        terminal.wait_for("top to quit on q", lambda s: "EXITED 0" in s, timeout=10)
    finally:
        terminal.close()


@pytest.mark.wire
def test_top_once_and_json_for_scripts(pools: Any, wire_url: str, db_name: str) -> None:
    code, out = cli("--mongo-url", wire_url, "top", f"{db_name}.w*", "--once")
    assert 0 == code
    assert f"{db_name}.watched" in out
    assert "healthy" not in out
    code, out = cli("--mongo-url", wire_url, "--json", "top", db_name)
    assert 0 == code
    rows = {row["pool"]: row for row in json.loads(out)}
    assert {f"{db_name}.{name}" for name in ("watched", "healthy", "tripped")} == set(rows)
    assert (14, 6, 20) == tuple(
        rows[f"{db_name}.watched"][k] for k in ("available", "locked", "total")
    )
