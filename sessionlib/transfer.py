"""Sessions in and out as JSON lines: parsing, validating, redacting.

Lines are MongoDB Extended JSON (``{"$date": ...}``, ``{"$oid": ...}``), so an
export imports back unchanged (with ``--reveal``). Every line is parsed and
checked before anything is written, and a bad one is named by its number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import bson.errors
from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from .exceptions import InvalidPayloadError
from .validation import check_document

__all__ = [
    "CLEAR_FIELDS",
    "REDACTED",
    "ParsedLine",
    "dump_line",
    "get_path",
    "parse_lines",
    "redact",
]

REDACTED = "***"
_JSON = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True)

CLEAR_FIELDS = frozenset(
    {
        "_id",
        "active",
        "next_use",
        "last_use",
        "ready_at",
        "count_use",
        "count_success",
        "created",
        "lock_kind",
        "locked_at",
        "fence",
        "strikes",
        "strikes_since",
    }
)
"""Top-level fields a redacted export shows: the pool's bookkeeping. Every other
value (the ``session`` payload, the lease token, any field another program
added) is replaced by ``***``."""

# What Extended JSON parsing raises on malformed input: bad wrapper values
# ({"$oid": 5} is a TypeError), bad numbers and dates, dates out of range
# (InvalidBSON), and nesting too deep for the parser (RecursionError).
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    bson.errors.BSONError,
)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One session read from the input, with its line number."""

    number: int
    document: dict[str, Any]


def get_path(document: Mapping[str, Any], path: str) -> Any:
    """Return the value at dotted *path* of *document*, or ``None``."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def parse_lines(lines: Iterable[bytes], key: str | None) -> Iterator[ParsedLine]:
    """Yield the sessions of JSON-lines input; blank lines are skipped.

    Each needs a value at the dotted *key* unless *key* is ``None``.

    Raises:
        InvalidPayloadError: a line is not UTF-8, not a JSON object, not valid
            Extended JSON, holds unsafe field names, nests too deep, or lacks
            *key*; the message names the line.
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
        except _PARSE_ERRORS as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise InvalidPayloadError(f"line {number}: not valid JSON: {reason:.200}") from None
        if not isinstance(document, dict):
            raise InvalidPayloadError(f"line {number}: a session must be a JSON object")
        try:
            check_document(document)
        except InvalidPayloadError as exc:
            raise InvalidPayloadError(f"line {number}: {exc}") from None
        if key is not None and get_path(document, key) is None:
            hint = (
                " (lines without an _id: name the field that identifies a session with "
                "--key, such as --key session.phone)"
                if key == "_id"
                else ""
            )
            raise InvalidPayloadError(f"line {number}: no value for the key field {key!r}{hint}")
        yield ParsedLine(number, document)


def _hide(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return REDACTED


def redact(document: Mapping[str, Any], clear: frozenset[str] = CLEAR_FIELDS) -> dict[str, Any]:
    """Return *document* with every value outside the *clear* fields replaced by ``***``.

    Keys are kept, so the shape of a payload stays visible.
    """
    return {key: value if key in clear else _hide(value) for key, value in document.items()}


def dump_line(document: Mapping[str, Any]) -> str:
    """Return *document* as one line of relaxed Extended JSON."""
    return json_util.dumps(document, json_options=_JSON, ensure_ascii=False)
