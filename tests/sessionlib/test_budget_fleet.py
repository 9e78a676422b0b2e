"""Worker processes hammer a pool with a budget; the server's clock moves between rounds.

Each hand-out is logged as ``(_id, fence)``. The fence numbers a session's
hand-outs on the server, so the log proves, without reading any clock, that
no hand-out was counted twice; a round lasts seconds, far less than the
budget's window, so any window holds a whole round, and no session may be
handed out more than ``uses`` times in one. Between rounds the server is
restarted on the same data under libfaketime, its clock moved ahead: half a
window lets nothing go, a whole window lets each session go ``uses`` times
again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import SecantusServer
from sessionlib import MongoSessions
from tests.support.documents import session
from tests.support.faketime import faketime_env
from tests.support.workers import run_workers, spend_budget

pytestmark = [pytest.mark.wire, pytest.mark.slow]

SESSIONS = 5
USES = 3
WINDOW = 3600.0  # seconds
PROCESSES = 4


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SecantusServer]:
    with SecantusServer(tmp_path / "db") as server:
        with MongoClient(server.url) as client:
            client.fleet.pool.insert_many([session(n) for n in range(SESSIONS)])
        yield server


def hammer(server: SecantusServer) -> Counter[Any]:
    """One round: every worker asks for 2 s; return hand-outs per session."""
    started = time.monotonic()
    results = run_workers(
        server.url,
        "fleet",
        "pool",
        PROCESSES,
        {"uses": USES, "per": WINDOW, "duration": 2.0},
        work=spend_budget,
    )
    assert time.monotonic() - started < WINDOW / 10  # a round fits in any window
    handouts = [tuple(h) for result in results for h in result["handouts"]]
    assert len(handouts) == len(set(handouts)), "one hand-out logged twice"
    return Counter(session_id for session_id, _ in handouts)


def restart_ahead(server: SecantusServer, shift: str) -> None:
    """Restart *server* on the same data and port with its clock *shift* ahead."""
    server.stop()
    server.env = faketime_env(shift)
    server.start()


async def budget_locked(url: str) -> int:
    async with MongoSessions(url, db="fleet", collection="pool") as pool:
        return (await pool.statistics()).budget


def test_no_session_exceeds_its_budget_in_any_window(server: SecantusServer) -> None:
    first = hammer(server)
    assert dict.fromkeys(range(SESSIONS), USES) == dict(first)
    assert SESSIONS == asyncio.run(budget_locked(server.url))  # counted as "budget"

    restart_ahead(server, f"+{WINDOW / 2:.0f}s")  # half a window on: still spent
    assert Counter() == hammer(server)

    restart_ahead(server, f"+{WINDOW + 60:.0f}s")  # a window on: each goes again
    assert dict.fromkeys(range(SESSIONS), USES) == dict(hammer(server))
