"""The exporter's configuration: every setting declared once, read from three places.

Each :class:`Setting` in :data:`SETTINGS` gives its flag, its environment
variable (``SESSIONPOOL_`` plus its name in upper case: ``--mongo-url`` is
``SESSIONPOOL_MONGO_URL``), its key in the YAML file given with ``--config``
(its name, with ``_`` or ``-``), its type, its default, its help, and the range
it must be in. argparse, the environment and the file are all derived from
that table. Precedence: flag, then environment, then file, then the default.
List settings take a comma-separated list in the environment and a list in
the file.

Invalid configuration raises :class:`ConfigError`, which ``__main__`` turns
into one line on stderr and exit code 2, before anything starts: a setting
that cannot work (a database name MongoDB refuses, a connection string
without a host, an interval too short to run) is refused here rather than
failing every refresh later.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import yaml
from pymongo import uri_parser
from pymongo.errors import PyMongoError

from sessionlib import ConfigurationError, check_database_name, redact_url, zone_of

__all__ = ["ENV_PREFIX", "SETTINGS", "Config", "ConfigError", "Setting", "load_config"]

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
    legacy_timezone: str | None = None
    scope_limit: int = 20
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
    demo_encrypted: bool = False

    @property
    def stale_after(self) -> float:
        """Seconds after which the last refresh is too old for ``/readyz``: three intervals."""
        return 3 * self.interval


# -- checks --------------------------------------------------------------------


def _seconds(low: float, high: float) -> Callable[[str, Any], None]:
    """A check for a positive duration from *low* to *high* seconds."""

    def check(flag: str, value: float) -> None:
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{flag} must be a positive number of seconds, not {value:g}")
        if value < low:
            raise ConfigError(f"{flag} must be at least {low:g} seconds, not {value:g}")
        if value > high:
            raise ConfigError(f"{flag} must be at most {high:g} seconds, not {value:g}")

    return check


def _offset(flag: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{flag} must be a non-negative number, not {value:g}")
    if value > 86400 * 366:
        raise ConfigError(f"{flag} must be at most a year (31622400 seconds), not {value:g}")


def _whole(low: int, high: int) -> Callable[[str, Any], None]:
    def check(flag: str, value: int) -> None:
        if not low <= value <= high:
            raise ConfigError(f"{flag} must be between {low} and {high}, not {value}")

    return check


def _check_databases(flag: str, names: Sequence[str]) -> None:
    for name in names:
        try:
            check_database_name(name, "database")
        except ConfigurationError as exc:
            raise ConfigError(f"{flag}: {exc}") from None


def _check_zone(flag: str, name: str) -> None:
    try:
        zone_of(name)
    except ConfigurationError as exc:
        raise ConfigError(f"{flag}: {str(exc).partition(': ')[2] or exc}") from None


_SRV_HOST = re.compile(r"^mongodb\+srv://(?:[^@]*@)?[^/?@:,]+")


def _check_url(flag: str, url: str) -> None:
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"{flag} must start with mongodb:// or mongodb+srv://")
    if url.startswith("mongodb+srv://"):
        # Parsing an SRV URL looks its host up in DNS: only check that it names one.
        if not _SRV_HOST.match(url):
            raise ConfigError(f"{flag} {redact_url(url)} names no host")
        return
    try:
        uri_parser.parse_uri(url, validate=True)
    except (PyMongoError, ValueError, TypeError) as exc:
        message = str(exc).replace(url, redact_url(url))
        raise ConfigError(f"{flag} {redact_url(url)} is not valid: {message}") from None


# -- the table -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: where it comes from, its type, and what values it accepts.

    *kind* is ``str``, ``float``, ``int``, ``bool``, ``list`` or ``path``.
    *flag* defaults to the name with ``-``; *env* are extra environment
    names read when the main one is absent.
    """

    name: str
    kind: str
    help: str
    group: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str, Any], None] | None = None
    flag: str | None = None
    env: tuple[str, ...] = ()
    in_config: bool = True

    @property
    def option(self) -> str:
        """The command-line flag."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        """The environment variable."""
        return ENV_PREFIX + self.name.upper()


_INTERVAL = _seconds(0.1, 86400)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "mongo_url",
        "str",
        "MongoDB connection string; without it (or with --embedded) a demo server is started",
        "MongoDB",
        metavar="URL",
        check=_check_url,
    ),
    Setting(
        "mongo_url_file",
        "path",
        "read the connection string from FILE (a secret)",
        "MongoDB",
        metavar="FILE",
    ),
    Setting(
        "databases",
        "list",
        "database to watch (repeatable; default: all but admin, local, config)",
        "MongoDB",
        metavar="NAME",
        flag="--database",
        env=(ENV_PREFIX + "DATABASE",),
        check=_check_databases,
    ),
    Setting(
        "include",
        "list",
        "only collections matching this shell pattern, e.g. 'tg_*' or 'pools.tg_*' (repeatable)",
        "MongoDB",
        metavar="PATTERN",
    ),
    Setting(
        "exclude", "list", "skip matching collections (repeatable)", "MongoDB", metavar="PATTERN"
    ),
    Setting(
        "active_offset",
        "float",
        "count sessions as available only if free SECONDS from now (default 0)",
        "MongoDB",
        metavar="SECONDS",
        check=_offset,
    ),
    Setting(
        "legacy_timezone",
        "str",
        "the zone whose naive wall-clock times the pools hold (the seed library's), "
        "e.g. Europe/Moscow",
        "MongoDB",
        metavar="ZONE",
        check=_check_zone,
    ),
    Setting(
        "scope_limit",
        "int",
        "scopes exported per pool; the rest are folded into scope 'other' (20)",
        "MongoDB",
        "N",
        check=_whole(1, 1000),
    ),
    Setting(
        "interval", "float", "refresh every SECONDS (15)", "schedule", "SECONDS", check=_INTERVAL
    ),
    Setting(
        "discovery_interval",
        "float",
        "look for new and dropped pools every SECONDS (60)",
        "schedule",
        "SECONDS",
        check=_INTERVAL,
    ),
    Setting(
        "pool_timeout",
        "float",
        "time limit per pool refresh (10)",
        "schedule",
        "SECONDS",
        check=_seconds(0.1, 3600),
    ),
    Setting(
        "concurrency",
        "int",
        "pools refreshed at once, at most (16)",
        "schedule",
        "N",
        check=_whole(1, 1000),
    ),
    Setting(
        "auto_release",
        "bool",
        "release expired locks on a schedule (writes to MongoDB; off by default)",
        "schedule",
    ),
    Setting(
        "auto_release_interval",
        "float",
        "auto-release every SECONDS (60)",
        "schedule",
        "SECONDS",
        check=_INTERVAL,
    ),
    Setting("listen", "str", "address to listen on (127.0.0.1)", "HTTP endpoint", "ADDRESS"),
    Setting(
        "port",
        "int",
        f"port to listen on ({DEFAULT_PORT})",
        "HTTP endpoint",
        check=_whole(0, 65535),
    ),
    Setting("tls_cert_file", "path", "serve HTTPS with this cert", "HTTP endpoint", "FILE"),
    Setting("tls_key_file", "path", "private key for the cert", "HTTP endpoint", "FILE"),
    Setting("basic_auth_user", "str", "require HTTP basic auth as USER", "HTTP endpoint", "USER"),
    Setting(
        "basic_auth_password_file",
        "path",
        "file holding the basic auth password (or SESSIONPOOL_BASIC_AUTH_PASSWORD)",
        "HTTP endpoint",
        "FILE",
    ),
    Setting("log_format", "str", "log line format (text)", "logging", choices=("text", "json")),
    Setting(
        "log_level",
        "str",
        "log level (info)",
        "logging",
        choices=("debug", "info", "warning", "error"),
    ),
    Setting(
        "embedded",
        "bool",
        "start a local SecantusDB with demo pools (the default without --mongo-url)",
        "embedded demo",
    ),
    Setting("embedded_dir", "path", "data folder (.sessionpool-demo)", "embedded demo", "DIR"),
    Setting("demo_traffic", "bool", "simulate workers on the demo pools (on)", "embedded demo"),
    Setting(
        "demo_encrypted",
        "bool",
        "encrypt the demo pools' payloads with a key file in the data folder (off)",
        "embedded demo",
    ),
)
"""Every setting, in the order ``--help`` lists them."""

_BY_NAME = {setting.name: setting for setting in SETTINGS}


class _Group(Protocol):
    """An argument group, as ``add_argument_group`` returns it (argparse's class is private)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action: ...


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, raised as :class:`ConfigError`."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="sessionpool-exporter",
        description=(
            "Serve session pool statistics from MongoDB as Prometheus metrics. "
            "Every flag can also be set as SESSIONPOOL_<FLAG> in the environment "
            "(e.g. SESSIONPOOL_MONGO_URL) or in the --config YAML file."
        ),
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file with settings (keys as flag names)"
    )
    groups: dict[str, _Group] = {}
    for setting in SETTINGS:
        group = groups.get(setting.group) or parser.add_argument_group(setting.group)
        groups[setting.group] = group
        options: dict[str, Any] = {"help": setting.help, "dest": setting.name}
        if setting.metavar:
            options["metavar"] = setting.metavar
        if setting.choices:
            options["choices"] = setting.choices
        if setting.kind == "bool":
            options["action"] = (
                "store_true" if setting.name == "embedded" else argparse.BooleanOptionalAction
            )
        elif setting.kind == "list":
            options["action"] = "append"
        elif setting.kind in {"float", "int"}:
            options["type"] = float if setting.kind == "float" else int
        elif setting.kind == "path":
            options["type"] = Path
        group.add_argument(setting.option, **options)
    return parser


