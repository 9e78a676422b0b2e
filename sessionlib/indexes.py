"""The indexes that serve the hand-out query and the state counts.

Hand-out (``get_session``) is one ``findAndModify``::

    filter: {active: {$ne: false}, $or: [{next_use: null}, {next_use: {$lt: now}}]}
    sort:   {last_use: 1}      limit 1

The hand-out index is ``{last_use: 1, next_use: 1, active: 1}``:

* ``last_use`` comes first because it is the sort key. The filter has no
  equality condition (``$ne`` and ``$lt`` are ranges), so by the
  equality-sort-range rule the sort key leads. The server then walks the
  index in least-recently-used order (``null``, never used, sorts first),
  needs no in-memory sort, and stops at the first entry that matches: with
  ``limit 1`` that is usually the first key it reads.
* ``next_use`` and ``active`` follow so the server rejects locked and
  inactive entries from the index keys alone, without fetching their
  documents.

What that costs: sessions locked right after a hand-out have the newest
``last_use`` and sit at the far end of the walk, so they are never read.
Only sessions that are unavailable *and* older than the oldest available one
(long blocks, deactivated sessions) are stepped over, one index key each.

The state index ``{active: 1, next_use: 1}`` serves ``count_active``, the
locked/inactive counts and ``release_expired_locks``: each is a range on
those two keys, answered from the index.
"""

from __future__ import annotations

from pymongo import ASCENDING

from .fields import MongoFields

__all__ = ["HANDOUT_INDEX", "STATE_INDEX", "IndexKeys", "index_specs"]

HANDOUT_INDEX = "sessionpool_handout"
STATE_INDEX = "sessionpool_state"


IndexKeys = list[tuple[str, int]]


def index_specs(fields: MongoFields) -> dict[str, IndexKeys]:
    """Return, by name, the indexes that ``MongoSessions.ensure_indexes`` creates."""
    return {
        HANDOUT_INDEX: [
            (fields.last_use, ASCENDING),
            (fields.next_use, ASCENDING),
            (fields.active, ASCENDING),
        ],
        STATE_INDEX: [(fields.active, ASCENDING), (fields.next_use, ASCENDING)],
    }
