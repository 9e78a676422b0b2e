"""``sessionpool top``: a live view of the pools, refreshed every few seconds.

One row per pool: its sessions by state as a bar (``█`` available, ``▓`` in
use, ``▒`` locked, ``░`` blocked, ``▚`` held by a budget, ``-`` inactive, in
colour on a terminal), available of total against
its target, its circuit breaker, when the next lock ends, hand-outs per
minute (from the ``count_use`` counters between two refreshes) and a
sparkline of its available sessions. Each refresh reads the statistics the
exporter reads, one command per database (per 400 pools); the pools are
listed again every :data:`REDISCOVER` refreshes. ``q`` (or Ctrl-C) quits.

``--once`` prints one frame and exits; ``--json`` prints one snapshot as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..clock import as_utc
from ..discovery import PoolKey
from ..stats import PoolStatistics
from ..store import SessionStore

__all__ = ["REDISCOVER", "Frame", "PoolRow", "bar", "sparkline", "top"]

REDISCOVER = 10
"""Refreshes between two listings of the pools."""

HISTORY = 30
"""Refreshes a sparkline shows."""

BAR = 24
"""Characters of the state bar."""

SPARKS = "▁▂▃▄▅▆▇█"

STATE_STYLES = (
    ("available", "█", "green"),
    ("in_use", "▓", "cyan"),
    ("locked", "▒", "yellow"),
    ("blocked", "░", "red"),
    ("budget", "▚", "magenta"),
    ("inactive", "-", "bright_black"),
)
"""The states a bar shows, in order, with their marks and colours (a mark each, so the
bar reads without colour too)."""


def bar(stats: PoolStatistics, width: int = BAR) -> Text:
    """The pool's sessions by state as a bar of *width* characters, one colour per state."""
    total = stats.total
    text = Text()
    if total <= 0:
        return Text("·" * width, style="bright_black")
    counts = [getattr(stats, state) for state, _, _ in STATE_STYLES]
    # Each state present gets at least one cell, so a single blocked session shows.
    cells = [max(1, round(width * count / total)) if count else 0 for count in counts]
    while sum(cells) > width:
        cells[cells.index(max(cells))] -= 1
    for (_, mark, style), size in zip(STATE_STYLES, cells, strict=True):
        text.append(mark * size, style=style)
    text.append("·" * (width - sum(cells)), style="bright_black")  # documents in no state
    return text


