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
A ``strikes`` field that is not a number (written by another program) counts
as zero strikes.

Defaults: ``base`` 1 minute, ``factor`` 2, ``cap`` 1 hour, ``jitter`` 0.1,
``block_after`` 5, ``window`` 24 hours, ``decay`` 1. So a session banned
again and again is locked for about 1, 2, 4 and 8 minutes, then blocked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .clock import shift
from .exceptions import ConfigurationError
from .now import Now
from .states import number_or_zero

__all__ = ["STRIKES", "STRIKES_SINCE", "EscalationPolicy"]

STRIKES = "strikes"
STRIKES_SINCE = "strikes_since"

_LONGEST = timedelta(days=365 * 100)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """How repeated locks of one session grow.

    Raises:
        ConfigurationError: a value is out of range (every lock it can produce
            must end within 100 years).
    """

    base: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.1
    block_after: int = 5
    window: timedelta = timedelta(hours=24)
    decay: int = 1

    def __post_init__(self) -> None:
        for name in ("base", "cap", "window"):
            if not isinstance(getattr(self, name), timedelta):
                raise ConfigurationError(f"escalation {name} must be a timedelta")
        if self.base <= timedelta() or self.cap < self.base or self.cap * 2 > _LONGEST:
            raise ConfigurationError("escalation needs 0 < base <= cap <= 50 years")
        if not _number_in(self.factor, 1.0, 100.0):
            raise ConfigurationError(f"escalation factor must be in [1, 100], not {self.factor}")
        if not _number_in(self.jitter, 0.0, 0.99):
            raise ConfigurationError(f"escalation jitter must be in [0, 1), not {self.jitter}")
        if not _int_in(self.block_after, 1, 100):
            raise ConfigurationError(
                f"escalation block_after must be in [1, 100], not {self.block_after}"
            )
        if not timedelta() < self.window <= _LONGEST:
            raise ConfigurationError("escalation window must be positive and at most 100 years")
        if not _int_in(self.decay, 0, 100):
            raise ConfigurationError(f"escalation decay must be in [0, 100], not {self.decay}")

    def period(self, strikes: int, rng: random.Random | None = None) -> timedelta:
        """Return the lock period for a session that already has *strikes* strikes."""
        nominal = self.base.total_seconds() * self.factor ** min(strikes, self.block_after)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return timedelta(seconds=min(self.cap.total_seconds(), nominal * spread))

    def lock_pipeline(
        self,
        *,
        now: Now,
        block_period: timedelta,
        fields: Any,
        rng: random.Random | None = None,
    ) -> list[dict[str, Any]]:
        """Return the pipeline update that records a strike and locks or blocks."""
        started = f"${STRIKES_SINCE}"
        strikes = number_or_zero(f"${STRIKES}")
        expired = {
            "$or": [
                {"$eq": [{"$ifNull": [started, None]}, None]},
                {"$lt": [started, now.store(shift(now.earliest, -self.window))]},
            ]
        }
        blocked = {"$gte": [f"${STRIKES}", self.block_after]}
        block_end = now.until(block_period)
        branches = [
            {
                "case": {"$eq": [f"${STRIKES}", strike]},
                "then": now.until(self.period(strike - 1, rng)),
            }
            for strike in range(1, self.block_after)
        ]
        lock_end: Any = (
            {"$switch": {"branches": branches, "default": block_end}} if branches else block_end
        )
        return [
            {
                "$set": {
                    STRIKES: {"$cond": [expired, 1, {"$add": [strikes, 1]}]},
                    STRIKES_SINCE: {"$cond": [expired, now.written, started]},
                }
            },
            {
                "$set": {
                    fields.next_use: lock_end,
                    fields.lock_kind: {"$cond": [blocked, "blocked", "locked"]},
                    fields.locked_at: now.written,
                }
            },
        ]

    def decay_expression(self) -> dict[str, Any]:
        """Return the expression that takes :attr:`decay` strikes off, not below zero."""
        return {"$max": [0, {"$subtract": [number_or_zero(f"${STRIKES}"), self.decay]}]}


def _number_in(value: object, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _int_in(value: object, low: int, high: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high
