"""Pool statistics in one round trip.

The seed library sent four ``count`` commands per pool. Here one aggregation
with a ``$facet`` stage computes every figure from a single pass over the
collection: the state counts, the locked sessions split by kind, the usage
sums and the next unlock time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import as_utc
from .fields import LockKind, MongoFields

__all__ = ["PoolStatistics", "statistics_pipeline"]

Filter = dict[str, Any]


def statistics_pipeline(
    fields: MongoFields, *, available: Filter, locked: Filter, inactive: Filter
) -> list[dict[str, Any]]:
    """Return the aggregation pipeline computing a pool's statistics.

    *available*, *locked* and *inactive* are the query filters that define
    those states (see :meth:`sessionlib.client.MongoSessions.statistics`).
    """
    return [
        {
            "$facet": {
                "available": [{"$match": available}, {"$count": "n"}],
                "locked": [
                    {"$match": locked},
                    {
                        "$group": {
                            "_id": f"${fields.lock_kind}",
                            "n": {"$sum": 1},
                            "next_unlock": {"$min": f"${fields.next_use}"},
                            "oldest_lock": {"$min": f"${fields.locked_at}"},
                        }
                    },
                ],
                "inactive": [{"$match": inactive}, {"$count": "n"}],
                "totals": [
                    {
                        "$group": {
                            "_id": None,
                            "n": {"$sum": 1},
                            "uses": {"$sum": f"${fields.count_use}"},
                            "successes": {"$sum": f"${fields.count_success}"},
                        }
                    }
                ],
            }
        }
    ]


def _count(rows: list[dict[str, Any]]) -> int:
    return int(rows[0]["n"]) if rows else 0


def _earliest(values: list[Any]) -> datetime | None:
    instants = [as_utc(value) for value in values if isinstance(value, datetime)]
    return min(instants) if instants else None


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A pool's statistics at one instant.

    With the default filter the states partition the pool: ``available +
    in_use + locked + blocked + inactive + other == total``, where ``other``
    counts documents no state describes (only possible with a custom
    ``default_filter`` or a ``next_use`` that is not a date).
    """

    total: int
    available: int
    in_use: int
    locked: int
    blocked: int
    inactive: int
    uses: int
    successes: int
    next_unlock: datetime | None
    """When the earliest locked session becomes available again, or ``None``."""
    oldest_lock: datetime | None
    """When the oldest current lock was set (sessions locked by sessionlib only), or ``None``."""

    @property
    def unavailable(self) -> int:
        """Sessions that match the filter but are locked, of any kind."""
        return self.in_use + self.locked + self.blocked

    @property
    def other(self) -> int:
        """Documents in no state (see the class docstring); never negative."""
        parts = self.available + self.unavailable + self.inactive
        return max(0, self.total - parts)

    @classmethod
    def from_result(cls, result: list[dict[str, Any]]) -> PoolStatistics:
        """Build the statistics from the output of :func:`statistics_pipeline`."""
        facets = result[0] if result else {}
        by_kind = dict.fromkeys(LockKind.ALL, 0)
        for row in facets.get("locked", []):
            kind = row["_id"] if row["_id"] in by_kind else LockKind.LOCKED
            by_kind[kind] += int(row["n"])
        totals = facets.get("totals") or [{}]
        return cls(
            total=int(totals[0].get("n", 0)),
            available=_count(facets.get("available", [])),
            in_use=by_kind[LockKind.IN_USE],
            locked=by_kind[LockKind.LOCKED],
            blocked=by_kind[LockKind.BLOCKED],
            inactive=_count(facets.get("inactive", [])),
            uses=int(totals[0].get("uses", 0)),
            successes=int(totals[0].get("successes", 0)),
            next_unlock=_earliest([row["next_unlock"] for row in facets.get("locked", [])]),
            oldest_lock=_earliest([row["oldest_lock"] for row in facets.get("locked", [])]),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the seed's statistics dict, extended.

        The seed's keys keep their meaning: ``count_active`` (available),
        ``count_blocked`` (``active`` is ``False``: disabled for good),
        ``count_locked`` (locked, all kinds) and ``count_total``.
        """
        return {
            "count_active": self.available,
            "count_blocked": self.inactive,
            "count_locked": self.unavailable,
            "count_total": self.total,
            "locked_by_kind": {
                LockKind.IN_USE: self.in_use,
                LockKind.LOCKED: self.locked,
                LockKind.BLOCKED: self.blocked,
            },
            "sum_count_use": self.uses,
            "sum_count_success": self.successes,
            "next_unlock": self.next_unlock,
            "oldest_lock": self.oldest_lock,
        }
