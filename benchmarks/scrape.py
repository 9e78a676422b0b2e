"""The exporter: refresh cost against the seed's design, scrape latency, memory."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from exporter.config import Config
from exporter.daemon import open_store
from exporter.discovery import Discovery
from exporter.refresh import Refresher
from exporter.secantus import free_port
from exporter.snapshot import State

from .backends import Backend
from .report import Figure, Report
from .seed import SeedPool

CONCURRENCY = 16


async def make_pools(database: Any, count: int, size: int = 5) -> None:
    for number in range(count):
        await database[f"pool{number:04d}"].insert_many(
            [
                {
                    "_id": n,
                    "session": {},
                    "active": True,
                    "next_use": None,
                    "last_use": None,
                    "count_use": n,
                    "count_success": 0,
                }
                for n in range(size)
            ]
        )


async def refresh_commands(
    backend: Backend, report: Report, layouts: list[tuple[int, int]]
) -> None:
    """Commands one refresh sends, by number of pools and of databases they are spread over."""
    assert backend.counter is not None
    for pools, databases in layouts:
        names = []
        for _ in range(databases):
            database = backend.database()
            await make_pools(database, pools // databases, size=2)
            names.append(database.name)
        config = Config(mongo_url=backend.url, databases=tuple(names), pool_timeout=60)
        store = open_store(config, client=backend.client)
        discovery = Discovery(store, config)
        refresher = Refresher(store, discovery, State(config.interval), config)
        await refresher.reach()
        await discovery.run()
        backend.counter.reset()
        snapshot = await refresher.refresh()
        assert len(snapshot.statistics) == pools, "a pool failed"
        report.add(
            backend.name,
            Figure(
                "exporter",
                f"commands per refresh, {pools} pools in {databases} database(s)",
                len(backend.counter.names),
                "commands",
                f"{databases} + 1 ping (the seed: {4 * pools})",
            ),
        )


async def refresh_cost(backend: Backend, report: Report, pools: int, repeat: int) -> str:
    """Commands and time per refresh of *pools* pools, ours against 4 counts per pool."""
    section = "exporter"
    database = backend.database()
    await make_pools(database, pools)
    config = Config(
        mongo_url=backend.url, databases=(database.name,), concurrency=CONCURRENCY, pool_timeout=60
    )
    store = open_store(config, client=backend.client)
    discovery = Discovery(store, config)
    refresher = Refresher(store, discovery, State(config.interval), config)
    await refresher.reach()
    await discovery.run()
    assert backend.counter is not None
    backend.counter.reset()
    await refresher.refresh()
    report.add(
        backend.name,
        Figure(
            section,
            f"commands per refresh of {pools} pools",
            len(backend.counter.names),
            "commands",
            "1 per database + 1 ping",
        ),
    )
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def seed_refresh() -> None:
        async def one(name: str) -> None:
            async with semaphore:
                await SeedPool(database[name]).aggregate_statistics()

        await asyncio.gather(*(one(f"pool{n:04d}") for n in range(pools)))

    ours, seed = [], []
    for _ in range(repeat):  # interleaved
        started = time.perf_counter()
        await refresher.refresh()
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        await seed_refresh()
        seed.append(time.perf_counter() - started)
    report.add(
        backend.name,
        Figure(
            section,
            f"refresh time of {pools} pools, ours / seed design",
            statistics.median(ours) / statistics.median(seed),
            "ratio",
            "<= 0.5",
        ),
    )
    report.add(
        backend.name,
        Figure(section, f"refresh time of {pools} pools, ours", statistics.median(ours), "s"),
    )
    report.add(
        backend.name,
        Figure(
            section, f"refresh time of {pools} pools, seed design", statistics.median(seed), "s"
        ),
    )
    return str(database.name)


def _scrape_latencies(port: int, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            response.read()
        samples.append(time.perf_counter() - started)
    return samples


BURST = 200
"""Concurrent scrapes in a burst: many Prometheus servers, or a dashboard reloading."""


async def _burst(port: int, count: int) -> list[float]:
    """Open *count* connections at once, each scraping /metrics; return each one's time."""
    start = asyncio.Event()

    async def scrape() -> float:
        await start.wait()
        began = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()
        await writer.wait_closed()
        return time.perf_counter() - began

    tasks = [asyncio.create_task(scrape()) for _ in range(count)]
    await asyncio.sleep(0.1)
    start.set()
    return list(await asyncio.gather(*tasks))


def _metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the exporter did not get there in time")


