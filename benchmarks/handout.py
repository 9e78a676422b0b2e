"""The hand-out's path through its index, and what deciding on the server's clock costs.

**Sessions stepped over.** A hand-out is a ``findAndModify`` sorted by an
index; the server walks the index in that order and skips every entry that
fails the filter until one matches. How many it skips decides the cost on a
large pool, and SecantusDB, which ignores indexes, cannot show it. So it is
computed here exactly, from the documents: they are put in the order of the
index the hand-out's sort uses, and the entries before the first match are
counted. (The hand-out's filter is the statistics' definition of available,
so it bounds no range of the index: an ask that finds nothing reads every
entry, where the version before read those keyed up to now; in exchange a
session released by hand is taken at once.) The same is
done for the design before the order key (index ``{last_use, next_use,
active}``, no range). The pool is brought to a steady state by the
library's own updates: blocked and deactivated sessions, and hand-outs of
the rest.

**The server's clock.** A pool reads the server's clock with one ``hello``
every ``clock_sync_interval`` (60 s); hand-outs between readings cost nothing
more. The figures compare hand-outs deciding on the server's clock with ones
trusting the local clock, side by side.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sessionlib import LockKind, MongoSessions, Now, updates, utcnow

from .backends import Backend
from .report import Figure, Report

SECTION = "hand-out path"
NULL_FIRST = (0, datetime.min.replace(tzinfo=UTC))


def _key(value: Any) -> tuple[int, Any]:
    """Index order of the values these fields hold: null/missing first, then dates."""
    if value is None:
        return NULL_FIRST
    if isinstance(value, datetime):
        return (1, value if value.tzinfo else value.replace(tzinfo=UTC))
    return (2, repr(value))


def _available(doc: dict[str, Any], now: datetime) -> bool:
    next_use = doc.get("next_use")
    if next_use is not None:
        next_use = next_use if next_use.tzinfo else next_use.replace(tzinfo=UTC)
    return doc.get("active") is not False and (next_use is None or next_use < now)


def stepped_over(documents: list[dict[str, Any]], now: datetime, *, order_key: bool) -> int:
    """Entries the server reads and rejects before the first one a hand-out takes.

    *order_key*: the hand-out of this version (index ``{ready_at, last_use, ...}``);
    otherwise the earlier one (``{last_use, ...}``).
    """
    if order_key:
        walk = sorted(
            documents, key=lambda doc: (_key(doc.get("ready_at")), _key(doc.get("last_use")))
        )
    else:
        walk = sorted(documents, key=lambda doc: _key(doc.get("last_use")))
    for position, doc in enumerate(walk):
        if _available(doc, now):
            return position
    return len(walk)


async def _steady_pool(backend: Backend, size: int, blocked: float, inactive: float) -> Any:
    """A pool in the state a working one reaches, written by the library's own updates.

    Every session used once; then some blocked and some disabled; then the
    rest used again. Each step is the update the library sends for it
    (:mod:`sessionlib.updates`), applied to many sessions in one
    ``update_many``, so a pool of 30,000 is built in seconds on any backend.
    """
    collection = backend.database()[f"steady{size}"]
    pool = await MongoSessions(
        db=collection.database.name, collection=collection.name, client=backend.client
    ).connect()
    await collection.insert_many(
        [pool.new_document({"_id": n, "session": {}}) for n in range(size)]
    )
    now = utcnow()

    def hand_out(at: datetime) -> Any:
        return updates.hand_out(
            pool, now=Now.fixed(at), hold=timedelta(0), count_use=1, token="steady"
        )

    await collection.update_many({}, hand_out(now - timedelta(minutes=10)))
    banned = int(size * blocked)
    disabled = int(size * inactive)
    await collection.update_many(
        {"_id": {"$lt": banned}},
        updates.lock(
            pool, kind=LockKind.BLOCKED, now=Now.fixed(now), until=now + timedelta(days=1)
        ),
    )
    await collection.update_many(
        {"_id": {"$gte": banned, "$lt": banned + disabled}},
        updates.deactivate(pool, now=Now.fixed(now)),
    )
    await collection.update_many(
        {"_id": {"$gte": banned + disabled}}, hand_out(now - timedelta(minutes=1))
    )
    await pool.close()
    return collection


async def stepped_over_figures(
    backend: Backend, report: Report, sizes: list[int], shares: list[tuple[float, float]]
) -> None:
    """Sessions stepped over per hand-out, by pool size and share of blocked and inactive."""
    for size in sizes:
        for blocked, inactive in shares:
            collection = await _steady_pool(backend, size, blocked, inactive)
            documents = await collection.find({}).to_list(None)
            now = utcnow()
            label = f"{size} sessions, {blocked:.0%} blocked, {inactive:.0%} inactive"
            ours = stepped_over(documents, now, order_key=True)
            before = stepped_over(documents, now, order_key=False)
            report.add(
                backend.name, Figure(SECTION, f"stepped over, {label}", ours, "entries", "0")
            )
            report.add(
                backend.name,
                Figure(SECTION, f"stepped over before the order key, {label}", before, "entries"),
            )


async def clock_cost(backend: Backend, report: Report, operations: int, rounds: int) -> None:
    """Hand-outs on the server's clock against ones on the local clock, side by side."""
    if not backend.wire:
        report.add(backend.name, Figure(SECTION, "server clock cost", None, note="no server clock"))
        return
    collection = backend.database()["clock"]
    server = await MongoSessions(
        db=collection.database.name, collection=collection.name, client=backend.client
    ).connect()
    local = await MongoSessions(
        db=collection.database.name,
        collection=collection.name,
        client=backend.client,
        clock=utcnow,
    ).connect()
    await collection.insert_many(
        [server.new_document({"_id": n, "session": {}}) for n in range(50)]
    )
    ratios = []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        timings = []
        for pool in (server, local):
            started = time.perf_counter()
            for _ in range(operations):
                await pool.get_session(next_use_delay=0)
            timings.append(time.perf_counter() - started)
        ratios.append(timings[0] / timings[1])
    assert backend.counter is not None
    fast = await MongoSessions(
        db=collection.database.name,
        collection=collection.name,
        client=backend.client,
        clock_sync_interval=0.05,
    ).connect()
    backend.counter.reset()
    started = time.perf_counter()
    for _ in range(operations):
        await fast.get_session(next_use_delay=0)
    elapsed = time.perf_counter() - started
    hellos = backend.counter.names.count("hello")
    per_second = operations / elapsed
    report.add(
        backend.name,
        Figure(
            SECTION,
            "hand-out time, server clock / local clock",
            statistics.median(ratios),
            "ratio",
            "~1",
        ),
    )
    report.add(
        backend.name,
        Figure(
            SECTION,
            "commands per hand-out, server clock read every 60 s",
            1 + 1 / (60 * per_second),
            "commands",
            "1 + 1/(60 s x rate)",
        ),
    )
    report.add(
        backend.name,
        Figure(
            SECTION,
            f"hello commands in {operations} hand-outs, read every 0.05 s",
            hellos,
            "commands",
            note=f"{elapsed:.2f} s",
        ),
    )
