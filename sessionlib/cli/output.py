"""What the admin tool prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

from bson import ObjectId

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
    """Render *rows* as a plain text table with aligned columns, instants in *zone*."""
    cells = [[str(h) for h in headers]] + [[cell(v, zone) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


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
    """A progress line on *stream* (stderr), redrawn at most twice a second."""

    def __init__(self, total: int, stream: IO[str], *, label: str, enabled: bool) -> None:
        self.total, self.stream, self.label = total, stream, label
        self.enabled = enabled and total > 0
        self._last = 0.0

    def update(self, done: int) -> None:
        """Show that *done* of the total are done."""
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.5 or done == self.total):
            self._last = now
            percent = 100 * done // self.total
            self.stream.write(f"\r{self.label}: {done}/{self.total} ({percent}%)")
            self.stream.flush()

    def done(self) -> None:
        """End the progress line."""
        if self.enabled:
            self.stream.write("\n")
