"""The admin tool's command line: commands, arguments, and the global options.

The global options (``--mongo-url``, ``--timeout``, ``--json``,
``--legacy-timezone``) are accepted before and after the command, and mean
the same in both places: given in only one, that value is used; given in both
with different values, the command is refused (exit 2) before anything runs.
Only when neither gives one do the environment (``SESSIONPOOL_MONGO_URL``,
``SESSIONPOOL_LEGACY_TIMEZONE``) and the defaults apply.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from bson import ObjectId

from ..states import State

__all__ = [
    "GLOBALS",
    "NotFoundError",
    "UsageError",
    "build_parser",
    "parse_args",
    "parse_id",
    "parse_period",
    "split_pool",
]

PROG = "sessionpool"
STATES = tuple(state.value for state in State)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    """Bad command-line input: exit code 2, nothing written."""


class NotFoundError(Exception):
    """A named session does not exist: exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True, slots=True)
class GlobalOption:
    """An option accepted before and after the command."""

    name: str
    flag: str
    help: str
    environment: str | None = None
    default: Any = None
    kind: str = "str"


GLOBALS = (
    GlobalOption(
        "mongo_url",
        "--mongo-url",
        "MongoDB connection string (default: $SESSIONPOOL_MONGO_URL)",
        environment="SESSIONPOOL_MONGO_URL",
    ),
    GlobalOption("timeout", "--timeout", "seconds per operation (10)", default=10.0, kind="float"),
    GlobalOption("json", "--json", "print JSON for scripts", default=False, kind="flag"),
    GlobalOption(
        "legacy_timezone",
        "--legacy-timezone",
        "the zone whose naive wall-clock times the pool's documents hold, such as "
        "Europe/Moscow (default: $SESSIONPOOL_LEGACY_TIMEZONE)",
        environment="SESSIONPOOL_LEGACY_TIMEZONE",
    ),
)


def _add_globals(parser: argparse.ArgumentParser, prefix: str) -> None:
    for option in GLOBALS:
        settings: dict[str, Any] = {"dest": prefix + option.name, "help": option.help}
        if option.kind == "flag":
            settings["action"] = "store_true"
        elif option.kind == "float":
            settings["type"] = float
        parser.add_argument(option.flag, default=argparse.SUPPRESS, **settings)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, not {value}")
    return value


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +03:00)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    common = _Parser(add_help=False)
    _add_globals(common, "")
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
    _add_globals(parser, "before_")
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
    exp = command("export", "print sessions as JSON lines (values redacted)", [pool])
    exp.add_argument("--reveal", action="store_true", help="print every value unredacted")
    exp.add_argument("--state", choices=STATES)
    lst = command("list", "list sessions with their state", [pool])
    lst.add_argument("--state", choices=STATES)
    lst.add_argument("--limit", type=_limit, default=50, help="at most N sessions (50; 0: all)")
    lst.add_argument("--reason", help="only sessions whose last reason is REASON")
    stats = command("stats", "pool statistics: one pool, or every pool of a database", [])
    stats.add_argument("pool", metavar="DATABASE[.COLLECTION]")
    reason = _Parser(add_help=False)
    reason.add_argument("--reason", help="why, kept in the session's history")
    for name, help_text in (("lock", "lock sessions for a while"), ("block", "block sessions")):
        sub = command(name, help_text, [ids, reason])
        when = sub.add_mutually_exclusive_group()
        when.add_argument("--for", dest="period", help='10m, 2h, 1d or {"hours": 1}')
        when.add_argument(
            "--until", type=_instant, help="an instant with its zone: 2026-05-01T12:00:00+03:00"
        )
        sub.add_argument("--scope", help="for hand-outs with this scope only")
    command("release", "make sessions available now", [ids, reason])
    command("activate", "enable disabled sessions", [ids, reason])
    command("deactivate", "disable sessions for good", [ids, reason])
    command("delete", "delete sessions", [ids])
    why = command("why", "a session's last reason and history of state changes", [pool])
    why.add_argument("id", metavar="ID", help="the session's _id")
    why.add_argument(
        "--id-type", choices=("auto", "str", "int", "objectid"), default="auto", help="see lock"
    )
    command("ensure-indexes", "create the indexes hand-outs and statistics use", [pool])
    mig = command(
        "migrate",
        "give sessions the seed library wrote their order key; drop obsolete indexes",
        [],
    )
    mig.add_argument("pool", metavar="DATABASE[.COLLECTION]")
    return parser


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> Any:
    """Parse *argv* and settle each global option (see the module docstring).

    Raises:
        UsageError: the arguments are invalid, or a global option is given
            before and after the command with different values.
    """
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    for option in GLOBALS:
        before = getattr(args, "before_" + option.name, None)
        after = getattr(args, option.name, None)
        if before is not None and after is not None and before != after:
            raise UsageError(
                f"{option.flag} is given before and after the command with different values"
            )
        value = after if after is not None else before
        if value is None and option.environment:
            value = environ.get(option.environment) or None
        setattr(args, option.name, option.default if value is None else value)
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 3600):
        raise UsageError(f"--timeout must be from 0 to 3600 seconds, not {args.timeout:g}")
    # What can be checked without a server is checked before connecting.
    split_pool(args.pool, allow_database=args.command in {"stats", "migrate"})
    for text in [*getattr(args, "ids", ()), *([args.id] if hasattr(args, "id") else [])]:
        parse_id(text, args.id_type)
    parse_period(getattr(args, "period", None))
    return args


def parse_id(text: str, id_type: str) -> Any:
    """Turn a command-line id into the ``_id`` value (see ``--id-type``)."""
    if id_type == "str":
        return text
    if id_type == "int" or (id_type == "auto" and re.fullmatch(r"-?\d{1,18}", text)):
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
