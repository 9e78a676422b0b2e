"""What a pool object remembers of its hand-outs: lost replies, and how long replies take.

See :mod:`sessionlib.replies` for what is done with them.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["LOST_GRACE", "REPLY_SAMPLES", "LostHolds"]

LOST_GRACE = 60.0
"""Seconds past its hold for which a lost hand-out's token is given back at each contact."""

REPLY_SAMPLES = 16
"""How many recent hand-out round trips the pool keeps, for their median."""


@dataclass
class LostHolds:
    """The lease tokens of hand-outs whose replies were lost, per pool (no I/O).

    One registry serves a pool object and its ``with_collection`` copies.
    """

    tokens: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    replies: deque[float] = field(default_factory=lambda: deque(maxlen=REPLY_SAMPLES))

    def replied(self, seconds: float) -> None:
        """Note that a hand-out's reply took *seconds*."""
        self.replies.append(seconds)

    def round_trip(self) -> timedelta:
        """The median of the recent hand-outs' round trips (0 before the first)."""
        median = statistics.median(self.replies) if self.replies else 0.0
        return timedelta(seconds=median)

    def remember(self, pool: tuple[str, str], token: str, hold: timedelta) -> None:
        """Keep *token* until :data:`LOST_GRACE` past a hold of *hold* from now."""
        deadline = time.monotonic() + hold.total_seconds() + LOST_GRACE
        self.tokens.setdefault(pool, {})[token] = deadline

    def pending(self, pool: tuple[str, str]) -> list[str]:
        """The tokens of *pool* still to give back (those past their deadline are dropped)."""
        kept = {t: d for t, d in self.tokens.get(pool, {}).items() if d > time.monotonic()}
        self.tokens[pool] = kept
        return list(kept)

    def forget(self, pool: tuple[str, str], token: str) -> None:
        """Drop *token*: its session was given back."""
        self.tokens.get(pool, {}).pop(token, None)
