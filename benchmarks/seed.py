"""The seed library's documented design, re-created as the baseline.

From the seed's documentation: statistics are four separate count queries,
times are naive local time (``datetime.now()``), and no indexes are created.
Only what the benchmarks compare is re-created: the hand-out and statistics.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument


class SeedPool:
    """The seed's ``get_session`` and ``aggregate_statistics`` on a raw collection."""

    def __init__(self, collection: Any, next_use_delay: float = 3) -> None:
        self.collection = collection
        self.next_use_delay = next_use_delay

    @staticmethod
    def _now() -> datetime:
        return datetime.now()  # naive local time, as the seed wrote it

    def _exclude_lock(self) -> dict[str, Any]:
        return {"$or": [{"next_use": None}, {"next_use": {"$lt": self._now()}}]}

    async def get_session(self) -> dict[str, Any] | None:
        now = self._now()
        document: dict[str, Any] | None = await self.collection.find_one_and_update(
            {"active": {"$ne": False}, **self._exclude_lock()},
            {
                "$set": {"last_use": now, "next_use": now + timedelta(seconds=self.next_use_delay)},
                "$inc": {"count_use": 1},
            },
            sort=[("last_use", 1)],
            return_document=ReturnDocument.AFTER,
        )
        return document

    async def aggregate_statistics(self) -> dict[str, int]:
        count = self.collection.count_documents
        default = {"active": {"$ne": False}}
        return {
            "count_active": await count({**default, **self._exclude_lock()}),
            "count_blocked": await count({"active": False}),
            "count_locked": await count({**default, "next_use": {"$gt": self._now()}}),
            "count_total": await count({}),
        }
