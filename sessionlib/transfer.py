"""Sessions in and out as JSON lines: parsing, validating, redacting.

Lines are MongoDB Extended JSON (``{"$date": ...}``, ``{"$oid": ...}``), so an
export imports back unchanged (with ``--reveal``). The whole input is checked
before anything is written: one bad line and nothing is imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from .exceptions import InvalidPayloadError
from .validation import check_document

__all__ = ["REDACTED", "ParsedLine", "dump_line", "get_path", "parse_lines", "redact"]

REDACTED = "***"
_JSON = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One session read from the input, with its line number."""

    number: int
    document: dict[str, Any]


def get_path(document: dict[str, Any], path: str) -> Any:
    """Return the value at dotted *path* of *document*, or ``None``."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def parse_lines(lines: Iterable[bytes], key: str | None) -> Iterator[ParsedLine]:
    """Yield the sessions of JSON-lines input; blank lines are skipped.

    Each needs a value at the dotted *key* unless *key* is ``None``.

    Raises:
        InvalidPayloadError: a line is not UTF-8, not a JSON object, holds
            unsafe field names, or lacks *key*; the message names the line.
    """
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidPayloadError(f"line {number}: not valid UTF-8") from None
        if not text:
            continue
        try:
            document = json_util.loads(text, json_options=_JSON)
        except ValueError as exc:
            raise InvalidPayloadError(f"line {number}: not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise InvalidPayloadError(f"line {number}: a session must be a JSON object")
        try:
            check_document(document)
        except InvalidPayloadError as exc:
            raise InvalidPayloadError(f"line {number}: {exc}") from None
        if key is not None and get_path(document, key) is None:
            raise InvalidPayloadError(f"line {number}: no value for the key field {key!r}")
        yield ParsedLine(number, document)


def redact(document: dict[str, Any], field: str = "session") -> dict[str, Any]:
    """Return *document* with every value inside *field* replaced by ``***`` (keys kept)."""

    def hide(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hide(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hide(v) for v in value]
        return REDACTED

    if field not in document:
        return document
    return {**document, field: hide(document[field])}


def dump_line(document: dict[str, Any]) -> str:
    """Return *document* as one line of relaxed Extended JSON."""
    return json_util.dumps(document, json_options=_JSON, ensure_ascii=False)
