"""Demo pools and simulated workers, to see every metric and dashboard panel move.

Used by the embedded default, and on its own by the compose demo::

    python -m exporter.demo --mongo-url mongodb://mongo:27017 --metrics-port 9100

It creates the ``sessionpool_demo`` pools if missing, then runs simulated
workers, until stopped. Each pool shows some of the library's features:

* ``telegram`` has an alert target of its own, and its workers ask and lock
  per scope (``search``, ``profile``): one source's endpoints that ban apart;
* ``truecaller`` has a usage budget (3 hand-outs per session per minute), so
  sessions wait in the ``budget`` lock kind;
* ``whatsapp`` has a circuit breaker, its workers take leases (fenced, with
  a wait), and every few minutes the "source" refuses everyone for a while:
  the breaker trips, the failing sessions are released instead of blocked,
  and a slow worker reports on a lease that was handed out again (stale).

All workers report successes, locks, blocks and deactivations, an activator
revives disabled sessions, and their telemetry (``PoolMetrics``) goes to the
registry given: the exporter's own in the embedded default, a port of its own
with ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from sessionlib import (
    Block,
    Budget,
    CircuitBreaker,
    Encryption,
    MongoSessions,
    NoSessionAvailableError,
    PoolMetrics,
    SessionPoolError,
    SessionStore,
    StaleLeaseError,
    Target,
    create_data_key,
    create_key_file,
    encrypt_pool,
    redact_url,
)

__all__ = ["DEMO_DATABASE", "DEMO_POOLS", "DemoTraffic", "main"]

log = logging.getLogger(__name__)

DEMO_DATABASE = "sessionpool_demo"
DEMO_POOLS = {"telegram": 60, "truecaller": 30, "whatsapp": 12}
"""Demo pools and their sizes; the smallest one tends to run low, as real pools do."""
DEMO_TARGETS = {"telegram": Target(min_available=30, min_available_ratio=0.5)}
"""Demo pools with an alert target of their own (the others use the rules' defaults)."""
DEMO_SCOPES = ("search", "profile")
"""The scopes ``telegram``'s workers ask and lock in."""
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "telegram": {},
    "truecaller": {"budgets": (Budget(uses=3, per={"minutes": 1}),)},
    "whatsapp": {
        "breaker": CircuitBreaker(
            min_sessions=3, min_share=0.2, window={"minutes": 1}, cooldown={"minutes": 1}
        ),
        "fenced": True,
    },
}
"""Each demo pool's settings beyond the connection's."""
OUTAGE_EVERY = 240.0
"""Seconds between the "source refuses everyone" episodes on ``whatsapp``."""
FIRST_OUTAGE = 60.0
"""Seconds after the start when the first episode begins."""
OUTAGE_FOR = 20.0
"""Seconds an episode lasts: long enough to trip the breaker."""


