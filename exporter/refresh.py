"""Discovery, refresh and auto-release: the exporter's work against MongoDB.

All MongoDB access goes through sessionlib. Each scheduled job ends by
publishing a new immutable :class:`~exporter.snapshot.Snapshot`; a pool that
fails or is slow counts an error and is left out of that snapshot without
holding up the others.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeVar

from sessionlib import MongoSessions, PoolStatistics, SessionPoolError
from sessionlib.discovery import SESSION_MARKERS, SYSTEM_DATABASES, is_pool_name, looks_like_session
from sessionlib.logger import redact_url

from .config import Config
from .snapshot import PoolKey, Snapshot, State

__all__ = ["Refresher", "matches"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Collection the root connection is nominally bound to; it is never read.
_ROOT_COLLECTION = "sessionpool"


def matches(key: PoolKey, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Whether pool *key* passes the include/exclude shell patterns.

    A pattern with a dot is matched against ``database.collection``, one
    without against the collection name. ``system.*`` collections never pass.
    """

    def hit(pattern: str) -> bool:
        name = str(key) if "." in pattern else key.collection
        return fnmatch.fnmatchcase(name, pattern)

    if not is_pool_name(key.collection):
        return False
    include = list(include)
    if include and not any(hit(pattern) for pattern in include):
        return False
    return not any(hit(pattern) for pattern in exclude)


