"""``sessionpool import``: all the lines, or nothing.

Every line is parsed, checked and encoded as the server will store it before
anything is written; a line the server would refuse (a NUL in a field name,
over 16 MB, an ``_id`` used twice or already taken by another session) is
named by its number. What passes is then written in two steps, so no worker
ever sees part of an import:

1. the new sessions are inserted *staged*: inactive, with an ``_import``
   field holding this import's token and the ``active`` value they will get;
2. once every batch is in, one update activates them all and another removes
   the marks.

If the server refuses a document in step 1 (a unique index, a validator, a
concurrent insert of the same ``_id``), the staged sessions are deleted and
the refused line is named: nothing is left behind. Sessions whose key is
already in the pool are skipped, so an import can be run again.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import bson
import bson.errors
from bson import Decimal128, ObjectId

from ..client import MongoSessions
from ..exceptions import DatabaseError, InvalidPayloadError, SessionPoolError
from ..transfer import ParsedLine, get_path, parse_lines
from .output import Progress

__all__ = ["BATCH", "MARK", "import_lines"]

BATCH = 500
"""Documents per insert command."""

MARK = "_import"
"""The field that marks a staged session."""

_MAX_DOCUMENT = 16 * 1024 * 1024  # the server's limit on one document


def _identity(value: Any) -> Any:
    """A key under which values MongoDB finds equal are equal (5, Int64(5), 5.0)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("number", int(value))
    if isinstance(value, float):
        return ("number", int(value) if value.is_integer() else value)
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return ("number", int(number) if number == number.to_integral_value() else number)
    if isinstance(value, Decimal):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("bson", bson.encode({"v": value}))


def _prepare(pool: MongoSessions, lines: list[ParsedLine], key: str) -> list[dict[str, Any]]:
    """The documents to insert, one per line, checked as the server will see them.

    Raises:
        InvalidPayloadError: a line uses the reserved field, repeats a key or
            an ``_id`` of an earlier line, or cannot be stored.
    """
    documents: list[dict[str, Any]] = []
    keys: dict[Any, int] = {}
    ids: dict[Any, int] = {}
    for line in lines:
        if MARK in line.document:
            raise InvalidPayloadError(f"line {line.number}: the field {MARK!r} is reserved")
        document = pool.new_document(line.document)
        document.setdefault("_id", ObjectId())
        for seen, name, value in (
            (keys, key, get_path(document, key)),
            (ids, "_id", document["_id"]),
        ):
            identity = _identity(value)
            if identity in seen:
                raise InvalidPayloadError(
                    f"line {line.number}: {name} {value!r} appears twice (line {seen[identity]})"
                )
            seen[identity] = line.number
            if key == "_id":
                break
        try:
            size = len(bson.encode(document))
        except (bson.errors.BSONError, OverflowError, TypeError, ValueError) as exc:
            raise InvalidPayloadError(f"line {line.number}: cannot be stored: {exc}") from None
        if size > _MAX_DOCUMENT:
            raise InvalidPayloadError(
                f"line {line.number}: {size} bytes, over MongoDB's limit of {_MAX_DOCUMENT}"
            )
        documents.append(document)
    return documents


async def _present(pool: MongoSessions, key: str, values: list[Any]) -> set[Any]:
    found = await pool.find(filter={key: {"$in": values}}, projection={key: 1})
    return {_identity(get_path(document, key)) for document in found}


async def import_lines(
    pool: MongoSessions, source: Iterable[bytes], key: str, *, progress: bool
) -> tuple[int, int]:
    """Import the JSON lines of *source* into *pool*; return (inserted, skipped).

    Raises:
        InvalidPayloadError: a line is invalid; nothing was written.
        DatabaseError: the server refused a line or failed; what this import
            staged was removed (the message names the line when it can).
    """
    lines = list(parse_lines(source, key))  # the whole input is checked first
    documents = _prepare(pool, lines, key)
    numbers = [line.number for line in lines]
    new: list[tuple[int, dict[str, Any]]] = []
    for start in range(0, len(documents), BATCH):
        batch = documents[start : start + BATCH]
        present = await _present(pool, key, [get_path(doc, key) for doc in batch])
        if key != "_id":
            taken = await _present(pool, "_id", [doc["_id"] for doc in batch])
            for number, doc in zip(numbers[start:], batch, strict=False):
                if _identity(get_path(doc, key)) not in present and _identity(doc["_id"]) in taken:
                    raise InvalidPayloadError(
                        f"line {number}: _id {doc['_id']!r} is taken by another session"
                    )
        new += [
            (number, doc)
            for number, doc in zip(numbers[start:], batch, strict=False)
            if _identity(get_path(doc, key)) not in present
        ]
    token = secrets.token_hex(8)
    bar = Progress(len(new), sys.stderr, label="importing", enabled=progress and len(new) >= BATCH)
    try:
        for start in range(0, len(new), BATCH):
            chunk = new[start : start + BATCH]
            core = pool.core  # encrypts the payloads of an encrypted pool
            staged = [
                await core.encrypt(
                    {**doc, pool.active: False, MARK: {"token": token, "active": doc[pool.active]}}
                )
                for _, doc in chunk
            ]
            try:
                await pool.insert_many(staged, ordered=True)
            except DatabaseError as exc:
                index = exc.index if exc.index is not None and exc.index < len(chunk) else None
                where = f"line {chunk[index][0]}: " if index is not None else ""
                exc.args = (f"{where}{exc}; nothing was imported",)
                raise
            bar.update(start + len(chunk))
    except BaseException as exc:
        try:
            await pool.delete_many({f"{MARK}.token": token})
        except SessionPoolError as cleanup:
            exc.args = (
                f"{exc}; the sessions it staged (inactive, {MARK}.token {token!r}) "
                f"could not be removed: {cleanup}",
            )
        raise
    finally:
        bar.done()
    if new:
        marked = {f"{MARK}.token": token}
        await pool.update_many(marked, [{"$set": {pool.active: f"${MARK}.active"}}])
        await pool.update_many(marked, {"$unset": {MARK: ""}})
    return len(new), len(lines) - len(new)
