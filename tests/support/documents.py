"""Session documents as the seed library writes them, for tests that seed pools directly."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient


def session(number: int, **fields: Any) -> dict[str, Any]:
    """A fresh, available session ``number``, with *fields* overriding the defaults."""
    return {
        "_id": number,
        "session": {"token": f"t{number}"},
        "active": True,
        "next_use": None,
        "last_use": None,
        "count_use": 0,
        "count_success": 0,
        **fields,
    }


def seed_pool(url: str, db: str, collection: str, size: int) -> None:
    """Insert *size* fresh sessions into *db.collection* over the wire."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    client[db][collection].insert_many([session(n) for n in range(size)])
    client.close()