class Refresher:
    """Finds the pools, refreshes their statistics and releases expired locks.

    Args:
        config: The exporter's settings.
        state: Where snapshots are published.
        wall_clock: Returns Unix time (a parameter so tests can fix it).
        client: A MongoDB client to use instead of one created from
            ``config.mongo_url`` (tests pass mongomock-motor's).
    """

    def __init__(
        self,
        config: Config,
        state: State,
        *,
        wall_clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        assert config.mongo_url or client, "the embedded server must be started first"
        self.config = config
        self.state = state
        self.wall_clock = wall_clock
        self.root = MongoSessions(
            config.mongo_url,
            db="admin",
            collection=_ROOT_COLLECTION,
            timeout=config.pool_timeout,
            max_allowed_reconnect=0,  # the next scheduled run is the retry
            app_name="sessionpool-exporter",
            client=client,
        )
        self.pools: dict[PoolKey, MongoSessions] = {}
        self._verdicts: dict[PoolKey, bool] = {}
        self._failing: set[PoolKey] = set()
        self._was_up: bool | None = None
        self._semaphore = asyncio.Semaphore(config.concurrency)

    # -- connection ---------------------------------------------------------------

    async def _reach(self) -> bool:
        """Connect if needed and ping; log only when reachability changes."""
        try:
            if not self.root.connected:
                await self.root.connect()
            else:
                await self.root.ping()
        except SessionPoolError as exc:
            if self._was_up is not False:
                log.warning(
                    "MongoDB at %s is unreachable: %s; serving sessionpool_up 0 and retrying "
                    "every %g s",
                    redact_url(self.config.mongo_url),
                    exc,
                    self.config.interval,
                )
            self._was_up = False
            return False
        if self._was_up is False:
            log.info("MongoDB at %s is reachable again", redact_url(self.config.mongo_url))
        self._was_up = True
        return True

    async def _bounded(self, call: Callable[[], Awaitable[T]]) -> T:
        async with self._semaphore, asyncio.timeout(self.config.pool_timeout):
            return await call()

    # -- discovery ------------------------------------------------------------------

    async def discover(self) -> None:
        """Find the pools; new ones are added, vanished ones dropped with their series.

        A failure leaves the known pools as they are; it is logged once per
        change of reachability.
        """
        if await self._reach() and await self._update_pools():
            self._publish(replace(self.state.snapshot, pools=tuple(sorted(self.pools))))

    async def _update_pools(self) -> bool:
        """Bring :attr:`pools` up to date; return whether the listing succeeded."""
        try:
            found = await self._list_pools()
        except (SessionPoolError, TimeoutError) as exc:
            log.warning("pool discovery failed: %s", exc or "timeout")
            return False
        added = [key for key in found if key not in self.pools]
        dropped = [key for key in self.pools if key not in found]
        for key in dropped:
            del self.pools[key]
        for key in sorted(added):
            self.pools[key] = self.root.with_collection(key.collection, db=key.database)
        self._verdicts = {key: verdict for key, verdict in self._verdicts.items() if key in found}
        self._failing &= set(self.pools)
        if added or dropped:
            log.info(
                "discovered %d pool(s): %d new, %d gone%s",
                len(self.pools),
                len(added),
                len(dropped),
                f" ({', '.join(map(str, sorted(dropped)))})" if dropped else "",
            )
        return True

    async def _list_pools(self) -> set[PoolKey]:
        databases = list(self.config.databases)
        if not databases:
            names = await self.root.list_database_names()
            databases = sorted(name for name in names if name not in SYSTEM_DATABASES)
        candidates: list[PoolKey] = []
        for database in databases:
            names = await self.root.with_collection(
                _ROOT_COLLECTION, db=database
            ).list_collection_names()
            candidates += [
                key
                for name in names
                if matches(key := PoolKey(database, name), self.config.include, self.config.exclude)
            ]
        unknown = [key for key in candidates if key not in self._verdicts]
        verdicts = await asyncio.gather(*(self._classify(key) for key in unknown))
        self._verdicts.update(zip(unknown, verdicts, strict=True))
        return {key for key in candidates if self._verdicts[key]}

    async def _classify(self, key: PoolKey) -> bool:
        pool = self.root.with_collection(key.collection, db=key.database)
        sample = await self._bounded(
            lambda: pool.find_one({}, projection=dict.fromkeys(SESSION_MARKERS, 1))
        )
        if not looks_like_session(sample):
            log.info("skipping %s: its documents do not look like sessions", key)
            return False
        return True

    # -- refresh ----------------------------------------------------------------------

    async def refresh(self) -> Snapshot:
        """Refresh every pool's statistics and publish the new snapshot.

        Returns:
            The published snapshot.
        """
        started = time.monotonic()
        up = await self._reach()
        if up and not self.pools:
            # Nothing known yet (first run, or MongoDB was down at start).
            await self._update_pools()
        results: dict[PoolKey, PoolStatistics | BaseException] = {}
        if up:
            keys = list(self.pools)
            outcomes = await asyncio.gather(
                *(self._pool_statistics(self.pools[key]) for key in keys), return_exceptions=True
            )
            results = dict(zip(keys, outcomes, strict=True))
        return self._publish_refresh(up, results, time.monotonic() - started)

    async def _pool_statistics(self, pool: MongoSessions) -> PoolStatistics:
        return await self._bounded(lambda: pool.statistics(offset=self.config.active_offset))

    def _publish_refresh(
        self,
        up: bool,
        results: dict[PoolKey, PoolStatistics | BaseException],
        duration: float,
    ) -> Snapshot:
        now = self.wall_clock()
        previous = self.state.snapshot
        pools = tuple(sorted(self.pools))
        statistics = {k: v for k, v in results.items() if isinstance(v, PoolStatistics)}
        failed = [key for key in pools if key not in statistics]
        for outcome in results.values():
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, SessionPoolError | TimeoutError
            ):
                raise outcome  # a bug, not an outage: let the scheduler log it
        self._log_pool_changes(failed if up else [], results)
        errors = {key: previous.errors.get(key, 0) for key in pools}
        for key in failed:
            errors[key] += 1
        last_success = {
            key: previous.last_success[key] for key in pools if key in previous.last_success
        }
        last_success.update(dict.fromkeys(statistics, now))
        snapshot = Snapshot(
            taken_at=now,
            duration=duration,
            up=up,
            pools=pools,
            statistics=MappingProxyType(statistics),
            last_success=MappingProxyType(last_success),
            errors=MappingProxyType(errors),
        )
        return self._publish(snapshot)  # which carries the release counters

    def _log_pool_changes(
        self, failed: list[PoolKey], results: dict[PoolKey, PoolStatistics | BaseException]
    ) -> None:
        for key in failed:
            if key not in self._failing:
                outcome = results.get(key)
                reason = (
                    f"no answer within {self.config.pool_timeout:g} s"
                    if isinstance(outcome, TimeoutError)
                    else str(outcome)
                )
                log.warning("refreshing pool %s failed: %s", key, reason)
        for key in self._failing - set(failed):
            if key in self.pools:
                log.info("pool %s refreshes again", key)
        self._failing = set(failed)

    def _publish(self, snapshot: Snapshot) -> Snapshot:
        # Keep only the series of pools that still exist; carry the release
        # counters, which the auto-release job may have advanced meanwhile.
        current = self.state.snapshot
        keep = set(snapshot.pools)
        self.state.snapshot = replace(
            snapshot,
            statistics=MappingProxyType(
                {k: v for k, v in snapshot.statistics.items() if k in keep}
            ),
            last_success=MappingProxyType(
                {k: v for k, v in snapshot.last_success.items() if k in keep}
            ),
            errors=MappingProxyType({k: v for k, v in snapshot.errors.items() if k in keep}),
            released=MappingProxyType({k: v for k, v in current.released.items() if k[0] in keep}),
        )
        return self.state.snapshot

    # -- auto-release -------------------------------------------------------------------

    async def release(self) -> dict[PoolKey, dict[str, int]]:
        """Release expired locks in every pool and add them to the counters.

        Returns:
            What was released, per pool and lock kind (failed pools left out).
        """
        if not self.pools or not await self._reach():
            return {}
        keys = list(self.pools)
        outcomes = await asyncio.gather(
            *(self._bounded(self.pools[key].release_expired_locks) for key in keys),
            return_exceptions=True,
        )
        released: dict[PoolKey, dict[str, int]] = {}
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, SessionPoolError | TimeoutError):
                log.warning("releasing expired locks in %s failed: %s", key, outcome or "timeout")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                released[key] = outcome
        current = self.state.snapshot
        counters = dict(current.released)
        for key, by_kind in released.items():
            for kind, count in by_kind.items():
                counters[(key, kind)] = counters.get((key, kind), 0) + count
        self.state.snapshot = replace(current, released=MappingProxyType(counters))
        total = sum(sum(by_kind.values()) for by_kind in released.values())
        if total:
            log.debug("released %d expired lock(s)", total)
        return released

    async def close(self) -> None:
        """Close the MongoDB client."""
        await self.root.close()
