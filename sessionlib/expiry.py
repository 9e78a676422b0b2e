"""Expired locks across pools: counted in one command per database, released in one per pool.

Tidying a pool is a handful of statements, one per thing to tidy (see
:func:`statements`): the ended locks of each kind, the scoped locks that
ended, and the sessions changed by hand that wait behind their order key.
The same statements are both read and written, so the count and the write
cannot disagree about what matches:

* :func:`counts_pipeline` counts what each statement would change, one
  ``$facet`` per pool; a :class:`~sessionlib.store.SessionStore` reads the
  pools of a database in one ``$unionWith`` command (a dropped pool reads as
  nothing to do, so it is never written to, and never brought back);
* :func:`release` sends a pool's statements with work as one ``update``
  command.

A write's reply has one total for all its statements (per-statement counts
need MongoDB 8's ``bulkWrite``), so the split between kinds is the read's,
fitted to the reply's total (:func:`fit`): exact unless another writer changed
the same sessions between the read and the write, and never more than the
server changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import UpdateMany

from . import updates
from .core import PoolCore
from .now import Now
from .reading import union_rows
from .scopes import expired_scopes_update
from .states import LOCK_KINDS
from .stats import POOL_FIELD, as_count

__all__ = [
    "KINDS",
    "RELEASED_KINDS",
    "REQUEUED",
    "SCOPED",
    "WORK",
    "counts_in",
    "counts_of",
    "counts_pipeline",
    "fit",
    "release",
    "statements",
]

SCOPED = "scope"
"""The statement that drops scoped locks that have ended."""
REQUEUED = "requeue"
"""The statement that puts sessions changed by hand back in the queue (not a lock)."""
KINDS = tuple(kind.value for kind in LOCK_KINDS)
"""The statements that tidy ended locks, one per lock kind."""
WORK = (*KINDS, SCOPED, REQUEUED)
"""Every statement, in the order a write sends them."""
RELEASED_KINDS = (*KINDS, SCOPED)
"""What :meth:`~sessionlib.store.SessionStore.release_expired` counts as released locks."""

Statement = tuple[dict[str, Any], Any]


def statements(core: PoolCore, now: Now, names: Sequence[str] = WORK) -> dict[str, Statement]:
    """The filter and update of each of *names*, judged at *now*."""
    fields = core.connection
    every: dict[str, Statement] = {
        kind.value: updates.release_expired(fields, kinds=(kind,), now=now) for kind in LOCK_KINDS
    }
    every[SCOPED] = expired_scopes_update(now.at)
    every[REQUEUED] = updates.requeue(fields, available=core.not_locked(now), now=now)
    return {name: every[name] for name in names}


def counts_pipeline(chosen: Mapping[str, Statement]) -> list[dict[str, Any]]:
    """One row: for each statement of *chosen*, how many sessions its filter matches."""
    count = {"$group": {"_id": None, "n": {"$sum": 1}}}
    facets = {name: [{"$match": query}, count] for name, (query, _) in chosen.items()}
    return [{"$facet": facets}]


def counts_of(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, int]:
    """The counts of a :func:`counts_pipeline` row (a statement matching nothing has none)."""
    counts: dict[str, int] = {}
    for name in names:
        found = row.get(name)
        first = found[0] if isinstance(found, list) and found else {}
        counts[name] = as_count(first.get("n", 0)) if isinstance(first, Mapping) else 0
    return counts


async def counts_in(
    core: PoolCore, collections: Sequence[str], now: Now
) -> dict[str, dict[str, int]]:
    """What each pool of *collections* (of the core's database) has to tidy, in one command.

    A collection that does not exist reads as nothing to do (see
    :func:`~sessionlib.reading.union_rows`).
    """
    pipeline = counts_pipeline(statements(core, now))
    rows = await union_rows(core, pipeline, collections)
    wanted = set(collections)
    return {row[POOL_FIELD]: counts_of(row, WORK) for row in rows if row.get(POOL_FIELD) in wanted}


def fit(counts: Mapping[str, int], total: int) -> dict[str, int]:
    """*counts* cut down to *total* when the write changed fewer: the largest give first.

    Fewer changed than were counted when another writer (a second exporter)
    released some of them in between; those are its to count.
    """
    fitted = dict(counts)
    shortfall = sum(fitted.values()) - max(0, total)
    while shortfall > 0:
        name = max(fitted, key=lambda key: fitted[key])
        taken = min(shortfall, fitted[name])
        fitted[name] -= taken
        shortfall -= taken
    return fitted


async def release(core: PoolCore, now: Now, counts: Mapping[str, int]) -> dict[str, int]:
    """Send the statements with work by *counts* (the read's), in one command; return each's.

    Statements that matched nothing are not sent; a pool with no work costs nothing.
    """
    busy = [name for name, count in counts.items() if count > 0]
    if not busy:
        return dict(counts)
    sent = statements(core, now, busy)
    result = await core.connection.bulk_write(
        [UpdateMany(query, update) for query, update in sent.values()], ordered=True
    )
    return {**counts, **fit({name: counts[name] for name in busy}, result.modified_count)}