def sparkline(values: Sequence[int]) -> str:
    """*values* as a sparkline, scaled from 0 to their largest."""
    if not values:
        return ""
    top = max(values) or 1
    steps = len(SPARKS) - 1
    return "".join(SPARKS[min(steps, max(0, value) * steps // top)] for value in values)


def until(moment: datetime | None, now: datetime) -> str:
    """When *moment* comes, from *now*: ``in 12s``, ``in 3m``, ``in 2h``, or ``-``."""
    if moment is None:
        return "-"
    seconds = (as_utc(moment) - as_utc(now)).total_seconds()
    if seconds <= 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"in {seconds // size:.0f}{unit}"
    return f"in {seconds:.0f}s"


@dataclass
class PoolRow:
    """What ``top`` shows of one pool, and what it remembers between refreshes."""

    key: PoolKey
    stats: PoolStatistics | None = None
    error: str | None = None
    available: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))
    uses: tuple[float, int] | None = None
    """When the ``count_use`` sum was read, and its value."""
    per_minute: float | None = None

    def update(self, outcome: PoolStatistics | BaseException, at: float) -> None:
        if isinstance(outcome, BaseException):
            self.error = str(outcome).splitlines()[0][:80]
            return
        self.stats, self.error = outcome, None
        self.available.append(outcome.available)
        if self.uses is not None and at > self.uses[0]:
            delta = max(0, outcome.uses - self.uses[1])
            self.per_minute = delta * 60 / (at - self.uses[0])
        self.uses = (at, outcome.uses)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        stats = self.stats
        if stats is None:
            return {"pool": str(self.key), "error": self.error}
        target = stats.target
        return {
            "pool": str(self.key),
            "total": stats.total,
            **{state: getattr(stats, state) for state, _, _ in STATE_STYLES},
            "target": None if target is None else target.min_available,
            "breaker": "open" if stats.breaker.is_open(now) else "closed",
            "next_unlock": stats.next_unlock,
            "handouts_per_minute": self.per_minute,
            "error": self.error,
        }


@dataclass
class Frame:
    """Every pool's row, and how the last refresh went."""

    rows: dict[PoolKey, PoolRow] = field(default_factory=dict)
    refreshed_at: datetime | None = None
    took: float = 0.0

    def keep(self, keys: Sequence[PoolKey]) -> None:
        """Follow the pools *keys*: new ones get a row, gone ones lose theirs."""
        self.rows = {key: self.rows.get(key) or PoolRow(key) for key in keys}

    def table(self, now: datetime, zone: tzinfo, pattern: str) -> Table:
        shown = f"{now.astimezone(zone):%H:%M:%S}"
        caption = (
            f"{len(self.rows)} pool(s) matching {pattern!r} · refreshed {shown} in "
            f"{self.took * 1000:.0f} ms · q quits"
        )
        table = Table(title="sessionpool top", caption=caption, expand=False)
        for header, justify in (
            ("pool", "left"),
            ("sessions", "left"),
            ("available", "right"),
            ("target", "right"),
            ("breaker", "left"),
            ("next unlock", "right"),
            ("hand-outs/min", "right"),
            ("available, last refreshes", "left"),
        ):
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for row in self.rows.values():
            table.add_row(*_cells(row, now))
        return table


def _cells(row: PoolRow, now: datetime) -> list[Any]:
    stats = row.stats
    if stats is None:
        return [str(row.key), Text(row.error or "…", style="red"), "", "", "", "", "", ""]
    target = stats.target
    wanted = None if target is None else target.min_available
    under = wanted is not None and stats.available < wanted
    is_open = stats.breaker.is_open(now)
    return [
        str(row.key),
        bar(stats),
        Text(f"{stats.available}/{stats.total}", style="bold red" if under else ""),
        "-" if wanted is None else str(wanted),
        Text("OPEN", style="bold red") if is_open else "closed",
        until(stats.next_unlock, now),
        "-" if row.per_minute is None else f"{row.per_minute:.0f}",
        sparkline(list(row.available)),
    ]


def split_pattern(pattern: str) -> tuple[list[str] | None, list[str]]:
    """``DB``, ``DB.GLOB`` or ``GLOB`` (every database) as databases and include patterns."""
    database, dot, collection = pattern.partition(".")
    if not dot:
        return ([database] if not _is_glob(database) else None), []
    databases = None if _is_glob(database) else [database]
    return databases, [f"{database}.{collection}"] if databases is None else [collection]


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


async def refresh(store: SessionStore, frame: Frame, pattern: str, rediscover: bool) -> None:
    """List the pools if asked, then read every pool's statistics."""
    if rediscover or not frame.rows:
        databases, include = split_pattern(pattern)
        keys = await store.list_pools(databases, include=include)
        if databases is None and "." not in pattern and pattern != "*":
            keys = [k for k in keys if fnmatch.fnmatchcase(k.database, pattern)]
        frame.keep(keys)
    started = time.monotonic()
    outcomes = await store.statistics(list(frame.rows)) if frame.rows else {}
    frame.took = time.monotonic() - started
    at = time.monotonic()
    for key, outcome in outcomes.items():
        frame.rows[key].update(outcome, at)
    frame.refreshed_at = store.clock()


@contextlib.contextmanager
def keys_pressed(stream: IO[str]) -> Iterator[asyncio.Queue[str]]:
    """Characters typed on *stream*, one at a time, while inside (cbreak mode on a terminal)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    if not stream.isatty():
        yield queue
        return
    import termios
    import tty

    descriptor = stream.fileno()
    saved = termios.tcgetattr(descriptor)
    loop = asyncio.get_running_loop()
    tty.setcbreak(descriptor)
    loop.add_reader(descriptor, lambda: queue.put_nowait(stream.read(1)))
    try:
        yield queue
    finally:
        loop.remove_reader(descriptor)
        termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)


async def top(
    store: SessionStore,
    pattern: str,
    *,
    interval: float,
    stream: IO[str],
    zone: tzinfo,
    once: bool = False,
) -> Frame:
    """Show the pools matching *pattern* on *stream* until ``q``; return the last frame."""
    frame = Frame()
    await refresh(store, frame, pattern, rediscover=True)
    wide = not stream.isatty()
    console = Console(file=stream, width=200 if wide else None, highlight=False)
    if once:
        console.print(frame.table(store.clock(), zone, pattern))
        return frame
    with (
        keys_pressed(sys.stdin) as pressed,
        Live(frame.table(store.clock(), zone, pattern), console=console, screen=False) as live,
    ):
        count = 0
        while True:
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    if (await asyncio.wait_for(pressed.get(), timeout=left)).lower() == "q":
                        return frame
            count += 1
            await refresh(store, frame, pattern, rediscover=count % REDISCOVER == 0)
            live.update(frame.table(store.clock(), zone, pattern))
