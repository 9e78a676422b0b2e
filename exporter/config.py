"""The exporter's configuration: flags, environment variables and a YAML file.

Every setting is a flag; each flag can also be set by an environment
variable named ``SESSIONPOOL_`` plus the flag in upper case with ``-`` as
``_`` (``--mongo-url`` is ``SESSIONPOOL_MONGO_URL``), or by a key of the YAML
file given with ``--config`` (the flag's name with ``_``). Precedence: flag,
then environment, then file, then the default. Repeatable flags take a
comma-separated list in the environment and a list in the file.

Invalid configuration raises :class:`ConfigError`, which ``__main__`` turns
into one line on stderr and exit code 2, before anything starts.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

__all__ = ["ENV_PREFIX", "Config", "ConfigError", "load_config"]

ENV_PREFIX = "SESSIONPOOL_"
DEFAULT_PORT = 9863


class ConfigError(Exception):
    """The configuration is invalid; the message says which setting and why."""


@dataclass(frozen=True, slots=True)
class Config:
    """The exporter's settings, validated.

    ``mongo_url`` is ``None`` in embedded mode until the embedded server has
    started.
    """

    mongo_url: str | None = None
    databases: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    interval: float = 15.0
    discovery_interval: float = 60.0
    pool_timeout: float = 10.0
    concurrency: int = 16
    active_offset: float = 0.0
    listen: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    auto_release: bool = False
    auto_release_interval: float = 60.0
    log_format: str = "text"
    log_level: str = "info"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_user: str | None = None
    basic_auth_password: str | None = field(default=None, repr=False)
    embedded: bool = False
    embedded_dir: Path = Path(".sessionpool-demo")
    demo_traffic: bool = True

    @property
    def stale_after(self) -> float:
        """Seconds after which the last refresh is too old for ``/readyz``: three intervals."""
        return 3 * self.interval


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, raised as :class:`ConfigError`."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="sessionpool-exporter",
        description=(
            "Serve session pool statistics from MongoDB as Prometheus metrics. "
            "Every flag can also be set as SESSIONPOOL_<FLAG> in the environment "
            "(e.g. SESSIONPOOL_MONGO_URL) or in the --config YAML file."
        ),
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", metavar="FILE", help="YAML file with settings (keys as flag names)")
    g = p.add_argument_group("MongoDB")
    g.add_argument(
        "--mongo-url",
        metavar="URL",
        help="MongoDB connection string; without it (or with --embedded) a demo server is started",
    )
    g.add_argument(
        "--mongo-url-file", metavar="FILE", help="read the connection string from FILE (a secret)"
    )
    g.add_argument(
        "--database",
        dest="databases",
        action="append",
        metavar="NAME",
        help="database to watch (repeatable; default: all but admin, local, config)",
    )
    g.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only collections matching this shell pattern, e.g. 'tg_*' or 'pools.tg_*' "
        "(repeatable)",
    )
    g.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="skip matching collections (repeatable)",
    )
    g.add_argument(
        "--active-offset",
        type=float,
        metavar="SECONDS",
        help="count sessions as available only if free SECONDS from now (default 0)",
    )
    s = p.add_argument_group("schedule")
    s.add_argument("--interval", type=float, metavar="SECONDS", help="refresh every SECONDS (15)")
    s.add_argument(
        "--discovery-interval",
        type=float,
        metavar="SECONDS",
        help="look for new and dropped pools every SECONDS (60)",
    )
    s.add_argument(
        "--pool-timeout", type=float, metavar="SECONDS", help="time limit per pool refresh (10)"
    )
    s.add_argument(
        "--concurrency", type=int, metavar="N", help="pools refreshed at once, at most (16)"
    )
    s.add_argument(
        "--auto-release",
        action=argparse.BooleanOptionalAction,
        help="release expired locks on a schedule (writes to MongoDB; off by default)",
    )
    s.add_argument(
        "--auto-release-interval", type=float, metavar="SECONDS", help="auto-release every (60)"
    )
    h = p.add_argument_group("HTTP endpoint")
    h.add_argument("--listen", metavar="ADDRESS", help="address to listen on (127.0.0.1)")
    h.add_argument("--port", type=int, help=f"port to listen on ({DEFAULT_PORT})")
    h.add_argument("--tls-cert-file", type=Path, metavar="FILE", help="serve HTTPS with this cert")
    h.add_argument("--tls-key-file", type=Path, metavar="FILE", help="private key for the cert")
    h.add_argument("--basic-auth-user", metavar="USER", help="require HTTP basic auth as USER")
    h.add_argument(
        "--basic-auth-password-file",
        type=Path,
        metavar="FILE",
        help="file holding the basic auth password (or SESSIONPOOL_BASIC_AUTH_PASSWORD)",
    )
    o = p.add_argument_group("logging")
    o.add_argument("--log-format", choices=("text", "json"), help="log line format (text)")
    o.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log level (info)"
    )
    e = p.add_argument_group("embedded demo")
    e.add_argument(
        "--embedded",
        action="store_true",
        help="start a local SecantusDB with demo pools (the default without --mongo-url)",
    )
    e.add_argument(
        "--embedded-dir", type=Path, metavar="DIR", help="data folder (.sessionpool-demo)"
    )
    e.add_argument(
        "--demo-traffic",
        action=argparse.BooleanOptionalAction,
        help="simulate workers on the demo pools (on)",
    )
    return p


# How each setting's environment or file value is converted.
_LISTS = {"databases", "include", "exclude"}
_FLOATS = {
    "interval",
    "discovery_interval",
    "pool_timeout",
    "active_offset",
    "auto_release_interval",
}
_INTS = {"concurrency", "port"}
_BOOLS = {"auto_release", "embedded", "demo_traffic"}
_PATHS = {"tls_cert_file", "tls_key_file", "embedded_dir", "basic_auth_password_file"}
_STRINGS = {"mongo_url", "mongo_url_file", "listen", "log_format", "log_level", "basic_auth_user"}
_KNOWN = _LISTS | _FLOATS | _INTS | _BOOLS | _PATHS | _STRINGS


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _convert(key: str, value: Any, source: str) -> Any:
    where = f"{_flag(key)} (from {source})"
    try:
        if key in _LISTS:
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                return value
            raise ValueError("expected a list of names")
        if key in _BOOLS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError("expected true or false")
        if key in _FLOATS:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if key in _INTS:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            return int(value)
        if key in _PATHS:
            return Path(str(value))
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {value!r}: {exc}") from None


def _from_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"--config: {path} must hold a mapping of settings")
    settings: dict[str, Any] = {}
    for raw_key, value in loaded.items():
        key = str(raw_key).replace("-", "_")
        if key == "database":
            key = "databases"
        if key not in _KNOWN:
            raise ConfigError(f"--config: unknown setting {raw_key!r} in {path}")
        settings[key] = _convert(key, value, str(path))
    return settings


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key in _KNOWN:
        name = ENV_PREFIX + key.upper()
        if key == "databases" and name not in environ:
            name = ENV_PREFIX + "DATABASE"
        if name in environ:
            settings[key] = _convert(key, environ[name], name)
    return settings


def _read_secret(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {path} is not UTF-8 text") from None


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_flag(name)} must be a positive number of seconds, not {value:g}")


def _validate(settings: dict[str, Any]) -> Config:
    for name in ("interval", "discovery_interval", "pool_timeout", "auto_release_interval"):
        if name in settings:
            _positive(name, settings[name])
    offset = settings.get("active_offset", 0.0)
    if not math.isfinite(offset) or offset < 0:
        raise ConfigError(f"--active-offset must be a non-negative number, not {offset:g}")
    if not 1 <= settings.get("concurrency", 16) <= 1000:
        raise ConfigError(
            f"--concurrency must be between 1 and 1000, not {settings['concurrency']}"
        )
    if not 0 <= settings.get("port", DEFAULT_PORT) <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {settings['port']}")
    if settings.get("log_format", "text") not in {"text", "json"}:
        raise ConfigError(f"--log-format must be text or json, not {settings['log_format']!r}")
    if settings.get("log_level", "info") not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            f"--log-level must be debug, info, warning or error, not {settings['log_level']!r}"
        )
    if "mongo_url_file" in settings:
        if "mongo_url" in settings:
            raise ConfigError("give --mongo-url or --mongo-url-file, not both")
        settings["mongo_url"] = _read_secret(Path(settings["mongo_url_file"]), "--mongo-url-file")
    settings.pop("mongo_url_file", None)
    url = settings.get("mongo_url")
    if url is not None and not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("--mongo-url must start with mongodb:// or mongodb+srv://")
    if url is None or url == "":
        settings["mongo_url"] = None
        settings["embedded"] = True
    elif settings.get("embedded"):
        raise ConfigError("--embedded starts its own server; do not also give --mongo-url")
    if ("tls_cert_file" in settings) != ("tls_key_file" in settings):
        raise ConfigError("--tls-cert-file and --tls-key-file go together")
    for name in ("tls_cert_file", "tls_key_file"):
        if name in settings and not Path(settings[name]).is_file():
            raise ConfigError(f"{_flag(name)}: no such file {settings[name]}")
    if "basic_auth_password_file" in settings:
        settings["basic_auth_password"] = _read_secret(
            settings.pop("basic_auth_password_file"), "--basic-auth-password-file"
        )
    if ("basic_auth_user" in settings) != bool(settings.get("basic_auth_password")):
        raise ConfigError(
            "--basic-auth-user needs a password (--basic-auth-password-file or "
            "SESSIONPOOL_BASIC_AUTH_PASSWORD), and a password needs a user"
        )
    for name in ("databases", "include", "exclude"):
        if name in settings:
            settings[name] = tuple(settings[name])
    return Config(**settings)


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Return the configuration from *argv*, *environ* and the ``--config`` file.

    Raises:
        ConfigError: a setting is invalid; nothing has started.
    """
    environ = os.environ if environ is None else environ
    flags = vars(_parser().parse_args(argv))
    env = _from_environment(environ)
    # The password may only come from the environment or a file: never a flag,
    # which would show in the process list.
    password = environ.get(ENV_PREFIX + "BASIC_AUTH_PASSWORD")
    config_file = flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    settings = _from_file(Path(config_file)) if config_file else {}
    settings.update(env)
    settings.update(flags)
    if password and "basic_auth_password_file" not in settings:
        settings["basic_auth_password"] = password
    return _validate(settings)
