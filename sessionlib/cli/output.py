"""What the admin tool prints: tables and progress for people (Rich), JSON for scripts."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

import rich.progress
from bson import ObjectId
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..clock import as_utc

__all__ = ["Output", "Progress", "cell", "printable", "table"]


@dataclass
class Output:
    """Where results go: a table or lines for people, JSON for scripts.

    *zone* is the zone instants are shown in to people (JSON gives them in UTC).
    """

    json: bool
    stream: IO[str]
    zone: tzinfo = UTC

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
        """:func:`table` with instants in this output's zone."""
        return table(headers, rows, self.zone)

    def cell(self, value: Any) -> str:
        """:func:`cell` with instants in this output's zone."""
        return cell(value, self.zone)

    def result(self, human: str, data: Any) -> None:
        """Print *human* text, or *data* as one JSON line with ``--json``."""
        if self.json:
            self.stream.write(json.dumps(data, default=_json_default, ensure_ascii=False) + "\n")
        else:
            self.stream.write(human.rstrip("\n") + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    return repr(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], zone: tzinfo = UTC) -> str:
    """Render *rows* as a text table with aligned columns (Rich), instants in *zone*.

    Cells are plain text (never Rich markup: a stored ``[red]`` stays as it
    is), wide characters take their width, and no column is cut: a table
    for a pipe or a file is as wide as it needs.
    """
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        grid.add_column(header, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(Text(cell(value, zone)) for value in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False, emoji=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def printable(text: str) -> str:
    """*text* with every character a terminal would act on shown escaped (``\\x1b``, ``\\n``).

    Stored reasons and ids come from other programs: an escape sequence in a
    third party's error text must not recolour or clear the operator's
    terminal, a newline must not forge table rows, and a bidirectional
    override must not reorder what is shown.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def cell(value: Any, zone: tzinfo = UTC) -> str:
    """*value* as a table cell: ``-`` for none, instants in *zone* to the second with its
    offset (``2026-05-01 12:00:00 +03:00``), ids plain, text escaped."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        shown = as_utc(value).astimezone(zone)
        offset = shown.strftime("%z")
        return f"{shown:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
    return printable(str(value))


class Progress:
    """A progress bar on *stream* (stderr), drawn by Rich: live on a terminal, one final
    line otherwise; nothing when not *enabled* or there is nothing to do.

    *total* may be set later (before the first :meth:`update`).
    """

    def __init__(self, total: int, stream: IO[str], *, label: str, enabled: bool) -> None:
        self.total, self.stream, self.label = total, stream, label
        self.enabled = enabled
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None

    def update(self, done: int) -> None:
        """Show that *done* of the total are done."""
        if not self.enabled or self.total <= 0:
            return
        if self._bar is None:
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("{task.description}:"),
                rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(),
                rich.progress.TextColumn("({task.percentage:.0f}%)"),
                rich.progress.TimeRemainingColumn(),
                console=Console(file=self.stream, highlight=False),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        assert self._task is not None
        self._bar.update(self._task, completed=done, total=self.total)

    def done(self) -> None:
        """End the progress bar (its last state stays on screen)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
