"""Reading a pool: counts, listings, history, and statistics for one pool or many.

Statistics have one path (:func:`statistics_of`), whether one pool asks for
its own or a :class:`~sessionlib.store.SessionStore` for a database's pools:
each pool's base pipeline (the states, grouped; or, for a pool whose hooks
replace the states, the seed's filters in a ``$facet``), its scope figures,
and its metadata (target and breaker), judged at one :class:`~sessionlib.now.Now`.
On a real server that is one ``$unionWith`` command for the pools and their
metadata, and one more for the scope figures of the pools whose sessions have
scoped locks, if any (the base rows say which); in process (mongomock has no
``$unionWith``) the same pipelines run one by one. A pool whose rows the raw
read cannot be sure of is read once more, exactly
(:func:`~sessionlib.stats.needs_exact`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from . import updates
from .budgets import spent_expression
from .core import PoolCore
from .driver import is_in_process
from .metadata import METADATA_COLLECTION
from .now import Now
from .scopes import scope_free_filter, scope_locked_expression, scope_statistics_pipeline
from .states import available_expression, combine
from .stats import (
    METADATA_PART,
    PART_FIELD,
    POOL_FIELD,
    SCOPES_PART,
    PoolStatistics,
    facet_pipeline,
    grouped_pipeline,
    metadata_pipeline,
    needs_exact,
    union_pipeline,
)

__all__ = [
    "count_active",
    "get_sessions",
    "history",
    "next_available_at",
    "scope_rows",
    "statistics_command",
    "statistics_of",
    "union_rows",
]

Rows = list[dict[str, Any]]

ROWS_PER_REPLY = 1_000_000
"""The first batch a statistics command asks for: all its rows (the server caps it at 16 MiB)."""
Build = Callable[[Sequence[Mapping[str, Any]], Callable[[datetime], datetime]], PoolStatistics]


async def count_active(core: PoolCore, offset: float) -> int:
    """The number of sessions the hand-out may take at now + *offset* seconds."""
    now = (await core.now()).shifted(offset)
    return await core.connection.count_stats(core.not_locked(now))


async def get_sessions(core: PoolCore) -> list[dict[str, Any]]:
    """Every session matching the default filter, with the projection."""
    connection = core.connection
    documents = await connection.find(
        filter=connection.default_filter, projection=connection.projection
    )
    return [core.load(document) for document in documents]


async def next_available_at(core: PoolCore) -> datetime | None:
    """When the earliest locked session becomes available, or ``None``."""
    now = await core.now()
    next_use = core.connection.next_use
    document = await core.connection.find_one(
        core.locked(now), projection={next_use: 1}, sort=[(next_use, ASCENDING)]
    )
    value = None if document is None else document.get(next_use)
    return now.load(value) if isinstance(value, datetime) else None


async def history(core: PoolCore, session: Mapping[str, Any]) -> dict[str, Any] | None:
    """The session's last reason and history (oldest first), or ``None`` if absent."""
    document = await core.connection.find_one(
        core.one(session), projection={updates.REASON: 1, updates.HISTORY: 1}
    )
    if document is None:
        return None
    entries = document.get(updates.HISTORY)
    kept = (
        [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []
    )
    for entry in kept:
        core.time.load_fields(entry, ("at",))
    return {"_id": document["_id"], "reason": document.get(updates.REASON), "history": kept}


def _scopes(core: PoolCore, now: Now) -> Rows:
    """The scope figures' pipeline at *now*."""
    return scope_statistics_pipeline(now.at, available_expression(core.connection, now.at))


async def scope_rows(core: PoolCore, now: Now) -> Rows:
    """The rows of :func:`~sessionlib.scopes.scope_statistics_pipeline` for the pool at *now*."""
    return await core.connection.aggregate(_scopes(core, now))


def _plan(
    core: PoolCore, now: Now, scope: str | None, *, exact: bool = False
) -> tuple[Rows, Build]:
    """The base statistics pipeline of the pool's kind, and how its rows become statistics.

    *exact*: checked per document (see :func:`~sessionlib.stats.grouped_pipeline`).
    """
    fields, at = core.connection, now.at
    if core.order_key:
        scoped = scope_locked_expression(scope, at) if scope is not None else None
        spent = spent_expression(core.options.budgets, scope=scope, now=now)
        # mongomock compares no mixed types: its rows are read exactly, at once.
        exact = exact or is_in_process(fields.client)
        pipeline = grouped_pipeline(
            fields, at, scope_locked=scoped, budget_spent=spent, exact=exact
        )
        return pipeline, PoolStatistics.from_groups
    available = core.not_locked(now)
    if scope is not None:
        available = combine(available, scope_free_filter(scope, at))
    pipeline = facet_pipeline(
        fields, available=available, locked=core.locked(now), inactive={fields.active: False}
    )
    return pipeline, PoolStatistics.from_facets


async def _rows_in_process(
    core: PoolCore, pipeline: Rows, collections: Sequence[str], part: str | None, metadata: bool
) -> Rows:
    """:func:`union_pipeline`'s rows, one command per pool (no ``$unionWith`` in process)."""
    database = core.connection.db_name
    tag = {} if part is None else {PART_FIELD: part}
    rows: Rows = []
    for name in collections:
        pool = core.connection.bound_to(database, name)
        rows += [{**row, POOL_FIELD: name, **tag} for row in await pool.aggregate(pipeline)]
    if metadata:
        found = core.connection.bound_to(database, METADATA_COLLECTION)
        rows += await found.aggregate(metadata_pipeline(collections))
    return rows


async def union_rows(
    core: PoolCore,
    pipeline: Rows,
    collections: Sequence[str],
    *,
    part: str | None = None,
    metadata: bool = False,
) -> Rows:
    """*pipeline* on each of *collections*, each row tagged with its pool.

    One command (:func:`~sessionlib.stats.union_pipeline`), all its rows in
    the first reply; in process (mongomock has no ``$unionWith``), one per pool.
    """
    if is_in_process(core.connection.client):
        return await _rows_in_process(core, pipeline, collections, part, metadata)
    union = union_pipeline(pipeline, collections, part=part, metadata=metadata)
    # Every row in the first reply (at most 16 MiB): no getMore per command.
    return await core.connection.aggregate(union, batchSize=ROWS_PER_REPLY)


def statistics_command(core: PoolCore, collections: Sequence[str], now: Now) -> Rows:
    """The pipeline of :func:`statistics_of`'s first command, built without I/O (for sizing)."""
    base, _ = _plan(core, now, None)
    return union_pipeline(base, collections, metadata=True)


async def statistics_of(
    core: PoolCore, collections: Sequence[str], now: Now, *, scope: str | None = None
) -> dict[str, PoolStatistics]:
    """The statistics of *collections* (pools of the core's database) at *now*.

    *core* is bound to the first of them; every pool is read with its settings.

    Raises:
        DatabaseError: the server failed.
    """
    base, build = _plan(core, now, scope)
    rows = await union_rows(core, base, collections, metadata=True)
    scoped = sorted({row[POOL_FIELD] for row in rows if row.get("scoped") is True})
    if not core.order_key:  # the seed's filters say nothing of scopes
        scoped = list(collections)
    if scoped:  # only pools with scoped locks have scope figures to read
        rows += await union_rows(core, _scopes(core, now), scoped, part=SCOPES_PART)
    parts: dict[str, tuple[Rows, Rows]] = {name: ([], []) for name in collections}
    metadata: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = row.get(POOL_FIELD)
        if not isinstance(name, str) or name not in parts:
            continue
        part = row.get(PART_FIELD)
        if part == METADATA_PART:
            metadata[name] = row
        else:
            parts[name][1 if part == SCOPES_PART else 0].append(row)
    for name, (pool_rows, _) in parts.items():
        if needs_exact(pool_rows):  # a counter or a lock time the raw read cannot be sure of
            exact, _ = _plan(core, now, scope, exact=True)
            pool = core.connection.bound_to(core.connection.db_name, name)
            pool_rows[:] = await pool.aggregate(exact)
    return {
        name: build(pool_rows, now.load)
        .with_scopes(scope_rows)
        .with_metadata(metadata.get(name), now)
        for name, (pool_rows, scope_rows) in parts.items()
    }
