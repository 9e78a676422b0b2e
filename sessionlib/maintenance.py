"""Maintenance of a pool: expired locks, the queue, indexes, and migration from the seed.

These are the daemon's and the operator's verbs; workers never need them.
"""

from __future__ import annotations

from typing import Any

from . import updates
from .core import PoolCore
from .indexes import LEGACY_INDEXES, SPARSE, index_specs
from .order import adopted_since, key_stage
from .scopes import expired_scopes_update
from .states import LOCK_KINDS

__all__ = [
    "ensure_indexes",
    "migrate",
    "release_expired_locks",
    "release_expired_scoped_locks",
    "requeue",
]


async def requeue(core: PoolCore) -> int:
    """Put sessions changed by hand back where the order key's rule says; return how many."""
    now = await core.now()
    query, update = updates.requeue(core.connection, available=core.not_locked(now), now=now)
    return (await core.connection.update_many(query, update)).modified_count


async def release_expired_locks(core: PoolCore) -> dict[str, int]:
    """Tidy the expired locks, per lock kind, and requeue sessions changed by hand.

    Returns:
        The number of sessions released, per lock kind.
    """
    now = await core.now()
    released: dict[str, int] = {}
    for kind in LOCK_KINDS:
        query, update = updates.release_expired(core.connection, kinds=(kind,), now=now)
        released[kind.value] = (await core.connection.update_many(query, update)).modified_count
    await requeue(core)
    return released


async def release_expired_scoped_locks(core: PoolCore) -> int:
    """Drop the scoped locks that have ended; return how many sessions had some."""
    now = await core.now()
    query, update = expired_scopes_update(now.at)
    return (await core.connection.update_many(query, update)).modified_count


async def ensure_indexes(core: PoolCore) -> list[str]:
    """Create the indexes hand-outs and statistics need, if missing; return their names."""
    return [
        await core.connection.create_index(keys, name=name, sparse=name in SPARSE)
        for name, keys in index_specs(core.connection).items()
    ]


async def migrate(core: PoolCore) -> dict[str, Any]:
    """Give keyless documents their order key and drop the indexes earlier versions made.

    The key follows :mod:`sessionlib.order`'s rule, with ``last_use`` as the
    instant since which a never-keyed session has been available.
    """
    fields = core.connection
    keyable = {
        fields.ready_at: {"$exists": False},
        "$or": [
            {fields.active: False},
            {fields.next_use: {"$type": "date"}},
            {fields.last_use: {"$type": "date"}},
        ],
    }
    # The rest keep no key: never used, never locked, they sort first.
    update = [key_stage(fields, adopted_since(fields.last_use))]
    keyed = await fields.update_many(keyable, update)
    present = await fields.index_information()
    dropped = [name for name in LEGACY_INDEXES if name in present]
    for name in dropped:
        await fields.drop_index(name)
    return {"order_keys": keyed.modified_count, "dropped_indexes": dropped}