def _peak_rss_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def scrape_latency(
    backend: Backend, report: Report, database: str, pools: int, scrapes: int
) -> None:
    """/metrics latency with *pools* pools, MongoDB up and then stopped; peak RSS."""
    section = "exporter"
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "exporter",
                "--mongo-url",
                str(backend.url),
                "--database",
                database,
                "--port",
                str(port),
                "--interval",
                "5",
                "--pool-timeout",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await asyncio.to_thread(_wait, lambda: _metric(port, "sessionpool_pools") == pools, 300)
            await asyncio.to_thread(
                _wait, lambda: _metric(port, "sessionpool_refresh_duration_seconds"), 120
            )
            healthy = await asyncio.to_thread(_scrape_latencies, port, scrapes)
            burst = await _burst(port, BURST)
            label = f"/metrics latency, {pools} pools"
            for name, value in (
                ("median", statistics.median(burst)),
                ("p99", _percentile(burst, 0.99)),
                ("slowest", max(burst)),
            ):
                report.add(
                    backend.name,
                    Figure(
                        section,
                        f"{label}, {BURST} concurrent scrapes, {name}",
                        value * 1000,
                        "ms",
                        "< 1000" if name == "slowest" else "",
                    ),
                )
            report.add(
                backend.name,
                Figure(
                    section, f"{label}, MongoDB up, median", statistics.median(healthy) * 1000, "ms"
                ),
            )
            report.add(
                backend.name,
                Figure(
                    section, f"{label}, MongoDB up, p99", _percentile(healthy, 0.99) * 1000, "ms"
                ),
            )
            if backend.server is not None:
                backend.server.stop(kill=True)
                try:
                    await asyncio.to_thread(_wait, lambda: _metric(port, "sessionpool_up") == 0, 60)
                    down = await asyncio.to_thread(_scrape_latencies, port, scrapes)
                finally:
                    backend.server.start()
                report.add(
                    backend.name,
                    Figure(
                        section,
                        f"{label}, MongoDB stopped, median",
                        statistics.median(down) * 1000,
                        "ms",
                    ),
                )
                report.add(
                    backend.name,
                    Figure(
                        section,
                        f"{label}, MongoDB stopped, p99",
                        _percentile(down, 0.99) * 1000,
                        "ms",
                    ),
                )
                report.add(
                    backend.name,
                    Figure(
                        section,
                        "scrape latency, stopped / up (medians)",
                        statistics.median(down) / statistics.median(healthy),
                        "ratio",
                        "~1",
                    ),
                )
            report.add(
                backend.name,
                Figure(
                    section, f"exporter peak RSS, {pools} pools", _peak_rss_mib(process.pid), "MiB"
                ),
            )
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def render_latency(report: Report, backend: str, pools: int, scrapes: int) -> None:
    """Rendering a snapshot of *pools* pools, in process: the whole cost of a scrape's body."""
    from datetime import UTC, datetime
    from types import MappingProxyType

    from prometheus_client import CollectorRegistry, generate_latest

    from exporter.collector import SnapshotCollector
    from exporter.snapshot import PoolKey, Snapshot
    from sessionlib import PoolStatistics

    now = datetime.now(UTC)
    keys = [PoolKey("pools", f"pool{n:04d}") for n in range(pools)]
    stats = PoolStatistics(
        total=100,
        available=60,
        in_use=10,
        locked=10,
        blocked=10,
        inactive=10,
        uses=10_000,
        successes=9_000,
        next_unlock=now,
        oldest_lock=now,
    )
    state = State(15)
    state.snapshot = Snapshot(
        taken_at=now.timestamp(),
        duration=1.0,
        up=True,
        pools=tuple(keys),
        statistics=MappingProxyType(dict.fromkeys(keys, stats)),
        last_success=MappingProxyType(dict.fromkeys(keys, now.timestamp())),
        errors=MappingProxyType(dict.fromkeys(keys, 0)),
    )
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(state))
    samples = []
    size = 0
    for _ in range(scrapes):
        started = time.perf_counter()
        size = len(generate_latest(registry))
        samples.append(time.perf_counter() - started)
    report.add(
        backend,
        Figure(
            "exporter",
            f"render a {pools}-pool snapshot, median",
            statistics.median(samples) * 1000,
            "ms",
            note=f"{size // 1024} KiB of text",
        ),
    )
    report.add(
        backend,
        Figure(
            "exporter",
            f"render a {pools}-pool snapshot, p99",
            _percentile(samples, 0.99) * 1000,
            "ms",
        ),
    )
