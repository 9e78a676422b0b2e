"""Configuration: flags, environment and file, and one clear line for bad values."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.__main__ import main
from exporter.config import Config, ConfigError, load_config

URL = "mongodb://127.0.0.1:27017"


def test_defaults_need_only_a_url() -> None:
    config = load_config(["--mongo-url", URL], environ={})

    assert Config(mongo_url=URL) == config
    assert (15.0, "127.0.0.1", False, False) == (
        config.interval,
        config.listen,
        config.auto_release,
        config.embedded,
    )


def test_no_url_means_embedded() -> None:
    assert load_config([], environ={}).embedded


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path) -> None:
    file = tmp_path / "exporter.yaml"
    file.write_text(
        "mongo_url: mongodb://file:27017\ninterval: 5\ninclude: [tg_*]\nport: 9000\n"
        "auto-release: true\nlog_format: json\n"
    )
    environ = {
        "SESSIONPOOL_INTERVAL": "7",
        "SESSIONPOOL_DATABASE": "a, b",
        "SESSIONPOOL_AUTO_RELEASE": "no",
    }

    config = load_config(["--config", str(file), "--port", "9100"], environ=environ)

    assert "mongodb://file:27017" == config.mongo_url  # file only
    assert 7.0 == config.interval  # environment over file
    assert 9100 == config.port  # flag over file
    assert ("a", "b") == config.databases
    assert ("tg_*",) == config.include
    assert (False, "json") == (config.auto_release, config.log_format)


def test_secrets_come_from_files_or_environment(tmp_path: Path) -> None:
    url_file, password_file = tmp_path / "url", tmp_path / "password"
    url_file.write_text(URL + "\n")
    password_file.write_text("s3cret\n")

    from_files = load_config(
        [
            "--mongo-url-file",
            str(url_file),
            "--basic-auth-user",
            "prom",
            "--basic-auth-password-file",
            str(password_file),
        ],
        environ={},
    )
    from_env = load_config(
        ["--basic-auth-user", "prom"],
        environ={"SESSIONPOOL_MONGO_URL": URL, "SESSIONPOOL_BASIC_AUTH_PASSWORD": "env-pw"},
    )

    assert (URL, "s3cret") == (from_files.mongo_url, from_files.basic_auth_password)
    assert (URL, "env-pw") == (from_env.mongo_url, from_env.basic_auth_password)
    assert "s3cret" not in repr(from_files)


BAD = [
    (["--interval", "-1"], "--interval must be a positive number of seconds, not -1"),
    (["--interval", "abc"], "argument --interval: invalid float value: 'abc'"),
    (["--interval", "nan"], "--interval must be a positive number of seconds, not nan"),
    (["--port", "70000"], "--port must be between 0 and 65535, not 70000"),
    (["--concurrency", "0"], "--concurrency must be between 1 and 1000, not 0"),
    (["--active-offset", "-5"], "--active-offset must be a non-negative number, not -5"),
    (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
    (["--mongo-url", "http://x"], "--mongo-url must start with mongodb:// or mongodb+srv://"),
    (
        ["--tls-cert-file", "/nonexistent/c.pem", "--tls-key-file", "/nonexistent/k.pem"],
        "--tls-cert-file: no such file /nonexistent/c.pem",
    ),
    (["--tls-cert-file", "/etc/hostname"], "--tls-cert-file and --tls-key-file go together"),
    (["--basic-auth-user", "prom"], "--basic-auth-user needs a password"),
    (["--config", "/nonexistent.yaml"], "--config: cannot read /nonexistent.yaml"),
    (["--embedded"], None),  # valid: embedded without a URL
    (["--embedded", "--mongo-url", URL], "--embedded starts its own server"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    # Settings that would let the exporter start and then fail at every refresh.
    (["--interval", "1e-300"], "--interval must be at least 0.1 seconds, not 1e-300"),
    (["--pool-timeout", "1e9"], "--pool-timeout must be at most 3600 seconds, not 1e+09"),
    (
        ["--mongo-url", "mongodb://"],
        "--mongo-url mongodb:// is not valid: Must provide at least one",
    ),
    (["--mongo-url", "mongodb+srv://"], "--mongo-url mongodb+srv:// names no host"),
    (["--mongo-url", "mongodb://h/?w=-5"], "The value of w must be a non negative integer"),
    (["--database", "bad$db"], "--database: database 'bad$db' is not a valid database name"),
    (["--database", "a.b"], "is not a valid database name: it holds '.'"),
    (["--active-offset", "1e12"], "--active-offset must be at most a year"),
    (["--legacy-timezone", "Mars/Olympus"], "--legacy-timezone: unknown time zone 'Mars/Olympus'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_invalid_configuration_is_one_line_and_exit_code_2(
    argv: list[str],
    message: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SESSIONPOOL_MONGO_URL", "SESSIONPOOL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    if message is None:
        load_config(argv, environ={})
        return

    assert 2 == main(argv)

    err = capsys.readouterr().err
    assert 1 == len(err.splitlines()), err
    assert err.startswith("sessionpool-exporter: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("unknown_key: 1\n", "unknown setting 'unknown_key'"),
        ("interval: [1, 2]\n", "--interval (from"),
        ("- a list\n", "must hold a mapping"),
        ("interval: : :\n", "is not valid YAML"),
    ],
)
def test_invalid_file(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(content)

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(["--config", str(file)], environ={})


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("interval: 5 # \xe9t\xe9\n".encode("latin-1"))

    with pytest.raises(ConfigError, match=re.escape(f"--config: {file} is not UTF-8 text")):
        load_config(["--config", str(file)], environ={})


@pytest.mark.parametrize("key", ["mongo_url", "interval", "database", "auto_release"])
def test_a_setting_without_a_value_in_the_file_says_so(tmp_path: Path, key: str) -> None:
    file = tmp_path / "null.yaml"
    file.write_text(f"{key}:\n")

    with pytest.raises(ConfigError, match="has no value; remove it or give one"):
        load_config(["--config", str(file)], environ={})


def test_every_setting_comes_from_one_table() -> None:
    from exporter.config import SETTINGS, _parser

    flags = {action.dest for action in _parser()._actions if action.dest not in ("help", "config")}

    assert {setting.name for setting in SETTINGS} == flags
    assert {setting.name for setting in SETTINGS} >= set(Config.__dataclass_fields__) - {
        "basic_auth_password"
    }


def test_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="from SESSIONPOOL_CONCURRENCY"):
        load_config([], environ={"SESSIONPOOL_CONCURRENCY": "many"})


def test_the_console_command_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--mongo-url", URL, "--interval", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 2 == result.returncode
    assert [
        "sessionpool-exporter: error: --interval must be a positive number of seconds, not 0"
    ] == result.stderr.splitlines()
