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
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    metavar: str | None = None


GLOBALS = (
    GlobalOption(
        "mongo_url",
        "--mongo-url",
        "MongoDB connection string (default: $SESSIONPOOL_MONGO_URL)",
        environment="SESSIONPOOL_MONGO_URL",
        metavar="URL",
    ),
    GlobalOption(
        "timeout",
        "--timeout",
        "seconds per operation (10)",
        default=10.0,
        kind="float",
        metavar="SECONDS",
    ),
    GlobalOption("json", "--json", "print JSON for scripts", default=False, kind="flag"),
    GlobalOption(
        "debug",
        "--debug",
        "on a server error, print the driver's whole message and traceback",
        default=False,
        kind="flag",
    ),
    GlobalOption(
        "legacy_timezone",
        "--legacy-timezone",
        "the zone whose naive wall-clock times the pool's documents hold, such as "
        "Europe/Moscow (default: $SESSIONPOOL_LEGACY_TIMEZONE)",
        environment="SESSIONPOOL_LEGACY_TIMEZONE",
        metavar="ZONE",
    ),
    GlobalOption(
        "tz",
        "--tz",
        "the zone times are shown in, such as Europe/Moscow or UTC (default: the legacy zone "
        "under --legacy-timezone, else this machine's; $SESSIONPOOL_TZ)",
        environment="SESSIONPOOL_TZ",
        metavar="ZONE",
    ),
)


def _add_globals(parser: argparse.ArgumentParser, prefix: str) -> None:
    for option in GLOBALS:
        settings: dict[str, Any] = {"dest": prefix + option.name, "help": option.help}
        if option.kind == "flag":
            settings["action"] = "store_true"
        elif option.kind == "float":
            settings["type"] = float
        if option.metavar is not None:
            settings["metavar"] = option.metavar
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


def _count(text: str) -> int:
    value = _limit(text)
    if value > 10**9:
        raise argparse.ArgumentTypeError(f"must be at most 10**9, not {value}")
    return value


