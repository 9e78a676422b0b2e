"""The indexes that serve the hand-out and the statistics, and why they have these keys.

**The hand-out steps over nothing.** A hand-out is one ``findAndModify``::

    filter: {active: {$ne: false}, $expr: <not locked at now>}   (see sessionlib.states)
    sort:   {ready_at: 1, last_use: 1}      limit 1

``ready_at`` is the session's *order key*: the instant it may next be handed
out, set by one rule (:mod:`sessionlib.order`) at the end of every write that
can change availability: the end of the hold on a hand-out or a success, the
end of the lock on a lock or block, :data:`~sessionlib.clock.NEVER` on
deactivation, now on a release or an activation. So the server walks the
order index ``{ready_at, last_use, next_use, active}`` from its start, and
on a pool with available sessions the first entries it reads are available:
it takes the first. No held, locked, blocked or inactive session lies on
that path, whatever their share of the pool. The filter bounds no range of
the index (it is the statistics' own definition of available, so a session
edited by hand is taken too, after those keyed earlier): an ask that finds
nothing reads the whole index.

*Least recently used* therefore means: the session that became available
the longest ago, that is whose last hold, lock or block ended first. With the
same hold for every hand-out (the usual case) that is the order of
``last_use``. A session that comes back from a 10-hour lock counts as used
when its lock ended, and joins the queue behind sessions idle for longer.

**Documents the seed library wrote** have no order key. They work as they are:
a missing key sorts first, so they are handed out first, by ``last_use``
(never used first), and each hand-out gives them their key. Until then the
server may step over those the seed holds or locks. ``sessionpool migrate``
gives every such document its key at once (from ``next_use`` or ``last_use``)
and drops the indexes earlier versions created. A seed worker that shares the
pool writes ``next_use`` without the key; the ``next_use`` condition, read
from the same index entry, keeps such sessions from being handed out while
held. A session changed by hand (``next_use`` cleared, ``active`` set back to
true) keeps an order key in the future: it is handed out after the sessions
keyed earlier, until ``release_expired_locks`` (the exporter's auto-release)
moves its key where the rule says.

**Statistics read each document once.** They group every document of the
pool by its state and read raw fields, ``scopes`` among them, which no
index holds: a collection scan, one per pool (the seed's statistics were
four). The state index ``{active, next_use, lock_kind, locked_at, count_use,
count_success}`` serves auto-release: its prefix ``{active, next_use}``
finds the ended locks.

Neither index grows the work of a write: a hand-out changes ``ready_at``,
``next_use`` and ``count_use`` anyway, so each index's entry is rewritten once
either way.

The sparse index ``{scopes}`` holds only the sessions with scoped locks, which
the scope statistics read (see :mod:`sessionlib.scopes`).

Subclasses that override ``default_sort`` or the filter hooks get their own
order and filters, as in the seed library; the order key is not used then.
"""

from __future__ import annotations

from pymongo import ASCENDING

from .fields import MongoFields
from .scopes import SCOPES

__all__ = [
    "LEGACY_INDEXES",
    "ORDER_INDEX",
    "SCOPES_INDEX",
    "SPARSE",
    "STATE_INDEX",
    "IndexKeys",
    "index_specs",
]

ORDER_INDEX = "sessionpool_order"
STATE_INDEX = "sessionpool_states"
SCOPES_INDEX = "sessionpool_scopes"
"""Sparse: only sessions with scoped locks, which the scope statistics read."""
LEGACY_INDEXES = ("sessionpool_handout", "sessionpool_state")
"""Names of indexes created by earlier versions; ``migrate()`` drops them."""

IndexKeys = list[tuple[str, int]]


def index_specs(fields: MongoFields) -> dict[str, IndexKeys]:
    """Return, by name, the indexes that ``MongoSessions.ensure_indexes`` creates."""
    return {
        ORDER_INDEX: [
            (fields.ready_at, ASCENDING),
            (fields.last_use, ASCENDING),
            (fields.next_use, ASCENDING),
            (fields.active, ASCENDING),
        ],
        STATE_INDEX: [
            (fields.active, ASCENDING),
            (fields.next_use, ASCENDING),
            (fields.lock_kind, ASCENDING),
            (fields.locked_at, ASCENDING),
            (fields.count_use, ASCENDING),
            (fields.count_success, ASCENDING),
        ],
        SCOPES_INDEX: [(SCOPES, ASCENDING)],
    }


SPARSE = frozenset({SCOPES_INDEX})
"""The indexes that hold only the documents with their field."""
