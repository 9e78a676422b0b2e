"""``sessionpool`` (also ``python -m sessionlib``): the pool admin tool.

Human-readable output by default, ``--json`` for scripts. Exit codes: 0 done,
1 the server failed or a session was not found, 2 bad input (nothing was
written). The MongoDB URL comes from ``--mongo-url`` or
``SESSIONPOOL_MONGO_URL``; passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

from bson import ObjectId

from .client import MongoSessions, combine
from .clock import as_utc
from .discovery import is_pool_name, looks_like_session
from .exceptions import InvalidInputError, SessionPoolError
from .fields import LockKind
from .logger import redact_url
from .stats import PoolStatistics
from .transfer import dump_line, get_path, parse_lines, redact

__all__ = ["main"]

PROG = "sessionpool"
STATES = ("available", "in_use", "locked", "blocked", "inactive")
IMPORT_BATCH = 500
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


class NotFoundError(Exception):
    """A named session does not exist: exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass
class Output:
    """Where results go: a table or lines for people, JSON for scripts."""

    json: bool
    stream: IO[str]

    def result(self, human: str, data: Any) -> None:
        if self.json:
            self.stream.write(json.dumps(data, default=_json_default, ensure_ascii=False) + "\n")
        else:
            self.stream.write(human.rstrip("\n") + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


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


def parse_id(text: str, id_type: str) -> Any:
    """Turn a command-line id into the ``_id`` value (see ``--id-type``)."""
    if id_type == "str":
        return text
    if id_type == "int" or (id_type == "auto" and re.fullmatch(r"-?\d+", text)):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{text!r} is not an integer id") from None
    if id_type == "objectid" or (id_type == "auto" and ObjectId.is_valid(text) and len(text) == 24):
        if not ObjectId.is_valid(text):
            raise UsageError(f"{text!r} is not an ObjectId")
        return ObjectId(text)
    return text


def parse_period(text: str | None) -> dict[str, float] | None:
    """``90s``, ``10m``, ``2h``, ``1d``, ``1w`` or a JSON dict such as ``{"hours": 1}``."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match:
        return {_UNITS[match.group(2)]: float(match.group(1))}
    try:
        period = json.loads(text)
    except ValueError:
        raise UsageError(f"--for: {text!r} is neither like 10m, 2h, 1d nor a JSON dict") from None
    if not isinstance(period, dict):
        raise UsageError(f"--for: {text!r} is not a JSON dict")
    return period


def split_pool(target: str, *, allow_database: bool = False) -> tuple[str, str | None]:
    """Split ``database.collection``; with *allow_database*, a bare database too."""
    database, dot, collection = target.partition(".")
    if not database or (dot and not collection):
        raise UsageError(f"{target!r} is not DATABASE.COLLECTION")
    if not dot and not allow_database:
        raise UsageError(f"{target!r} names no collection: write DATABASE.COLLECTION")
    return database, collection or None


def state_of(document: dict[str, Any], now: datetime) -> str:
    """The state of a session document at *now* (as the statistics count it)."""
    if document.get("active") is False:
        return "inactive"
    next_use = document.get("next_use")
    if not isinstance(next_use, datetime) or as_utc(next_use) < now:
        return "available"
    kind = document.get("lock_kind")
    return kind if kind in {k.value for k in LockKind} else LockKind.LOCKED.value


def state_filter(pool: MongoSessions, state: str) -> dict[str, Any]:
    """A query filter selecting the sessions in *state*."""
    if state == "inactive":
        return {pool.active: False}
    if state == "available":
        return combine(pool.default_filter, pool._filter_exclude_lock())
    locked = combine(pool.default_filter, pool._filter_include_lock())
    if state == LockKind.LOCKED:  # seed-written locks have no kind: they count here
        return combine(locked, {pool.lock_kind: {"$nin": [LockKind.IN_USE, LockKind.BLOCKED]}})
    return combine(locked, {pool.lock_kind: state})


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mongo-url",
        default=os.environ.get("SESSIONPOOL_MONGO_URL"),
        help="MongoDB connection string (default: $SESSIONPOOL_MONGO_URL)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per operation (10)")


def _parser() -> _Parser:
    # The global options work before and after the command; after it, they
    # must not reset what was given before it (hence SUPPRESS there).
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(common)
    ids = _Parser(add_help=False)
    ids.add_argument("pool", metavar="DATABASE.COLLECTION")
    ids.add_argument("ids", metavar="ID", nargs="+", help="session _id(s)")
    ids.add_argument(
        "--id-type",
        choices=("auto", "str", "int", "objectid"),
        default="auto",
        help="how to read ID: auto = ObjectId if 24 hex digits, int if digits, else string",
    )
    pool = _Parser(add_help=False)
    pool.add_argument("pool", metavar="DATABASE.COLLECTION")

    parser = _Parser(prog=PROG, description="Administer session pools stored in MongoDB.")
    _global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, parents: list[_Parser]) -> _Parser:
        sub: _Parser = commands.add_parser(name, help=help, parents=[common, *parents])
        return sub

    add = command("add", "add one session (a JSON object, as argument or on stdin)", [pool])
    add.add_argument("document", nargs="?", help="JSON object; default: read stdin")
    imp = command(
        "import", "add sessions from JSON lines; ones already present are skipped", [pool]
    )
    imp.add_argument("file", help="JSON-lines file, or - for stdin")
    imp.add_argument("--key", default="_id", help="field that identifies a session (_id)")
    exp = command("export", "print sessions as JSON lines (session values redacted)", [pool])
    exp.add_argument("--reveal", action="store_true", help="print session values unredacted")
    exp.add_argument("--state", choices=STATES)
    lst = command("list", "list sessions with their state", [pool])
    lst.add_argument("--state", choices=STATES)
    lst.add_argument("--limit", type=int, default=50, help="at most N sessions (50; 0: all)")
    stats = command("stats", "pool statistics: one pool, or every pool of a database", [])
    stats.add_argument("pool", metavar="DATABASE[.COLLECTION]")
    for name, help_text in (("lock", "lock sessions for a while"), ("block", "block sessions")):
        sub = command(name, help_text, [ids])
        sub.add_argument("--for", dest="period", help='10m, 2h, 1d or {"hours": 1}')
    command("release", "make sessions available now", [ids])
    command("activate", "enable disabled sessions", [ids])
    command("deactivate", "disable sessions for good", [ids])
    command("delete", "delete sessions", [ids])
    command("ensure-indexes", "create the indexes hand-outs and statistics use", [pool])
    return parser


async def _connect(args: argparse.Namespace, database: str, collection: str) -> MongoSessions:
    if not args.mongo_url:
        raise UsageError("no MongoDB URL: pass --mongo-url or set SESSIONPOOL_MONGO_URL")
    return await MongoSessions(
        args.mongo_url,
        db=database,
        collection=collection,
        timeout=args.timeout,
        max_allowed_reconnect=1,
        app_name="sessionpool-cli",
    ).connect()


def _read_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


async def cmd_add(pool: MongoSessions, args: argparse.Namespace, out: Output) -> None:
    text = args.document if args.document is not None else sys.stdin.read()
    lines = list(parse_lines([text.encode("utf-8")], key=None))
    if len(lines) != 1:
        raise UsageError("add takes exactly one JSON object")
    (line,) = lines
    result = await pool.add(line.document)
    out.result(f"added session {result.inserted_id!r}", {"inserted_id": result.inserted_id})


async def cmd_import(pool: MongoSessions, args: argparse.Namespace, out: Output) -> None:
    with _read_input(args.file) as source:
        parsed = list(parse_lines(source, args.key))  # the whole file is checked first
    seen: set[str] = set()
    for line in parsed:
        marker = repr(get_path(line.document, args.key))
        if marker in seen:
            raise InvalidInputError(f"line {line.number}: {args.key} {marker} appears twice")
        seen.add(marker)
    inserted = skipped = 0
    progress = Progress(len(parsed), sys.stderr, enabled=not args.json)
    for start in range(0, len(parsed), IMPORT_BATCH):
        batch = parsed[start : start + IMPORT_BATCH]
        values = [get_path(line.document, args.key) for line in batch]
        present = {
            repr(get_path(doc, args.key))
            for doc in await pool.find(filter={args.key: {"$in": values}}, projection={args.key: 1})
        }
        new = [
            pool.new_document(line.document)
            for line in batch
            if repr(get_path(line.document, args.key)) not in present
        ]
        if new:
            await pool.insert_many(new, ordered=False)
        inserted += len(new)
        skipped += len(batch) - len(new)
        progress.update(start + len(batch))
    progress.done()
    out.result(
        f"imported {inserted} session(s); {skipped} already present",
        {"inserted": inserted, "skipped": skipped},
    )


class Progress:
    """A progress line on stderr for long imports, at most twice a second."""

    def __init__(self, total: int, stream: IO[str], *, enabled: bool) -> None:
        self.total, self.stream = total, stream
        self.enabled = enabled and total >= IMPORT_BATCH
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.5 or done == self.total):
            self._last = now
            self.stream.write(f"\rimporting: {done}/{self.total} ({100 * done // self.total}%)")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


async def cmd_export(pool: MongoSessions, args: argparse.Namespace, out: Output) -> None:
    query = state_filter(pool, args.state) if args.state else {}
    for document in await pool.find(filter=query, sort=[("_id", 1)]):
        out.stream.write(dump_line(document if args.reveal else redact(document)) + "\n")


async def cmd_list(pool: MongoSessions, args: argparse.Namespace, out: Output) -> None:
    query = state_filter(pool, args.state) if args.state else {}
    documents = await pool.find(filter=query, sort=[("_id", 1)], limit=max(args.limit, 0))
    now = pool.clock()
    rows = [
        {
            "_id": doc["_id"],
            "state": state_of(doc, now),
            "next_use": doc.get("next_use"),
            "last_use": doc.get("last_use"),
            "count_use": doc.get("count_use", 0),
            "count_success": doc.get("count_success", 0),
        }
        for doc in documents
    ]
    headers = ["_id", "state", "next_use", "last_use", "uses", "successes"]
    human = table(headers, [list(row.values()) for row in rows]) if rows else "no sessions"
    out.result(human, rows)


def _stats_row(name: str, stats: PoolStatistics) -> dict[str, Any]:
    return {
        "pool": name,
        "total": stats.total,
        "available": stats.available,
        "in_use": stats.in_use,
        "locked": stats.locked,
        "blocked": stats.blocked,
        "inactive": stats.inactive,
        "uses": stats.uses,
        "successes": stats.successes,
        "next_unlock": stats.next_unlock,
    }


async def cmd_stats(pool: MongoSessions, args: argparse.Namespace, out: Output) -> None:
    database, collection = split_pool(args.pool, allow_database=True)
    if collection is not None:
        names = [collection]
    else:
        names = []
        for name in sorted(await pool.list_collection_names()):
            sample = await pool.with_collection(name).find_one({}) if is_pool_name(name) else {}
            if is_pool_name(name) and looks_like_session(sample):
                names.append(name)
    rows = [
        _stats_row(f"{database}.{name}", await pool.with_collection(name).statistics())
        for name in names
    ]
    headers = list(rows[0]) if rows else []
    human = table(headers, [list(r.values()) for r in rows]) if rows else "no pools"
    out.result(human, rows if collection is None else rows[0])


async def _each_id(
    pool: MongoSessions,
    args: argparse.Namespace,
    out: Output,
    verb: str,
    action: Callable[[dict[str, Any]], Awaitable[Any]],
) -> None:
    ids = [parse_id(text, args.id_type) for text in args.ids]
    period = getattr(args, "period", None)
    if period is not None:
        parse_period(period)  # bad input fails before anything is written
    missing = []
    for session_id in ids:
        result = await action({"_id": session_id})
        count = getattr(result, "matched_count", getattr(result, "deleted_count", 0))
        if not count:
            missing.append(session_id)
    done = len(ids) - len(missing)
    out.result(f"{verb} {done} session(s)", {verb: done, "missing": missing})
    if missing:
        raise NotFoundError(f"no session with _id {', '.join(map(repr, missing))}")


async def run(args: argparse.Namespace, out: Output) -> None:
    """Connect and run the command in *args*."""
    if args.command == "stats":
        database, collection = split_pool(args.pool, allow_database=True)
    else:
        database, collection = split_pool(args.pool)
    period = parse_period(getattr(args, "period", None))
    pool = await _connect(args, database, collection or "sessions")
    try:
        handlers: dict[str, Callable[[], Awaitable[None]]] = {
            "add": lambda: cmd_add(pool, args, out),
            "import": lambda: cmd_import(pool, args, out),
            "export": lambda: cmd_export(pool, args, out),
            "list": lambda: cmd_list(pool, args, out),
            "stats": lambda: cmd_stats(pool, args, out),
            "lock": lambda: _each_id(
                pool, args, out, "locked", lambda s: pool.session_lock(s, period)
            ),
            "block": lambda: _each_id(
                pool, args, out, "blocked", lambda s: pool.session_block(s, period)
            ),
            "release": lambda: _each_id(pool, args, out, "released", pool.session_release),
            "activate": lambda: _each_id(pool, args, out, "activated", pool.session_activate),
            "deactivate": lambda: _each_id(pool, args, out, "deactivated", pool.session_inactive),
            "delete": lambda: _each_id(pool, args, out, "deleted", pool.session_delete),
            "ensure-indexes": lambda: _ensure_indexes(pool, out),
        }
        await handlers[args.command]()
    finally:
        await pool.close()


async def _ensure_indexes(pool: MongoSessions, out: Output) -> None:
    names = await pool.ensure_indexes()
    out.result(f"indexes present: {', '.join(names)}", {"indexes": names})


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run the admin tool; return the exit code."""
    stdout = stdout or sys.stdout
    url = None
    try:
        args = _parser().parse_args(argv)
        url = args.mongo_url
        asyncio.run(run(args, Output(json=args.json, stream=stdout)))
    except (UsageError, InvalidInputError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except NotFoundError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except SessionPoolError as exc:
        message = str(exc)
        if url:
            message = message.replace(url, redact_url(url))
        print(f"{PROG}: error: {message} (server {redact_url(url)})", file=sys.stderr)
        return 1
    return 0