def _convert(setting: Setting, value: Any, source: str) -> Any:
    where = f"{setting.option} (from {source})"
    if value is None:
        raise ConfigError(f"{where}: has no value; remove it or give one")
    try:
        if setting.kind == "list":
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                return value
            raise ValueError("expected a list of names")
        if setting.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError("expected true or false")
        if setting.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("expected a number")
            return float(value)
        if setting.kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            if not isinstance(value, int | float | str):
                raise ValueError("expected a whole number")
            return int(value)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("expected text")
        if setting.kind == "path":
            return Path(str(value))
        text = str(value)
        if setting.choices and text not in setting.choices:
            raise ValueError(f"expected one of {', '.join(setting.choices)}")
        return text
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: invalid value {value!r:.80}: {exc}") from None


def _from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path} is not UTF-8 text") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"--config: {path} must hold a mapping of settings")
    settings: dict[str, Any] = {}
    for raw_key, value in loaded.items():
        key = str(raw_key).replace("-", "_")
        key = "databases" if key == "database" else key
        setting = _BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"--config: unknown setting {raw_key!r} in {path}")
        settings[key] = _convert(setting, value, str(path))
    return settings


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        for name in (setting.variable, *setting.env):
            if name in environ:
                settings[setting.name] = _convert(setting, environ[name], name)
                break
    return settings