class SourceRefusedError(Exception):
    """What a simulated worker raises when the "source" refuses its session."""


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
        registry: Where the workers' telemetry goes; none when omitted.
        key_file: A master key file: the pools' payloads are then encrypted
            (the file and the data key are made if missing, and sessions
            stored in clear are encrypted in place at start).
    """

    def __init__(
        self,
        mongo_url: str,
        *,
        traffic: bool = True,
        seed: int | None = None,
        registry: CollectorRegistry | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.mongo_url = mongo_url
        self.encryption = Encryption(key_file=key_file) if key_file is not None else None
        self.traffic = traffic
        self.random = random.Random(seed)
        self.metrics = PoolMetrics(registry=registry) if registry is not None else None
        self._tasks: list[asyncio.Task[None]] = []
        self._store: SessionStore | None = None
        self._started = time.monotonic()

    async def start(self) -> None:
        """Create missing demo pools and start the workers.

        Raises:
            SessionPoolError: the server could not be used.
        """
        if self.encryption is not None:
            await self._encrypt_existing(self.encryption)
        store = await SessionStore.connect(
            self.mongo_url, app_name="sessionpool-demo", encryption=self.encryption
        )
        self._store = store
        pools = {
            name: store.pool(DEMO_DATABASE, name, metrics=self.metrics, **DEMO_SETTINGS[name])
            for name in DEMO_POOLS
        }
        try:
            for name, size in DEMO_POOLS.items():
                await self._fill(pools[name], name, size)
            for name, target in DEMO_TARGETS.items():
                await pools[name].set_target(target)
        except BaseException:
            await self.stop()
            raise
        if self.traffic:
            self._spawn(self._worker(pools["telegram"], DEMO_SCOPES))
            self._spawn(self._worker(pools["truecaller"], (None,)))
            self._spawn(self._leaser(pools["whatsapp"]))
            self._spawn(self._slow_worker(pools["whatsapp"]))
            self._spawn(self._activator(list(pools.values())))

    async def _encrypt_existing(self, encryption: Encryption) -> None:
        """Make the key file and data key if missing; encrypt what is stored in clear."""
        assert encryption.key_file is not None
        create_key_file(encryption.key_file)
        async with await SessionStore.connect(self.mongo_url, app_name="sessionpool-demo") as store:
            await create_data_key(encryption, store.client)
            for name in DEMO_POOLS:
                await encrypt_pool(store.pool(DEMO_DATABASE, name).core, encryption)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def _fill(self, pool: MongoSessions, name: str, size: int) -> None:
        present = await pool.count_documents({})
        for number in range(present, size):
            await pool.add({"_id": f"{name}-{number:03d}", "session": {"token": f"demo-{number}"}})
        await pool.ensure_indexes()

    def _outcome(self) -> str:
        return self.random.choices([o.name for o in OUTCOMES], [o.weight for o in OUTCOMES])[0]

    def _source_refuses(self) -> bool:
        """Whether the simulated source refuses everyone now (an episode of OUTAGE_FOR)."""
        elapsed = time.monotonic() - self._started - FIRST_OUTAGE
        return elapsed >= 0 and elapsed % OUTAGE_EVERY < OUTAGE_FOR

    async def _worker(self, pool: MongoSessions, scopes: Sequence[str | None]) -> None:
        uniform = self.random.uniform
        while True:
            try:
                scope = self.random.choice(scopes)
                session = await pool.get_session(next_use_delay=uniform(2, 6), scope=scope)
                if session is not None:
                    await asyncio.sleep(uniform(0.05, 0.3))  # the "request"
                    await self._report(pool, session, self._outcome(), scope)
                await asyncio.sleep(uniform(0.1, 0.5))
            except SessionPoolError as exc:
                log.debug("demo worker on %s: %s", pool.collection_name, exc)
                await asyncio.sleep(1)

    async def _report(
        self, pool: MongoSessions, session: dict[str, Any], outcome: str, scope: str | None
    ) -> None:
        uniform = self.random.uniform
        if outcome == "success":
            await pool.session_success(session, next_use_delay=uniform(1, 4))
        elif outcome == "lock":
            await pool.session_lock(session, {"seconds": uniform(20, 90)}, scope=scope)
        elif outcome == "block":
            await pool.session_block(session, {"minutes": uniform(2, 6)}, scope=scope)
        elif outcome == "inactive":
            await pool.session_inactive(session)

    async def _leaser(self, pool: MongoSessions) -> None:
        """Leases with a wait; a refusal blocks the session, unless the breaker is open."""
        on_error = {SourceRefusedError: Block({"minutes": 3})}
        uniform = self.random.uniform
        while True:
            try:
                async with pool.lease(wait=uniform(0.5, 2), on_error=on_error) as session:
                    await asyncio.sleep(uniform(0.05, 0.3))
                    if self._source_refuses():
                        raise SourceRefusedError(session["_id"])
            except (NoSessionAvailableError, SourceRefusedError):
                pass
            except SessionPoolError as exc:
                log.debug("demo leaser on %s: %s", pool.collection_name, exc)
                await asyncio.sleep(1)
            await asyncio.sleep(uniform(0.1, 0.5))

    async def _slow_worker(self, pool: MongoSessions) -> None:
        """Now and then holds a session past its hold; its late report is refused as stale."""
        while True:
            await asyncio.sleep(self.random.uniform(30, 90))
            with contextlib.suppress(SessionPoolError):
                late = await pool.get_session(next_use_delay=0.5)
                if late is None:
                    continue
                await asyncio.sleep(1)  # past its hold: another worker may take it
                await pool.get_session(next_use_delay=0.5, where={"_id": late["_id"]})
                with contextlib.suppress(StaleLeaseError):
                    await pool.session_success(late)

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


async def _run(mongo_url: str, metrics_port: int | None, key_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = None
    if metrics_port is not None:
        registry = CollectorRegistry()
        start_http_server(metrics_port, registry=registry)
        log.info("serving the workers' telemetry on port %d (/metrics)", metrics_port)
    demo = DemoTraffic(mongo_url, registry=registry, key_file=key_file)
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
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the workers' telemetry (sessionpool_worker_*) on PORT, all addresses",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="encrypt the demo pools' payloads with this master key file (made if missing)",
    )
    args = parser.parse_args(argv)
    if not args.mongo_url:
        parser.error("--mongo-url (or SESSIONPOOL_MONGO_URL) is required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_run(args.mongo_url, args.metrics_port, args.key_file))
    except SessionPoolError as exc:
        log.error("demo workers stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
