"""One process of the chaos soak: coroutines that take sessions, hold them alone, and report.

Run by :mod:`benchmarks.soak` as ``python -m benchmarks.soak_worker '<json>'``.
Each coroutine loops until the deadline:

1. hand-out: ``get_session`` then ``session_success`` / ``session_lock`` (the
   seed's call pattern, ``kind: "seed"``) or ``async with pool.lease(...)``
   (``kind: "lease"``);
2. proves it holds the session alone: inserts a marker ``{_id: <session>}``
   into a collection of **another** server (never stopped), whose unique
   ``_id`` refuses a second marker; takes it out before the hold can end,
   by its own monotonic clock (the hold starts no earlier than the ask);
3. records every event as one JSON line in its log file, flushed at once, so
   a worker killed mid-hold still tells what it did.

Times are ``time.monotonic()``, which every process of the machine shares
and libfaketime leaves alone, so the harness can line them up with its faults.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import IO, Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from sessionlib import Lock, MongoSessions, SessionPoolError, utcnow

WORK_SHARE = 0.6
"""Of the hold, spent working with the marker in."""


class FlakyError(Exception):
    """What the source says now and then: the lease maps it to a lock."""


class Log:
    """The worker's event log: one JSON object per line, flushed at once."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, event: str, **fields: Any) -> None:
        fields.update(event=event, at=time.monotonic(), pid=os.getpid())
        self.stream.write(json.dumps(fields, default=repr) + "\n")
        self.stream.flush()


async def held_alone(markers: Any, session_id: Any, asked: float, hold: float, log: Log) -> None:
    """Insert the session's marker, work, and take it out before the hold can end."""
    try:
        await markers.insert_one({"_id": session_id, "by": os.getpid()})
    except DuplicateKeyError:
        holder = await markers.find_one({"_id": session_id})
        log.write("double", session=session_id, other=holder and holder.get("by"))
        return
    await asyncio.sleep(max(0.0, asked + hold * WORK_SHARE - time.monotonic()))
    await markers.delete_one({"_id": session_id, "by": os.getpid()})


async def seed_style(pool: MongoSessions, markers: Any, hold: float, log: Log) -> None:
    asked = time.monotonic()
    session = await pool.get_session(next_use_delay=hold)
    if session is None:
        log.write("empty")
        await asyncio.sleep(0.05)
        return
    log.write("handout", session=session["_id"])
    await held_alone(markers, session["_id"], asked, hold, log)
    if random.random() < 0.1:
        await pool.session_lock(session, {"seconds": hold})
    else:
        await pool.session_success(session, next_use_delay=hold)


async def lease_style(pool: MongoSessions, markers: Any, hold: float, log: Log) -> None:
    asked = time.monotonic()
    on_error = {FlakyError: Lock({"seconds": hold})}
    try:
        async with pool.lease(hold=hold, wait=hold, on_error=on_error, success_delay=hold) as lease:
            log.write("handout", session=lease["_id"])
            await held_alone(markers, lease["_id"], asked, hold, log)
            if random.random() < 0.1:
                raise FlakyError
    except FlakyError:
        pass


async def coroutine(options: dict[str, Any], pool: MongoSessions, markers: Any, log: Log) -> None:
    hold = float(options["hold"])
    step = seed_style if options["kind"] == "seed" else lease_style
    while time.monotonic() < options["deadline"]:
        try:
            await step(pool, markers, hold, log)
        except SessionPoolError as exc:
            log.write("error", type=type(exc).__name__)
            await asyncio.sleep(0.1)
        except (PyMongoError, OSError) as exc:  # a marker write; or a driver error that escaped
            log.write("error", type=f"raw {type(exc).__name__}", where="worker")
            await asyncio.sleep(0.1)


async def run(options: dict[str, Any], log: Log) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        options["markers_url"], tz_aware=True
    )
    markers = client["soak"][options["markers"]]
    pool = MongoSessions(
        options["url"],
        db="soak",
        collection=options["collection"],
        timeout=float(options.get("timeout", 2.0)),
        max_allowed_reconnect=2,
        clock=utcnow if options.get("trust_local_clock") else None,
    )
    while time.monotonic() < options["deadline"]:
        try:
            await pool.connect()
            break
        except SessionPoolError as exc:
            log.write("error", type=type(exc).__name__, where="connect")
            await asyncio.sleep(0.5)
    log.write("started", kind=options["kind"], skew=options.get("skew"))
    try:
        await asyncio.gather(
            *(coroutine(options, pool, markers, log) for _ in range(int(options["coroutines"])))
        )
    finally:
        await pool.close()
        await client.close()
        log.write("stopped")


def main() -> None:
    options = json.loads(sys.argv[1])
    with open(options["log"], "a", encoding="utf-8") as stream:
        asyncio.run(run(options, Log(stream)))


if __name__ == "__main__":
    main()
