"""Adding, changing and deleting session documents.

A new document gets the seed's defaults (``active=True``, counters 0,
``created=now``, no ``last_use`` or ``next_use``), overridden by the caller's
data, and an order key by :mod:`sessionlib.order`'s rule.
"""

from __future__ import annotations

from typing import Any

from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from . import updates
from .core import PoolCore
from .exceptions import InvalidPayloadError
from .now import Now
from .order import key_of
from .validation import check_document, check_set_payload, check_unset_payload

__all__ = ["add", "delete", "new_document", "update"]


def new_document(core: PoolCore, data: dict[str, Any], now: Now) -> dict[str, Any]:
    """The document ``add`` inserts for *data* at *now*.

    Raises:
        InvalidPayloadError: *data* is not a dict or has unsafe field names.
    """
    check_document(data)
    fields = core.connection
    document = {
        fields.active: True,
        fields.count_use: 0,
        fields.count_success: 0,
        fields.created: now.written,
        fields.last_use: None,
        fields.next_use: None,
        **data,
    }
    if fields.ready_at not in data:
        key = key_of(document, fields, since=document.get(fields.last_use))
        if key is not None:  # a missing key sorts first: never used
            document[fields.ready_at] = key
    return document


async def add(core: PoolCore, data: dict[str, Any]) -> InsertOneResult:
    """Insert a session built by :func:`new_document`."""
    check_document(data)
    document = new_document(core, data, await core.now())
    return await core.connection.insert_one(await core.encrypt(document))


async def update(
    core: PoolCore,
    session: dict[str, Any],
    payload: dict[str, Any],
    unset_payload: dict[str, Any] | list[str] | None,
) -> UpdateResult:
    """Set *payload*'s fields and remove *unset_payload*'s (see ``MongoSessions.session_update``).

    Raises:
        InvalidInputError: the session or a payload is invalid; nothing was written.
    """
    query = core.one(session)
    to_set = check_set_payload(payload)
    to_unset = list(check_unset_payload(unset_payload))
    if not to_set and not to_unset:
        raise InvalidPayloadError("session_update needs a non-empty payload or unset_payload")
    now = await core.now()
    to_set = await core.encrypt(to_set)
    change = updates.set_payload(core.connection, to_set, to_unset, now=now)
    return await core.connection.update_one(query, change)


async def delete(core: PoolCore, session: dict[str, Any]) -> DeleteResult:
    """Delete the session.

    Raises:
        InvalidSessionError: *session* has no plain ``_id``; nothing was deleted.
    """
    return await core.connection.delete_one(core.one(session))
