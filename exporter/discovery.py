"""Discovery: which collections are pools, kept up to date on its own schedule.

A collection is a pool when its name passes the include and exclude patterns
and its documents look like sessions (an empty one counts: a new pool). A
collection's verdict is remembered, so a discovery reads one document of each
new collection only. Discovery never publishes a snapshot: it hands the
refresh the list of pools and, when that list changed, asks for a refresh
(see :mod:`exporter.scheduler`).
"""

from __future__ import annotations

import logging

from sessionlib import PoolKey, SessionPoolError, SessionStore

from .config import Config

__all__ = ["Discovery"]

log = logging.getLogger(__name__)


class Discovery:
    """The pools the exporter watches.

    Args:
        store: The connection to MongoDB.
        config: Which databases and patterns; how many collections to sample at once.
    """

    def __init__(self, store: SessionStore, config: Config) -> None:
        self.store = store
        self.config = config
        self.pools: tuple[PoolKey, ...] = ()
        self.succeeded = False
        self._verdicts: dict[PoolKey, bool] = {}
        self._failing = False

    async def run(self) -> bool:
        """Look for new and dropped pools; return whether the list of pools changed.

        A failure leaves the known pools as they are; it is logged once per
        change from working to failing.
        """
        config = self.config
        try:
            candidates = await self.store.list_collections(
                config.databases or None, include=config.include, exclude=config.exclude
            )
            unknown = [key for key in candidates if key not in self._verdicts]
            classified = await self.store.classify(unknown)  # one command per database
            verdicts = [classified[key] for key in unknown]
            for key in unknown:
                if not classified[key]:
                    log.info("skipping %s: its documents do not look like sessions", key)
        except SessionPoolError as exc:
            if not self._failing:
                log.warning("pool discovery failed: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("pool discovery works again")
        self._failing = False
        self._verdicts = {key: self._verdicts[key] for key in candidates if key in self._verdicts}
        self._verdicts.update(zip(unknown, verdicts, strict=True))
        found = tuple(key for key in candidates if self._verdicts[key])
        self.succeeded = True
        if found == self.pools:
            return False
        added = sorted(set(found) - set(self.pools))
        dropped = sorted(set(self.pools) - set(found))
        self.pools = found
        log.info(
            "discovered %d pool(s): %d new, %d gone%s",
            len(found),
            len(added),
            len(dropped),
            f" ({', '.join(map(str, dropped))})" if dropped else "",
        )
        return True