def _ratio(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 3600 seconds, not {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _concurrency(text: str) -> int:
    value = _limit(text)
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, not {value}")
    return value


def _states(text: str) -> tuple[str, ...]:
    from .revive import REVIVABLE

    states = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [state for state in states if state not in REVIVABLE]
    if not states or unknown:
        raise argparse.ArgumentTypeError(
            f"states are a comma-separated list of {', '.join(REVIVABLE)}; not {text!r}"
        )
    return states


def _check(text: str) -> Callable[..., Any]:
    """Import ``module:function`` (the current directory is on the path, as for ``python -m``)."""
    module_name, _, name = text.partition(":")
    if not module_name or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODULE:FUNCTION")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error of the user's module is a usage error here
        raise argparse.ArgumentTypeError(
            f"cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    function: Callable[..., Any] | None = getattr(module, name, None)
    if not callable(function):
        raise argparse.ArgumentTypeError(f"{module_name} has no function {name!r}")
    return function


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
    keys = _encryption_options(required=False)
    keys_required = _encryption_options(required=True)

    parser = _Parser(prog=PROG, description="Administer session pools stored in MongoDB.")
    _add_globals(parser, "before_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, parents: list[_Parser]) -> _Parser:
        sub: _Parser = commands.add_parser(name, help=help, parents=[common, *parents])
        return sub

    add = command("add", "add one session (a JSON object, as argument or on stdin)", [pool, keys])
    add.add_argument("document", nargs="?", help="JSON object; default: read stdin")
    imp = command(
        "import", "add sessions from JSON lines; ones already present are skipped", [pool, keys]
    )
    imp.add_argument("file", help="JSON-lines file, or - for stdin")
    imp.add_argument("--key", default="_id", help="field that identifies a session (_id)")
    exp = command("export", "print sessions as JSON lines (values redacted)", [pool, keys])
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
    tgt = command(
        "target",
        "show or set the pool's alert target (exported; the alert rules compare against it)",
        [pool],
    )
    tgt.add_argument("--min-available", type=_count, help="fewest available sessions wanted")
    tgt.add_argument("--min-available-ratio", type=_ratio, help="least share available, 0 to 1")
    tgt.add_argument("--clear", action="store_true", help="remove the target (the default applies)")
    tgt.add_argument(
        "--create",
        action="store_true",
        help="set it although the pool does not exist yet (it is coming)",
    )
    brk = command("breaker", "show the pool's circuit breaker, or --reset it", [pool])
    brk.add_argument("--reset", action="store_true", help="close it and forget its failures")
    rev = command(
        "revive",
        "run a check on sessions that are out; with --apply, bring back those that pass",
        [pool],
    )
    rev.add_argument(
        "--check",
        required=True,
        type=_check,
        metavar="MODULE:FUNCTION",
        help="an async function taking the session document, true when it works",
    )
    rev.add_argument(
        "--state",
        type=_states,
        default=("blocked", "inactive"),
        help="comma-separated: blocked, inactive, locked (default: blocked,inactive)",
    )
    rev.add_argument("--concurrency", type=_concurrency, default=4, help="checks at once (4)")
    rev.add_argument("--check-timeout", type=_seconds, default=30.0, help="seconds per check (30)")
    rev.add_argument("--limit", type=_limit, default=0, help="at most N sessions (0: all)")
    rev.add_argument(
        "--apply", action="store_true", help="write: without it, a dry run that writes nothing"
    )
    top = command(
        "top",
        "a live view of the pools: states, availability, breakers, hand-outs (q quits)",
        [],
    )
    top.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="DATABASE[.COLLECTION]",
        help="which pools: a database, DATABASE.GLOB such as pools.tg*, or a GLOB (default: all)",
    )
    top.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes (2)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    key_commands = command(
        "keys", "create or rotate the encryption keys (see 'encrypt')", []
    ).add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    key_commands.add_parser(
        "create",
        help="create the master key file (mode 0600) and the data key, unless they exist",
        parents=[common, keys_required],
    )
    rotate = key_commands.add_parser(
        "rotate",
        help="re-wrap the data keys under a new master key file (sessions are not rewritten)",
        parents=[common, keys_required],
    )
    rotate.add_argument(
        "--new-key-file", required=True, metavar="FILE", help="the new master key (created if new)"
    )
    command(
        "encrypt",
        "encrypt the sessions of a plain pool in place, one at a time (idempotent)",
        [pool, keys_required],
    )
    mig = command(
        "migrate",
        "give sessions the seed library wrote their order key; drop obsolete indexes",
        [],
    )
    mig.add_argument("pool", metavar="DATABASE[.COLLECTION]")
    return parser


def _encryption_options(*, required: bool) -> _Parser:
    """The options naming the encryption keys (see :mod:`sessionlib.encryption`)."""
    options = _Parser(add_help=False)
    options.add_argument(
        "--key-file",
        required=required,
        metavar="FILE",
        help="the master key file: sessions are encrypted and decrypted with it",
    )
    options.add_argument(
        "--key-vault",
        default="encryption.__keyVault",
        metavar="DB.COLL",
        help="the key vault collection (encryption.__keyVault)",
    )
    options.add_argument(
        "--key-alt-name", default="sessionpool", metavar="NAME", help="the data key's name"
    )
    return options


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
    args.zone = display_zone(args.tz, args.legacy_timezone)
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 3600):
        raise UsageError(f"--timeout must be from 0 to 3600 seconds, not {args.timeout:g}")
    # What can be checked without a server is checked before connecting.
    if hasattr(args, "pool"):
        split_pool(args.pool, allow_database=args.command in {"stats", "migrate"})
    for text in [*getattr(args, "ids", ()), *([args.id] if hasattr(args, "id") else [])]:
        parse_id(text, args.id_type)
    parse_period(getattr(args, "period", None))
    return args


def display_zone(name: str | None, legacy: str | None) -> tzinfo:
    """The zone times are shown in: *name*, else the legacy zone, else this machine's.

    Raises:
        UsageError: *name* is not a zone the system knows.
    """
    chosen = name or legacy
    if chosen is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    if chosen.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(chosen)
    except (ZoneInfoNotFoundError, ValueError):
        option = "--tz" if name else "--legacy-timezone"
        raise UsageError(
            f"{option}: {chosen!r} is not a time zone (such as Europe/Moscow)"
        ) from None


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
