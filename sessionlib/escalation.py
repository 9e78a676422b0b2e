"""Escalating locks: repeated bans of the same session get longer, then become a block.

An opt-in :class:`EscalationPolicy` given to the pool (``escalation=``) changes
``session_lock(session)`` without a period: the *n*-th lock (counting from 0)
within the policy's window lasts ``base * factor**n`` with ±``jitter``,
capped at ``cap``; once ``block_after`` strikes have accrued, the lock
becomes a block for the pool's ``block_time``. Each success takes ``decay``
strikes off. A lock with an explicit period is not a strike.

All of it happens in the same single update: the periods of every possible
strike are computed here, as instants, and the server picks the one the
document's strike count selects. No date arithmetic runs on the server, so
mongomock-motor and every MongoDB version since 4.2 (pipeline updates) agree.

Defaults: ``base`` 1 minute, ``factor`` 2, ``cap`` 1 hour, ``jitter`` 0.1,
``block_after`` 5, ``window`` 24 hours, ``decay`` 1. So a session banned
again and again is locked for about 1, 2, 4 and 8 minutes, then blocked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import ceil_ms
from .exceptions import ConfigurationError

__all__ = ["EscalationPolicy"]

STRIKES = "strikes"
STRIKES_SINCE = "strikes_since"


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """How repeated locks of one session grow.

    Raises:
        ConfigurationError: a value is out of range.
    """

    base: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.1
    block_after: int = 5
    window: timedelta = timedelta(hours=24)
    decay: int = 1

    def __post_init__(self) -> None:
        if self.base <= timedelta() or self.cap < self.base:
            raise ConfigurationError("escalation needs 0 < base <= cap")
        if not 1.0 <= self.factor <= 100.0:
            raise ConfigurationError(f"escalation factor must be in [1, 100], not {self.factor}")
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigurationError(f"escalation jitter must be in [0, 1), not {self.jitter}")
        if not 1 <= self.block_after <= 100:
            raise ConfigurationError(
                f"escalation block_after must be in [1, 100], not {self.block_after}"
            )
        if self.window <= timedelta() or self.decay < 0:
            raise ConfigurationError("escalation needs a positive window and decay >= 0")

    def period(self, strikes: int, rng: random.Random | None = None) -> timedelta:
        """Return the lock period for a session that already has *strikes* strikes."""
        nominal = self.base.total_seconds() * self.factor**strikes
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return min(self.cap, timedelta(seconds=nominal * spread))

    def lock_pipeline(
        self,
        *,
        now: datetime,
        block_period: timedelta,
        fields: Any,
        rng: random.Random | None = None,
    ) -> list[dict[str, Any]]:
        """Return the pipeline update that records a strike and locks or blocks."""
        started = f"${STRIKES_SINCE}"
        expired = {
            "$or": [
                {"$eq": [{"$ifNull": [started, None]}, None]},
                {"$lt": [started, now - self.window]},
            ]
        }
        blocked = {"$gte": [f"${STRIKES}", self.block_after]}
        branches = [
            {
                "case": {"$eq": [f"${STRIKES}", strike]},
                "then": ceil_ms(now + self.period(strike - 1, rng)),
            }
            for strike in range(1, self.block_after)
        ]
        return [
            {
                "$set": {
                    STRIKES: {
                        "$cond": [expired, 1, {"$add": [{"$ifNull": [f"${STRIKES}", 0]}, 1]}]
                    },
                    STRIKES_SINCE: {"$cond": [expired, now, started]},
                }
            },
            {
                "$set": {
                    fields.next_use: {
                        "$switch": {"branches": branches, "default": ceil_ms(now + block_period)}
                    }
                    if branches
                    else ceil_ms(now + block_period),
                    fields.lock_kind: {"$cond": [blocked, "blocked", "locked"]},
                    fields.locked_at: now,
                }
            },
        ]

    def decay_expression(self) -> dict[str, Any]:
        """Return the expression that takes :attr:`decay` strikes off, not below zero."""
        return {"$max": [0, {"$subtract": [{"$ifNull": [f"${STRIKES}", 0]}, self.decay]}]}
