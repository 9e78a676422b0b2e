"""The embedded default: a local SecantusDB with demo pools and simulated workers.

With no MongoDB URL the exporter starts SecantusDB as a child process (data
in ``.sessionpool-demo/`` by default), fills a ``sessionpool_demo`` database
with a few pools, and runs a handful of simulated workers that take sessions
and report successes, locks, blocks and deactivations, while an activator
revives disabled sessions, so every metric and dashboard panel moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from sessionlib import MongoSessions, SessionPoolError

from .secantus import SecantusServer

__all__ = ["DEMO_DATABASE", "DEMO_POOLS", "EmbeddedDemo"]

log = logging.getLogger(__name__)

DEMO_DATABASE = "sessionpool_demo"
DEMO_POOLS = {"telegram": 60, "truecaller": 30, "whatsapp": 12}
"""Demo pools and their sizes; the smallest one tends to run low, as real pools do."""


@dataclass(frozen=True)
class Outcome:
    """What a simulated worker reports, with its probability weight."""

    name: str
    weight: float


OUTCOMES = (
    Outcome("success", 80),
    Outcome("lock", 10),
    Outcome("block", 3),
    Outcome("inactive", 2),
    Outcome("nothing", 5),
)


class EmbeddedDemo:
    """The demo server and its simulated traffic.

    Args:
        data_dir: Folder of the server's data; kept between runs.
        traffic: Whether to simulate workers.
        seed: Seed of the simulation's random choices.
    """

    def __init__(self, data_dir: Path, *, traffic: bool = True, seed: int | None = None) -> None:
        self.server = SecantusServer(Path(data_dir).resolve())
        self.traffic = traffic
        self.random = random.Random(seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: MongoSessions | None = None

    async def start(self) -> str:
        """Start the server, create missing demo pools, start the traffic; return the URL.

        Raises:
            ServerStartError: the server did not start.
        """
        await asyncio.to_thread(self.server.start)
        try:
            pool = await MongoSessions(
                self.server.url,
                db=DEMO_DATABASE,
                collection="telegram",
                app_name="sessionpool-demo",
            ).connect()
            self._pool = pool
            for name, size in DEMO_POOLS.items():
                await self._fill(pool.with_collection(name), name, size)
        except BaseException:
            await self.stop()
            raise
        if self.traffic:
            for name in DEMO_POOLS:
                self._tasks.append(asyncio.create_task(self._worker(pool.with_collection(name))))
            self._tasks.append(asyncio.create_task(self._activator(pool)))
        return self.server.url

    async def _fill(self, pool: MongoSessions, name: str, size: int) -> None:
        present = await pool.count_documents({})
        for number in range(present, size):
            await pool.add({"_id": f"{name}-{number:03d}", "session": {"token": f"demo-{number}"}})
        await pool.ensure_indexes()

    async def _worker(self, pool: MongoSessions) -> None:
        outcomes = [o.name for o in OUTCOMES]
        weights = [o.weight for o in OUTCOMES]
        while True:
            try:
                session = await pool.get_session(next_use_delay=self.random.uniform(2, 6))
                if session is not None:
                    await asyncio.sleep(self.random.uniform(0.05, 0.3))  # the "request"
                    outcome = self.random.choices(outcomes, weights)[0]
                    if outcome == "success":
                        await pool.session_success(
                            session, next_use_delay=self.random.uniform(1, 4)
                        )
                    elif outcome == "lock":
                        await pool.session_lock(session, {"seconds": self.random.uniform(20, 90)})
                    elif outcome == "block":
                        await pool.session_block(session, {"minutes": self.random.uniform(2, 6)})
                    elif outcome == "inactive":
                        await pool.session_inactive(session)
                await asyncio.sleep(self.random.uniform(0.1, 0.5))
            except SessionPoolError as exc:
                log.debug("demo worker on %s: %s", pool.collection_name, exc)
                await asyncio.sleep(1)

    async def _activator(self, pool: MongoSessions) -> None:
        # Revives disabled sessions now and then, as an activator service would.
        while True:
            await asyncio.sleep(self.random.uniform(20, 40))
            for name in DEMO_POOLS:
                target = pool.with_collection(name)
                with contextlib.suppress(SessionPoolError):
                    for session in await target.find(
                        filter={"active": False}, projection={"_id": 1}
                    ):
                        await target.session_activate(session)

    async def stop(self) -> None:
        """Stop the traffic, close the client and stop the server."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self.server.stop)