def _read_secret(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {path} is not UTF-8 text") from None


def _validate(settings: dict[str, Any]) -> Config:
    if "mongo_url_file" in settings:
        if "mongo_url" in settings:
            raise ConfigError("give --mongo-url or --mongo-url-file, not both")
        settings["mongo_url"] = _read_secret(Path(settings["mongo_url_file"]), "--mongo-url-file")
    settings.pop("mongo_url_file", None)
    if settings.get("mongo_url") in (None, ""):
        settings["mongo_url"] = None
        settings["embedded"] = True
    elif settings.get("embedded"):
        raise ConfigError("--embedded starts its own server; do not also give --mongo-url")
    for name, value in settings.items():
        setting = _BY_NAME.get(name)
        if setting is not None and setting.check is not None and value is not None:
            setting.check(setting.option, value)
    if ("tls_cert_file" in settings) != ("tls_key_file" in settings):
        raise ConfigError("--tls-cert-file and --tls-key-file go together")
    for name in ("tls_cert_file", "tls_key_file"):
        if name in settings and not Path(settings[name]).is_file():
            raise ConfigError(f"{_BY_NAME[name].option}: no such file {settings[name]}")
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
    # The password may only come from the environment or a file: never a flag,
    # which would show in the process list.
    password = environ.get(ENV_PREFIX + "BASIC_AUTH_PASSWORD")
    config_file = flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    settings = _from_file(Path(config_file)) if config_file else {}
    settings.update(_from_environment(environ))
    settings.update(flags)
    if password and "basic_auth_password_file" not in settings:
        settings["basic_auth_password"] = password
    return _validate(settings)
