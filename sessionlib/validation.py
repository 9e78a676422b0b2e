"""Checks that run before anything is written.

Every public call validates its arguments here first, so bad input raises an
:class:`~sessionlib.exceptions.InvalidInputError` subclass (or a
:class:`~sessionlib.exceptions.ConfigurationError` for settings) and the
collection stays untouched. Errors name the caller's parameter.

No check costs time that grows with a number's magnitude: integers are
compared, never looked up in a ``range`` (which CPython scans item by item for
``int`` subclasses such as ``bson.Int64``). Documents are walked iteratively,
at most :data:`MAX_DEPTH` levels deep, as MongoDB itself allows.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import Binary, Decimal128, MaxKey, MinKey, ObjectId, Regex, Timestamp

from .discovery import METADATA_PREFIX
from .exceptions import (
    ConfigurationError,
    InvalidInputError,
    InvalidPayloadError,
    InvalidPeriodError,
    InvalidSessionError,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_PERIOD",
    "PERIOD_KEYS",
    "check_collection_name",
    "check_count",
    "check_database_name",
    "check_document",
    "check_mapping",
    "check_offset",
    "check_reason",
    "check_set_payload",
    "check_unset_payload",
    "check_until",
    "check_where",
    "delay_to_timedelta",
    "period_to_timedelta",
    "session_id",
]

PERIOD_KEYS = frozenset(
    {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}
)
"""The keys a ``period`` dict may hold: the keyword arguments of :class:`datetime.timedelta`."""

MAX_PERIOD = timedelta(days=365 * 100)
"""The longest period, delay or offset: anything longer is a mistake and would overflow."""

MAX_DEPTH = 100
"""The deepest nesting of documents and arrays MongoDB stores."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Types an ``_id`` may have when it is matched by equality (embedded documents
# are checked for operator keys separately).
_ID_TYPES = (
    type(None),
    bool,
    int,
    float,
    str,
    bytes,
    ObjectId,
    datetime,
    Decimal128,
    Binary,
    uuid.UUID,
    Timestamp,
    MinKey,
    MaxKey,
)


def _walk(root: object) -> Iterable[tuple[int, object]]:
    """Yield ``(depth, value)`` for *root* and everything nested in it, iteratively."""
    stack: list[tuple[int, object]] = [(0, root)]
    while stack:
        depth, value = stack.pop()
        yield depth, value
        if isinstance(value, Mapping):
            stack.extend((depth + 1, item) for item in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((depth + 1, item) for item in value)


def _id_problem(value: object) -> str | None:
    if isinstance(value, list | tuple | set | frozenset):
        return "is a list; an _id is one value"
    if isinstance(value, re.Pattern | Regex):
        return "is a regular expression, which would match other sessions"
    if isinstance(value, Mapping):
        for depth, item in _walk(value):
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str) or key.startswith("$"):
                        return f"holds the query operator {key!r}, which would match other sessions"
        return None
    if not isinstance(value, _ID_TYPES):
        return f"has the type {type(value).__name__}, which an _id cannot have"
    return None


def session_id(session: object) -> Any:
    """Return the ``_id`` of *session*, a plain value that matches that session only.

    Raises:
        InvalidSessionError: *session* is not a mapping, has no ``_id``, or its
            ``_id`` is a query operator, a list or a pattern, which would
            select other sessions.
    """
    if not isinstance(session, Mapping):
        raise InvalidSessionError(
            f"session must be a dict with an '_id', not {type(session).__name__}"
        )
    if "_id" not in session:
        raise InvalidSessionError("session has no '_id'; pass the dict get_session() returned")
    value = session["_id"]
    problem = _id_problem(value)
    if problem is not None:
        raise InvalidSessionError(f"the session's '_id' {problem}; nothing was written")
    return value


def _number(name: str, value: object, error: type[InvalidInputError]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, int) and not -(2**53) <= value <= 2**53:
        raise error(f"{name} is out of range: {value}")
    result = float(value)
    if not math.isfinite(result):
        raise error(f"{name} must be a finite number, not {value!r}")
    return result


