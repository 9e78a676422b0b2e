"""What the admin tool prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from bson import ObjectId

from ..clock import as_utc

__all__ = ["Output", "table"]


@dataclass
class Output:
    """Where results go: a table or lines for people, JSON for scripts."""

    json: bool
    stream: IO[str]

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


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Render *rows* as a plain text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
