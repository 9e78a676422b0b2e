"""Telling session pools from other collections.

A pool is a collection whose documents carry session fields; an empty
collection counts as a pool (a new one, not filled yet). ``system.*``
collections and the server's own databases never hold pools.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["SESSION_MARKERS", "SYSTEM_DATABASES", "is_pool_name", "looks_like_session"]

SESSION_MARKERS = ("session", "next_use", "last_use")
"""Fields that tell a session document from any other document."""

SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
"""The server's own databases."""


def looks_like_session(document: Mapping[str, object] | None) -> bool:
    """Whether a sample document is a session; ``None`` (an empty collection) counts."""
    return document is None or any(marker in document for marker in SESSION_MARKERS)


def is_pool_name(collection: str) -> bool:
    """Whether a collection of this name may be a pool (``system.*`` may not)."""
    return not collection.startswith("system.")