def period_to_timedelta(period: object, default: timedelta, name: str = "period") -> timedelta:
    """Turn a ``period`` dict such as ``{"hours": 10}`` into a timedelta.

    ``None`` gives *default*. Only :data:`PERIOD_KEYS` are accepted, each with a
    finite non-negative number; the sum may not exceed :data:`MAX_PERIOD`.

    Raises:
        InvalidPeriodError: *period* is not a dict, has an unknown key, or a bad value.
    """
    if period is None:
        return default
    if not isinstance(period, Mapping):
        raise InvalidPeriodError(
            f"{name} must be a dict such as {{'hours': 10}}, not {type(period).__name__}"
        )
    unknown = sorted(repr(key) for key in period if key not in PERIOD_KEYS)
    if unknown:
        allowed = ", ".join(sorted(PERIOD_KEYS))
        raise InvalidPeriodError(f"{name}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    values = {}
    for key, value in period.items():
        number = _number(f"{name}[{key!r}]", value, InvalidPeriodError)
        if number < 0:
            raise InvalidPeriodError(f"{name}[{key!r}] must not be negative, not {value!r}")
        values[str(key)] = number
    try:
        result = timedelta(**values)
    except OverflowError:
        result = timedelta.max
    if result > MAX_PERIOD:
        raise InvalidPeriodError(f"{name} {dict(period)!r} is longer than 100 years")
    return result


def delay_to_timedelta(delay: object, default: float, name: str = "next_use_delay") -> timedelta:
    """Turn a delay in seconds (``None`` for *default*) into a timedelta.

    Raises:
        InvalidPeriodError: *delay* is not a finite number from 0 to 100 years.
    """
    seconds = _number(name, default if delay is None else delay, InvalidPeriodError)
    if seconds < 0:
        raise InvalidPeriodError(f"{name} must not be negative, not {delay!r}")
    if seconds > MAX_PERIOD.total_seconds():
        raise InvalidPeriodError(f"{name} must be at most 100 years, not {delay!r}")
    return timedelta(seconds=seconds)


def check_offset(name: str, offset: object) -> timedelta:
    """Turn an offset in seconds (negative allowed) into a timedelta.

    Raises:
        InvalidInputError: *offset* is not a finite number within ±100 years.
    """
    seconds = _number(name, offset, InvalidInputError)
    if abs(seconds) > MAX_PERIOD.total_seconds():
        raise InvalidInputError(f"{name} must be within 100 years, not {offset!r}")
    return timedelta(seconds=seconds)


def check_count(name: str, value: object) -> int:
    """Return *value* if it is a non-negative int that fits 64 bits.

    Raises:
        InvalidInputError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        raise InvalidInputError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _check_tree(where: str, root: Mapping[Any, Any], *, dotted_top: bool) -> None:
    """Check field names and integers of a document, iteratively and depth-bounded."""
    for depth, value in _walk(root):
        if depth > MAX_DEPTH:
            raise InvalidPayloadError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str):
                    raise InvalidPayloadError(f"{where}: field names must be strings, not {key!r}")
                if key.startswith("$"):
                    raise InvalidPayloadError(f"{where}: field name {key!r} starts with '$'")
                if "\0" in key:
                    raise InvalidPayloadError(f"{where}: field name {key!r} holds a NUL character")
                if "." in key and not (dotted_top and value is root):
                    raise InvalidPayloadError(
                        f"{where}: field name {key!r} holds a '.', which no dotted path could reach"
                    )
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not _INT64_MIN <= value <= _INT64_MAX
        ):
            raise InvalidPayloadError(f"{where}: an integer does not fit 64 bits")


def check_document(data: object, where: str = "add()") -> Mapping[str, Any]:
    """Return *data* if it can be inserted as a session document.

    Raises:
        InvalidPayloadError: *data* is not a dict, a field name is not a
            string, starts with ``$`` (operator injection), holds a ``.`` or a
            NUL, it nests deeper than MongoDB allows, or an integer does not
            fit 64 bits.
    """
    if not isinstance(data, Mapping):
        raise InvalidPayloadError(f"session data must be a dict, not {type(data).__name__}")
    if "_id" in data:
        problem = _id_problem(data["_id"])
        if problem is not None:
            raise InvalidPayloadError(f"{where}: the '_id' {problem}")
    _check_tree(where, data, dotted_top=False)
    return data


def _check_update_key(where: str, key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidPayloadError(f"{where}: field names must be non-empty strings, not {key!r}")
    if key.startswith("$") or ".$" in key or "\0" in key:
        raise InvalidPayloadError(f"{where}: field name {key!r} is an operator, not a field")
    if key == "_id" or key.startswith("_id."):
        raise InvalidPayloadError(f"{where}: the '_id' of a session cannot be changed")
    if any(not part for part in key.split(".")):
        raise InvalidPayloadError(f"{where}: field name {key!r} has an empty part")
    return key


def check_set_payload(payload: object) -> dict[str, Any]:
    """Return the ``$set`` part of ``session_update`` after checking it.

    Raises:
        InvalidPayloadError: *payload* is not a dict, names ``_id``, or holds operators.
    """
    if not isinstance(payload, Mapping):
        raise InvalidPayloadError(
            f"payload must be a dict such as {{'session.phone': '+7...'}}, "
            f"not {type(payload).__name__}"
        )
    checked = {_check_update_key("payload", key): value for key, value in payload.items()}
    _check_tree("payload", checked, dotted_top=True)  # top-level keys are dotted paths
    return checked


def check_unset_payload(unset_payload: object) -> dict[str, str]:
    """Return the ``$unset`` part of ``session_update`` (a dict or a list of field names).

    Raises:
        InvalidPayloadError: it is neither, names ``_id``, or holds operators.
    """
    if unset_payload is None:
        return {}
    if isinstance(unset_payload, Mapping):
        keys: Iterable[object] = unset_payload.keys()
    elif isinstance(unset_payload, list | tuple | set | frozenset):
        keys = unset_payload
    else:
        raise InvalidPayloadError(
            f"unset_payload must be a dict or a list of field names, "
            f"not {type(unset_payload).__name__}"
        )
    return {_check_update_key("unset_payload", key): "" for key in keys}


def check_mapping(name: str, value: object) -> dict[str, Any] | None:
    """Return a copy of the setting *value*: ``None`` or a dict with string keys.

    Raises:
        ConfigurationError: it is neither.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ConfigurationError(f"{name} must be a dict with string keys, not {value!r:.80}")
    return dict(value)


_BAD_DATABASE_CHARACTERS = frozenset('/\\. "$\0')


def check_database_name(name: object, what: str = "db") -> str:
    """Return *name* if MongoDB accepts it as a database name.

    Raises:
        ConfigurationError: it is empty, too long, or holds ``/\\. "$`` or NUL.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} must be a non-empty database name, not {name!r}")
    bad = sorted(_BAD_DATABASE_CHARACTERS & set(name))
    if bad:
        raise ConfigurationError(
            f"{what} {name!r} is not a valid database name: it holds {''.join(bad)!r}"
        )
    if len(name.encode("utf-8")) >= 64:
        raise ConfigurationError(f"{what} {name!r} is not a valid database name: 64 bytes or more")
    return name


def check_collection_name(name: object, database: str, what: str = "collection") -> str:
    """Return *name* if MongoDB accepts it as the name of a pool's collection.

    Raises:
        ConfigurationError: it is empty, holds ``$`` or NUL, is a ``system.``
            or ``sessionpool.`` collection (the server's and sessionpool's
            own), or makes the full name longer than 255 bytes.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} must be a non-empty collection name, not {name!r}")
    if "$" in name or "\0" in name:
        raise ConfigurationError(f"{what} {name!r} is not a valid collection name: '$' or NUL")
    if name.startswith(".") or name.endswith(".") or name.startswith("system."):
        raise ConfigurationError(f"{what} {name!r} cannot be a pool's collection")
    if name.startswith(METADATA_PREFIX):
        raise ConfigurationError(
            f"{what} {name!r} cannot be a pool's collection: "
            f"{METADATA_PREFIX}* is sessionpool's own (targets, breakers)"
        )
    if len(f"{database}.{name}".encode()) > 255:
        raise ConfigurationError(f"{what} {name!r}: the full name is longer than 255 bytes")
    return name


