"""``sessionpool-exporter`` / ``python -m exporter``: run the daemon.

Exit codes: 0 after a clean stop (SIGTERM or SIGINT), 1 when start-up fails
(port taken, embedded server missing), 2 for invalid configuration.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from sessionlib import SessionPoolError

from .config import Config, ConfigError, load_config
from .daemon import Exporter
from .secantus import ServerStartError

__all__ = ["main"]

log = logging.getLogger("exporter")


def _secrets(config: Config) -> list[str]:
    secrets = [config.basic_auth_password or ""]
    if config.mongo_url:
        password = urlsplit(config.mongo_url).password
        if password:
            secrets += [password, unquote(password)]
    return secrets


async def _serve(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Exporter(config).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter with *argv* (default: the command line); return the exit code."""
    from .logs import setup_logging

    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"sessionpool-exporter: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format, secrets=_secrets(config))
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", config.listen, config.port, exc.strerror or exc)
        return 1
    except ServerStartError as exc:
        log.error("the embedded demo could not start: %s", exc)
        return 1
    except SessionPoolError as exc:
        what = "the embedded demo could not start" if config.embedded else "stopped"
        log.error("%s: %s", what, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
