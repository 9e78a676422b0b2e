"""Exponential backoff with jitter: the one rule for every pause between two attempts.

A fleet of workers that fails at the same moment must not retry in lockstep,
so each pause is drawn between half and all of the exponential step::

    pause(attempt) = uniform(0.5, 1) * min(cap, base * 2**attempt)

Two schedules use it: reconnecting to an unreachable server
(:data:`RECONNECT`) and polling for a free session (:data:`WAITING`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RECONNECT", "WAITING", "Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses that double from *base* seconds up to *cap* seconds, with jitter."""

    base: float
    cap: float

    def pause(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the pause in seconds before attempt number *attempt* + 1 (from 0)."""
        step = min(self.cap, self.base * 2.0 ** min(attempt, 64))
        return (rng or random).uniform(0.5, 1.0) * step


RECONNECT = Backoff(base=0.1, cap=2.0)
"""Between reconnect attempts to an unreachable server: 0.1 s doubling to 2 s."""

WAITING = Backoff(base=0.05, cap=2.0)
"""Between polls for a free session in ``lease(wait=...)``: 50 ms doubling to 2 s."""
