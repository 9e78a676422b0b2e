"""Checks that run before anything is written.

Every public write validates its arguments here first, so bad input raises an
:class:`~sessionlib.exceptions.InvalidInputError` subclass and the collection
stays untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from .exceptions import (
    InvalidInputError,
    InvalidPayloadError,
    InvalidPeriodError,
    InvalidSessionError,
)

__all__ = [
    "PERIOD_KEYS",
    "check_count",
    "check_document",
    "check_set_payload",
    "check_unset_payload",
    "delay_to_timedelta",
    "period_to_timedelta",
    "session_id",
]

PERIOD_KEYS = frozenset(
    {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}
)
"""The keys a ``period`` dict may hold: the keyword arguments of :class:`datetime.timedelta`."""

# A period beyond this is certainly a mistake and would overflow datetime arithmetic.
_MAX_PERIOD = timedelta(days=365 * 100)


def session_id(session: object) -> Any:
    """Return the ``_id`` of *session*.

    Raises:
        InvalidSessionError: *session* is not a mapping or has no ``_id``.
    """
    if not isinstance(session, Mapping):
        raise InvalidSessionError(
            f"session must be a dict with an '_id', not {type(session).__name__}"
        )
    if "_id" not in session:
        raise InvalidSessionError("session has no '_id'; pass the dict get_session() returned")
    return session["_id"]


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPeriodError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidPeriodError(f"{name} must be a finite, non-negative number, not {value!r}")
    return float(value)


def period_to_timedelta(period: object, default: timedelta) -> timedelta:
    """Turn a ``period`` dict such as ``{"hours": 10}`` into a timedelta.

    ``None`` gives *default*. Only :data:`PERIOD_KEYS` are accepted, each with a
    finite non-negative number.

    Raises:
        InvalidPeriodError: *period* is not a dict, has an unknown key, or a bad value.
    """
    if period is None:
        return default
    if not isinstance(period, Mapping):
        raise InvalidPeriodError(
            f"period must be a dict such as {{'hours': 10}}, not {type(period).__name__}"
        )
    unknown = sorted(str(key) for key in period if key not in PERIOD_KEYS)
    if unknown:
        raise InvalidPeriodError(
            f"unknown period key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(PERIOD_KEYS))}"
        )
    values = {str(key): _check_number(f"period[{key!r}]", value) for key, value in period.items()}
    try:
        result = timedelta(**values)
    except OverflowError as exc:
        raise InvalidPeriodError(f"period {dict(period)!r} is too large") from exc
    if result > _MAX_PERIOD:
        raise InvalidPeriodError(f"period {dict(period)!r} is longer than 100 years")
    return result


def delay_to_timedelta(delay: object, default: float) -> timedelta:
    """Turn a delay in seconds (``None`` for *default*) into a timedelta.

    Raises:
        InvalidPeriodError: *delay* is not a finite, non-negative number.
    """
    seconds = _check_number("next_use_delay", default if delay is None else delay)
    return period_to_timedelta({"seconds": seconds}, timedelta())


def check_count(name: str, value: object) -> int:
    """Return *value* if it is a non-negative int.

    Raises:
        InvalidInputError: *value* is not a non-negative int.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative int, not {value!r}")
    return value


_INT64 = range(-(2**63), 2**63)


def _check_value(where: str, value: object, dotted_keys: bool) -> None:
    if isinstance(value, Mapping):
        _check_keys(where, value, dotted_keys=False)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(where, item, dotted_keys)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise InvalidPayloadError(f"{where}: {value} does not fit a 64-bit integer")


def _check_keys(where: str, document: Mapping[Any, Any], *, dotted_keys: bool) -> None:
    for key, value in document.items():
        if not isinstance(key, str):
            raise InvalidPayloadError(f"{where}: field names must be strings, not {key!r}")
        if key.startswith("$"):
            raise InvalidPayloadError(f"{where}: field name {key!r} starts with '$'")
        if not dotted_keys and "." in key:
            raise InvalidPayloadError(
                f"{where}: field name {key!r} holds a '.', which no dotted path could reach"
            )
        _check_value(where, value, dotted_keys)


def check_document(data: object) -> Mapping[str, Any]:
    """Return *data* if it can be inserted as a session document.

    Raises:
        InvalidPayloadError: *data* is not a dict, a field name is not a
            string, starts with ``$`` (operator injection) or holds a ``.``,
            or an integer does not fit 64 bits.
    """
    if not isinstance(data, Mapping):
        raise InvalidPayloadError(f"session data must be a dict, not {type(data).__name__}")
    _check_keys("add()", data, dotted_keys=False)
    return data


def _check_update_key(where: str, key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidPayloadError(f"{where}: field names must be non-empty strings, not {key!r}")
    if key.startswith("$") or ".$" in key:
        raise InvalidPayloadError(f"{where}: field name {key!r} is an operator, not a field")
    if key == "_id" or key.startswith("_id."):
        raise InvalidPayloadError(f"{where}: the '_id' of a session cannot be changed")
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
    _check_keys("payload", checked, dotted_keys=True)  # top-level keys are dotted paths
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
