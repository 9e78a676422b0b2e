"""``sessionpool`` (also ``python -m sessionlib``): the pool admin tool.

Human-readable output by default, ``--json`` for scripts. Exit codes: 0 done,
1 the server failed or a session was not found, 2 bad input (nothing was
written), 141 when the reader of the output went away (``sessionpool export
| head``). The MongoDB URL comes from ``--mongo-url`` or
``SESSIONPOOL_MONGO_URL``; passwords are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import IO, Any

from ..exceptions import ConfigurationError, InvalidInputError, SessionPoolError
from ..logger import redact_url
from ..store import SessionStore
from .commands import COMMANDS, encryption_of
from .output import Output
from .parser import PROG, NotFoundError, UsageError, parse_args

__all__ = ["main"]

BROKEN_PIPE = 141
"""Exit code when stdout was closed early: what a shell reports for SIGPIPE."""


async def run(args: Any, out: Output) -> None:
    """Connect and run the command in *args*.

    Raises:
        UsageError: no MongoDB URL.
        SessionPoolError: the server failed, or an argument is invalid.
    """
    if not args.mongo_url:
        raise UsageError("no MongoDB URL: pass --mongo-url or set SESSIONPOOL_MONGO_URL")
    # keys and encrypt read and write ciphertext as it is stored: a plain client.
    decrypting = args.command not in {"keys", "encrypt"}
    store = SessionStore(
        args.mongo_url,
        timeout=args.timeout,
        max_allowed_reconnect=1,
        app_name="sessionpool-cli",
        legacy_timezone=args.legacy_timezone,
        encryption=encryption_of(args) if decrypting else None,
    )
    async with store:
        await COMMANDS[args.command](store, args, out)


VERBOSE = (
    re.compile(r"\s*\(configured timeouts:[^)]*\)"),
    re.compile(r",\s*Timeout: [\d.]+s"),
    re.compile(r",\s*Topology Description: .*$", re.DOTALL),
    re.compile(r",\s*full error: .*$", re.DOTALL),
)
"""The driver's details that make a server error unreadable on one line."""

BRIEF = 200
"""Characters of a server error shown without --debug."""


def brief(message: str) -> str:
    """*message* on one line, without the driver's topology and timeout details."""
    for pattern in VERBOSE:
        message = pattern.sub("", message)
    message = " ".join(message.split())
    return message if len(message) <= BRIEF else message[: BRIEF - 1] + "…"


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run the admin tool; return the exit code."""
    stdout = stdout or sys.stdout
    url = None
    debug = False
    try:
        args = parse_args(argv)
        url, debug = args.mongo_url, args.debug
        asyncio.run(run(args, Output(json=args.json, stream=stdout, zone=args.zone)))
    except (UsageError, InvalidInputError, ConfigurationError) as exc:
        message = str(exc)
        _error(message.replace(url, redact_url(url)) if url else message)
        return 2
    except NotFoundError as exc:
        _error(str(exc))
        return 1
    except SessionPoolError as exc:
        message = str(exc) if debug else brief(str(exc))
        if url:
            message = message.replace(url, redact_url(url))
        hint = "" if debug else "; --debug for the driver's details"
        _error(f"{message} (server {redact_url(url)}{hint})")
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, as other tools do, and
        # keep Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return BROKEN_PIPE
    return 0
