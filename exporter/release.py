"""Auto-release: tidy expired locks on a schedule, and count them.

Off by default, because it writes. It visits only pools that the last refresh
saw with expired locks or ended scoped locks, or whose earliest lock has ended
since. One command per database (per 400 pools) counts what each of them has
to tidy, then one command per pool with work writes it all (see
:mod:`sessionlib.expiry`). The count also proves the collection still exists:
an update never brings back a collection someone dropped (SecantusDB creates
a collection on an update; MongoDB does not). The counts it keeps are
published by the next refresh, which alone writes the snapshot.

Two exporters may release the same pool at once: each session's update is
atomic and matches only expired locks, so each lock is released once, by one
of them. A write's reply has one total, so the split between kinds is the
count's, cut to the total: their counters add up to the locks released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from types import MappingProxyType

from sessionlib import RELEASED_KINDS, PoolKey, SessionPoolError, SessionStore

from .config import Config
from .snapshot import Released, Snapshot

__all__ = ["KINDS", "AutoRelease"]

KINDS = RELEASED_KINDS
"""Every ``kind`` a pool's released-locks counter has, from 0 on (``scope``: scoped locks)."""

log = logging.getLogger(__name__)


class AutoRelease:
    """Releases expired locks and keeps the running totals.

    Args:
        store: The connection to MongoDB.
        config: Concurrency and the per-pool time limit.
        latest: Returns the latest published snapshot (which pools have
            expired locks).
        clock: Returns now, to compare the pools' earliest unlocks with
            (default: the server's clock, as the store reads it).
    """

    def __init__(
        self,
        store: SessionStore,
        config: Config,
        latest: Callable[[], Snapshot],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.latest = latest
        self.clock = clock or store.clock
        self._totals: dict[tuple[PoolKey, str], int] = {}

    def totals(self, pools: Iterable[PoolKey]) -> Released:
        """Locks released since start, per pool of *pools* and lock kind.

        Every kind of every pool is there, at 0 until its first release: a
        counter that appeared at its first count would show no increase.
        """
        return MappingProxyType(
            {(key, kind): self._totals.get((key, kind), 0) for key in pools for kind in KINDS}
        )

    async def run(self) -> dict[PoolKey, dict[str, int]]:
        """Release expired locks where there are some; return what was released.

        A pool has work when the last refresh saw expired locks or ended
        scoped locks in it, or when its earliest lock has ended since; the
        others cost no command at all.
        """
        snapshot = self.latest()
        now = self.clock()
        wanted = [
            key
            for key, stats in snapshot.statistics.items()
            if stats.expired > 0
            or stats.scopes_ended > 0
            or (stats.next_unlock is not None and stats.next_unlock <= now)
        ]
        if not wanted or not snapshot.up:
            return {}
        outcomes = await self.store.release_expired(
            wanted, concurrency=self.config.concurrency, time_limit=self.config.pool_timeout
        )
        released: dict[PoolKey, dict[str, int]] = {}
        for key, outcome in outcomes.items():
            if isinstance(outcome, SessionPoolError):
                log.warning("releasing expired locks in %s failed: %s", key, outcome)
                continue
            released[key] = {kind: outcome.get(kind, 0) for kind in KINDS}
            for kind, count in released[key].items():
                self._totals[(key, kind)] = self._totals.get((key, kind), 0) + count
        total = sum(sum(by_kind.values()) for by_kind in released.values())
        if total:
            log.debug("released %d expired lock(s)", total)
        return released
