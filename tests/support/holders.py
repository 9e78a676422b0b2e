"""A worker process that holds sessions and proves, without any clock, that it held them alone.

Each holder, after a hand-out, inserts a marker ``{_id: <session _id>}``
into a side collection with the default unique ``_id`` index, keeps it while
it works, and deletes it before its hold can end: well before
``hold`` seconds have passed *on its own monotonic clock* since it asked for
the session (the hold starts no earlier than that). If another holder still
has its marker in, the insert fails with a duplicate key: two workers held
the session at once. No wall clock is read to decide it.

Run as ``python -m tests.support.holders`` with a JSON argument::

    {"url": ..., "db": ..., "collection": ..., "markers": ...,
     "hold": 2.0, "duration": 8.0, "kind": "sessionlib" | "seed",
     "trust_local_clock": false, "legacy_timezone": null,
     "after_marker": false}

``after_marker: true`` makes the holder wait, before its first hand-out,
until another holder has a marker in: the way to ask for a session at a
moment it is surely held, with no sleep and no clock.

``kind: "seed"`` hands out as the seed library does: naive local
``datetime.now()`` (run it with ``TZ=Europe/Moscow``), the seed's filter,
sort and update, in one ``findAndModify``. It prints one JSON line of results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from sessionlib import MongoSessions, utcnow

WORK_SHARE = 0.6  # of the hold, spent "working" with the marker in
MARKER_WAIT = 60.0  # seconds an ``after_marker`` holder waits for another's marker


class SeedHandOut:
    """The seed library's ``get_session``: naive local time, its filter, sort and update."""

    def __init__(self, collection: Any, hold: float) -> None:
        self.collection = collection
        self.hold = hold

    async def get_session(self) -> dict[str, Any] | None:
        now = datetime.now()  # naive local wall clock, as the seed wrote it
        document: dict[str, Any] | None = await self.collection.find_one_and_update(
            {
                "active": {"$ne": False},
                "$or": [{"next_use": None}, {"next_use": {"$lt": now}}],
            },
            {
                "$set": {"last_use": now, "next_use": now + timedelta(seconds=self.hold)},
                "$inc": {"count_use": 1},
            },
            sort=[("last_use", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return document


async def wait_for_marker(markers: Any, limit: float = MARKER_WAIT) -> bool:
    """Wait until some holder has a marker in; ``False`` if none came within *limit* s."""
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        if await markers.find_one({}) is not None:
            return True
        await asyncio.sleep(0.005)
    return False


async def run(options: dict[str, Any]) -> dict[str, Any]:
    hold = float(options["hold"])
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(options["url"], tz_aware=True)
    markers = client[options["db"]][options["markers"]]
    result: dict[str, Any] = {"pid": os.getpid(), "handouts": 0, "double": [], "offset": None}
    pool: MongoSessions | None = None
    if options["kind"] == "seed":
        source: Any = SeedHandOut(client[options["db"]][options["collection"]], hold)
    else:
        pool = await MongoSessions(
            db=options["db"],
            collection=options["collection"],
            client=client,
            timeout=10,
            clock=utcnow if options.get("trust_local_clock") else None,
            legacy_timezone=options.get("legacy_timezone"),
        ).connect()
        source = pool
        offset = getattr(pool.clock, "offset", None)
        result["offset"] = offset
    if options.get("after_marker"):
        result["waited"] = await wait_for_marker(markers)
    deadline = time.monotonic() + float(options["duration"])
    try:
        while time.monotonic() < deadline:
            asked = time.monotonic()
            session = (
                await source.get_session(next_use_delay=hold)
                if pool is not None
                else await source.get_session()
            )
            if session is None:
                await asyncio.sleep(0.01)
                continue
            result["handouts"] += 1
            try:
                await markers.insert_one({"_id": session["_id"], "by": os.getpid()})
            except DuplicateKeyError:
                holder = await markers.find_one({"_id": session["_id"]})
                result["double"].append([repr(session["_id"]), holder and holder.get("by")])
                continue
            # Work, then take the marker out while the hold surely lasts.
            await asyncio.sleep(max(0.0, asked + hold * WORK_SHARE - time.monotonic()))
            await markers.delete_one({"_id": session["_id"], "by": os.getpid()})
    finally:
        if pool is not None:
            await pool.close()
        await client.close()
    return result


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(options))), flush=True)


if __name__ == "__main__":
    main()
