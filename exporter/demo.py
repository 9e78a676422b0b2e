"""Demo pools and simulated workers, to see the metrics move.

Used by the embedded default, and on its own by the compose demo::

    python -m exporter.demo --mongo-url mongodb://mongo:27017

It creates the ``sessionpool_demo`` pools if missing (``telegram`` with an
alert target of its own), then runs a few
simulated workers that take sessions and report successes, locks, blocks and
deactivations, and an activator that revives disabled sessions, until
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from sessionlib import MongoSessions, SessionPoolError, SessionStore, Target, redact_url

__all__ = ["DEMO_DATABASE", "DEMO_POOLS", "DemoTraffic", "main"]

log = logging.getLogger(__name__)

DEMO_DATABASE = "sessionpool_demo"
DEMO_POOLS = {"telegram": 60, "truecaller": 30, "whatsapp": 12}
"""Demo pools and their sizes; the smallest one tends to run low, as real pools do."""
DEMO_TARGETS = {"telegram": Target(min_available=30, min_available_ratio=0.5)}
"""Demo pools with an alert target of their own (the others use the rules' defaults)."""


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


class DemoTraffic:
    """Demo pools on the server at *mongo_url*, and simulated workers on them.

    Args:
        mongo_url: The server.
        traffic: Whether to simulate workers (otherwise only create the pools).
        seed: Seed of the simulation's random choices.
    """

    def __init__(self, mongo_url: str, *, traffic: bool = True, seed: int | None = None) -> None:
        self.mongo_url = mongo_url
        self.traffic = traffic
        self.random = random.Random(seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._store: SessionStore | None = None

    async def start(self) -> None:
        """Create missing demo pools and start the workers.

        Raises:
            SessionPoolError: the server could not be used.
        """
        store = await SessionStore.connect(self.mongo_url, app_name="sessionpool-demo")
        self._store = store
        pools = {name: store.pool(DEMO_DATABASE, name) for name in DEMO_POOLS}
        try:
            for name, size in DEMO_POOLS.items():
                await self._fill(pools[name], name, size)
            for name, target in DEMO_TARGETS.items():
                await pools[name].set_target(target)
        except BaseException:
            await self.stop()
            raise
        if self.traffic:
            for pool in pools.values():
                self._tasks.append(asyncio.create_task(self._worker(pool)))
            self._tasks.append(asyncio.create_task(self._activator(list(pools.values()))))

    async def _fill(self, pool: MongoSessions, name: str, size: int) -> None:
        present = await pool.count_documents({})
        for number in range(present, size):
            await pool.add({"_id": f"{name}-{number:03d}", "session": {"token": f"demo-{number}"}})
        await pool.ensure_indexes()

    async def _worker(self, pool: MongoSessions) -> None:
        outcomes = [o.name for o in OUTCOMES]
        weights = [o.weight for o in OUTCOMES]
        uniform = self.random.uniform
        while True:
            try:
                session = await pool.get_session(next_use_delay=uniform(2, 6))
                if session is not None:
                    await asyncio.sleep(uniform(0.05, 0.3))  # the "request"
                    outcome = self.random.choices(outcomes, weights)[0]
                    if outcome == "success":
                        await pool.session_success(session, next_use_delay=uniform(1, 4))
                    elif outcome == "lock":
                        await pool.session_lock(session, {"seconds": uniform(20, 90)})
                    elif outcome == "block":
                        await pool.session_block(session, {"minutes": uniform(2, 6)})
                    elif outcome == "inactive":
                        await pool.session_inactive(session)
                await asyncio.sleep(uniform(0.1, 0.5))
            except SessionPoolError as exc:
                log.debug("demo worker on %s: %s", pool.collection_name, exc)
                await asyncio.sleep(1)

    async def _activator(self, pools: list[MongoSessions]) -> None:
        # Revives disabled sessions now and then, as an activator service would.
        while True:
            await asyncio.sleep(self.random.uniform(20, 40))
            for target in pools:
                with contextlib.suppress(SessionPoolError):
                    for session in await target.find(
                        filter={"active": False}, projection={"_id": 1}
                    ):
                        await target.session_activate(session)

    async def stop(self) -> None:
        """Stop the workers and close the client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._store is not None:
            await self._store.close()
            self._store = None


async def _run(mongo_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    demo = DemoTraffic(mongo_url)
    await demo.start()
    log.info("simulating workers on %s (%s)", ", ".join(DEMO_POOLS), redact_url(mongo_url))
    try:
        await stop.wait()
    finally:
        await demo.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo workers until SIGTERM or SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.demo", description="Simulated workers on demo session pools."
    )
    parser.add_argument(
        "--mongo-url",
        default=os.environ.get("SESSIONPOOL_MONGO_URL"),
        help="MongoDB connection string (or SESSIONPOOL_MONGO_URL)",
    )
    args = parser.parse_args(argv)
    if not args.mongo_url:
        parser.error("--mongo-url (or SESSIONPOOL_MONGO_URL) is required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_run(args.mongo_url))
    except SessionPoolError as exc:
        log.error("demo workers stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
