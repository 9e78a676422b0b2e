"""Maintenance of a pool: expired locks, the queue, indexes, and migration from the seed.

These are the daemon's and the operator's verbs; workers never need them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import expiry, updates
from .core import PoolCore
from .encryption import Encrypter, Encryption, is_ciphertext
from .indexes import LEGACY_INDEXES, SPARSE, index_specs
from .order import adopted_since, key_stage

__all__ = [
    "Encrypted",
    "encrypt_in_place",
    "encrypt_pool",
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

    Two commands: a count of each statement's work and one write of them all
    (see :mod:`sessionlib.expiry`).

    Returns:
        The number of sessions released, per lock kind.
    """
    now = await core.now()
    chosen = expiry.statements(core, now, (*expiry.KINDS, expiry.REQUEUED))
    rows = await core.connection.aggregate(expiry.counts_pipeline(chosen))
    counts = expiry.counts_of(rows[0] if rows else {}, list(chosen))
    released = await expiry.release(core, now, counts)
    return {kind: released[kind] for kind in expiry.KINDS}


async def release_expired_scoped_locks(core: PoolCore) -> int:
    """Drop the scoped locks that have ended; return how many sessions had some."""
    now = await core.now()
    query, update = expiry.statements(core, now, (expiry.SCOPED,))[expiry.SCOPED]
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


@dataclass
class Encrypted:
    """What :func:`encrypt_in_place` did, in sessions."""

    encrypted: int = 0
    """Had a field in clear, and now have it encrypted."""
    already: int = 0
    """Had every listed field encrypted (or none of them) already."""
    changed: int = 0
    """Were changed by someone else between the read and the write: left for the next run."""


async def encrypt_in_place(
    core: PoolCore, encrypter: Encrypter, progress: Callable[[int, int], None] | None = None
) -> Encrypted:
    """Encrypt the listed fields of a pool's sessions that hold them in clear, one at a time.

    *core* must be a pool opened **without** encryption, so that it reads
    ciphertext as it is stored. Each session is one compare-and-set update
    (the field still holds what was read), so hand-outs go on meanwhile, a
    session changed in between is left for the next run, and an interrupted
    run is finished by running it again. *progress* is called with the
    sessions done and the total.
    """
    fields = encrypter.encryption.fields
    projection = {"_id": 1, **dict.fromkeys(fields, 1)}
    documents = await core.connection.find({}, projection, sort=[("_id", 1)])
    outcome = Encrypted()
    for done, document in enumerate(documents, 1):
        clear = {f: document[f] for f in fields if f in document and not is_ciphertext(document[f])}
        if not clear:
            outcome.already += 1
        else:
            sealed = await encrypter.encrypt(clear)
            # Still what was read; $literal, as a payload written by another program may hold "$".
            unchanged = [{"$eq": [f"${f}", {"$literal": v}]} for f, v in clear.items()]
            query = {"_id": document["_id"], "$expr": {"$and": unchanged}}
            result = await core.connection.update_one(query, {"$set": sealed})
            if result.modified_count:
                outcome.encrypted += 1
            else:
                outcome.changed += 1
        if progress is not None:
            progress(done, len(documents))
    return outcome


async def encrypt_pool(
    core: PoolCore,
    encryption: Encryption,
    progress: Callable[[int, int], None] | None = None,
) -> Encrypted:
    """Encrypt in place what a pool holds in clear (``sessionpool encrypt``).

    *core* is the core of a pool opened without encryption (``pool.core``);
    the data key must exist (:func:`~sessionlib.encryption.create_data_key`).
    See :func:`encrypt_in_place`.

    Raises:
        EncryptionKeyError: the data key is missing or the key does not open it.
    """
    encrypter = Encrypter(encryption, core.connection.client)
    try:
        await encrypter.check()
        return await encrypt_in_place(core, encrypter, progress)
    finally:
        await encrypter.close()