MAX_REASON = 200
"""The longest reason a report may record, in characters."""


def check_reason(reason: object) -> str | None:
    """Return *reason* if it is ``None`` or a short text that is no operator.

    Raises:
        InvalidInputError: it is not text, is longer than :data:`MAX_REASON`,
            starts with ``$`` or holds a NUL.
    """
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON:
        raise InvalidInputError(
            f"reason must be a text of 1 to {MAX_REASON} characters, not {reason!r:.80}"
        )
    if reason.startswith("$") or "\0" in reason:
        raise InvalidInputError(f"reason must not start with '$' or hold a NUL: {reason!r:.80}")
    return reason


def check_until(until: object, now: datetime) -> datetime:
    """Return *until*, an aware instant within 100 years of *now*.

    Raises:
        InvalidPeriodError: it is not a datetime, has no time zone, or is
            further than 100 years from now.
    """
    if not isinstance(until, datetime):
        raise InvalidPeriodError(f"until must be a datetime, not {type(until).__name__}")
    if until.tzinfo is None or until.utcoffset() is None:
        raise InvalidPeriodError(
            "until must have a time zone (datetime.now(UTC), or one parsed "
            "from a header with its zone)"
        )
    if abs(until - now) > MAX_PERIOD:
        raise InvalidPeriodError(f"until {until.isoformat()} is more than 100 years away")
    return until


# Operators that run code on the server, or that only make sense at the top.
_FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$expr", "$jsonSchema"})


def check_where(where: object) -> dict[str, Any] | None:
    """Return *where* if it is ``None`` or a filter made of field conditions.

    Its top-level keys must be field names (``"session.region"``): operators
    are allowed only under them (``{"session.tier": {"$in": [1, 2]}}``), so it
    can narrow the hand-out's choice but never replace its conditions.

    Raises:
        InvalidInputError: it is not a mapping, a top-level key is an
            operator, or it uses an operator that runs code.
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InvalidInputError(
            f"where must be a dict of field conditions, not {type(where).__name__}"
        )
    for key in where:
        if not isinstance(key, str) or not key or key.startswith("$") or "\0" in key:
            raise InvalidInputError(
                f"where: {key!r} is not a field name; operators go under a field, "
                "as in {'session.region': {'$in': ['eu', 'us']}}"
            )
    for depth, value in _walk(where):
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"where: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            for key in value:
                if key in _FORBIDDEN_OPERATORS:
                    raise InvalidInputError(f"where: the operator {key!r} is not allowed")
    return dict(where)
