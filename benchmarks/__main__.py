"""``python -m benchmarks``: run the measurements, print a table, write JSON.

python -m benchmarks --quick                # about two minutes: mock + SecantusDB
python -m benchmarks                        # the full run (pool sizes up to 10,000)
MONGO_URL=mongodb://... python -m benchmarks --backend mongo
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from .backends import Backend, open_backend
from .encryption import encryption_cost
from .handout import clock_cost, stepped_over_figures
from .pool import against_seed, contention, overhead, round_trips, scaling
from .report import Report
from .scale import (
    auto_release_commands,
    commands_past_limits,
    refresh_against_seed,
    statistics_against_seed,
    waiting,
)
from .scrape import refresh_commands, refresh_cost, render_latency, scrape_latency


async def run(report: Report, backends: list[str], quick: bool) -> None:
    for name in backends:
        started = time.perf_counter()
        async with open_backend(name) as backend:
            print(f"\n== {backend.name}", flush=True)
            await round_trips(backend, report)
            await overhead(
                backend, report, operations=200 if quick else 1000, rounds=3 if quick else 5
            )
            await against_seed(
                backend, report, size=500 if quick else 10_000, repeat=3 if quick else 9
            )
            await contention(backend, report, size=120, rounds=1 if quick else 3)
            sizes = [100, 500] if quick else [100, 1000, 10_000]
            shares = [0.0, 0.9] if quick else [0.0, 0.5, 0.9]
            await scaling(backend, report, sizes, shares, repeat=3 if quick else 9)
            if name == "mock":  # in-process and backend-free: once is enough
                render_latency(report, backend.name, 1000, scrapes=20 if quick else 200)
                # Computed from the documents: the same on every backend.
                await stepped_over_figures(
                    backend,
                    report,
                    [300] if quick else [300, 3000, 30_000],
                    [(0.0, 0.0), (1 / 3, 1 / 3), (0.5, 0.0), (0.0, 0.5), (0.45, 0.45)],
                )
            if backend.wire:
                await clock_cost(backend, report, operations=50 if quick else 300, rounds=3)
                await encryption_cost(
                    backend, report, operations=200 if quick else 1000, rounds=3 if quick else 5
                )
                layouts = (
                    [(10, 1), (100, 1), (100, 4)]
                    if quick
                    else [(10, 1), (100, 1), (1000, 1), (1000, 10)]
                )
                await refresh_commands(backend, report, layouts)
                pools = 100 if quick else 1000
                database = await refresh_cost(backend, report, pools, repeat=2 if quick else 5)
                await scrape_latency(backend, report, database, pools, scrapes=50 if quick else 500)
                await scale(backend, report, quick)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


async def scale(backend: Backend, report: Report, quick: bool) -> None:
    """The scale figures (see :mod:`benchmarks.scale`), side by side in one run."""
    await statistics_against_seed(
        backend, report, [1000] if quick else [1000, 10_000], repeat=5 if quick else 9
    )
    await refresh_against_seed(backend, report, 100 if quick else 400, repeat=3 if quick else 5)
    if backend.server is not None:  # the stage limit and change streams: through a proxy
        await commands_past_limits(backend, report, [1, 100, 499, 1000, 3000])
        await waiting(backend, report, 50, idle=3 if quick else 10, releases=10 if quick else 30)
    await auto_release_commands(backend, report, 200, 10)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; about two minutes")
    parser.add_argument(
        "--backend",
        action="append",
        choices=("mock", "secantus", "mongo"),
        help="where to run (repeatable; default: mock and secantus, plus mongo if MONGO_URL)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("benchmarks/results/latest.json"),
        help="where to write the figures (benchmarks/results/latest.json)",
    )
    args = parser.parse_args()
    backends = args.backend or ["mock", "secantus"] + (
        ["mongo"] if os.environ.get("MONGO_URL") else []
    )
    report = Report(quick=args.quick)
    started = time.perf_counter()
    asyncio.run(run(report, backends, args.quick))
    print(report.table())
    report.write(args.json)
    print(f"\nfigures written to {args.json} ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
