"""The seed's error situations, run where ``isphere_exceptions`` can be imported.

``python -m tests.support.isphere_scenarios URL CLOSED_URL DB SERVER_PID``
prints one JSON object: for each situation, which ``except`` clauses of seed
worker code catch the error, and what sessionlib's own error looks like.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sessionlib import MongoSessions, SessionPoolError


def clauses(error: BaseException) -> dict[str, Any]:
    from isphere_exceptions import ISphereException, mongo, session

    seed = {
        name: isinstance(error, getattr(module, name))
        for module, names in (
            (
                mongo,
                (
                    "MongoConfigurationInvalid",
                    "MongoConnection",
                    "MongoTimeout",
                    "MongoOperationFailure",
                    "MongoErrorInterface",
                ),
            ),
            (session, ("SessionEmpty",)),
        )
        for name in names
    }
    return {
        **seed,
        "ISphereException": isinstance(error, ISphereException),
        "SessionPoolError": isinstance(error, SessionPoolError),
        "class": type(error).__name__,
        "message": str(error),
        "cause": type(error.__cause__).__name__ if error.__cause__ else None,
        "code": getattr(error, "code", None),
    }


async def caught(call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    try:
        await call()
    except Exception as exc:
        return clauses(exc)
    return {"raised": False}


def stop(pid: int) -> None:
    """SIGSTOP *pid* and wait until it is really stopped (the signal is delivered later)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise RuntimeError(f"process {pid} did not stop")


async def main(url: str, closed: str, db: str, server_pid: int) -> dict[str, Any]:
    results: dict[str, Any] = {}

    async def no_url() -> None:
        MongoSessions(db="pools", collection="tg")

    async def no_db() -> None:
        MongoSessions(url, collection="tg")

    async def closed_port() -> None:
        await MongoSessions(
            closed, db=db, collection="tg", timeout=2, allow_reconnect=False
        ).connect()

    results["no_url"] = await caught(no_url)
    results["no_db"] = await caught(no_db)
    results["closed_port"] = await caught(closed_port)

    pool = await MongoSessions(url, db=db, collection="tg", timeout=1).connect()
    await pool.add({"_id": "same", "session": {}})
    results["duplicate"] = await caught(lambda: pool.add({"_id": "same", "session": {}}))

    async def empty() -> None:
        async with pool.lease(wait=0):
            pass

    await pool.session_block({"_id": "same"})
    results["empty"] = await caught(empty)
    stop(server_pid)
    try:
        results["hang"] = await caught(pool.count_active)
    finally:
        os.kill(server_pid, signal.SIGCONT)
    await pool.close()
    return results


if __name__ == "__main__":
    url, closed, db, pid = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(url, closed, db, int(pid)))))
