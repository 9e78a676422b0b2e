"""Telling session pools from other collections.

A pool is a collection whose documents carry session fields; an empty
collection counts as a pool (a new one, not filled yet). ``system.*``
collections, sessionpool's own metadata collections (``sessionpool.*``)
and the server's own databases never hold pools. Include and exclude shell
patterns narrow the choice: a pattern with a dot is matched against
``database.collection``, one without against the collection name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = [
    "METADATA_PREFIX",
    "SESSION_MARKERS",
    "SYSTEM_DATABASES",
    "PoolKey",
    "is_pool_name",
    "looks_like_session",
    "matches",
]

SESSION_MARKERS = ("session", "next_use", "last_use")
"""Fields that tell a session document from any other document."""

SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
"""The server's own databases."""

METADATA_PREFIX = "sessionpool."
"""Collections of this prefix hold sessionpool's own data (targets, breakers), never sessions."""


class PoolKey(NamedTuple):
    """A pool: one collection of one database."""

    database: str
    collection: str

    def __str__(self) -> str:
        return f"{self.database}.{self.collection}"


def looks_like_session(document: Mapping[str, object] | None) -> bool:
    """Whether a sample document is a session; ``None`` (an empty collection) counts."""
    return document is None or any(marker in document for marker in SESSION_MARKERS)


def is_pool_name(collection: str) -> bool:
    """Whether a collection of this name may be a pool (``system.*`` and metadata may not)."""
    return not collection.startswith(("system.", METADATA_PREFIX))


def matches(key: PoolKey, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Whether pool *key* passes the include/exclude shell patterns (and may be a pool)."""

    def hit(pattern: str) -> bool:
        name = str(key) if "." in pattern else key.collection
        return fnmatch.fnmatchcase(name, pattern)

    if not is_pool_name(key.collection):
        return False
    include = list(include)
    if include and not any(hit(pattern) for pattern in include):
        return False
    return not any(hit(pattern) for pattern in exclude)
