"""What the admin tool prints when other programs control the data, and what it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessionlib.cli.output import printable
from tests.sessionlib.test_cli import cli, db

__all__ = ["db"]  # the fixture, shared with the other CLI tests

pytestmark = pytest.mark.wire

HOSTILE = "\x1b[2J\x1b[31mred\x1b[0m\nforged  row\r\u202etxt.exe\x07"


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    shown = printable(HOSTILE)
    assert shown.isprintable()
    assert "\\x1b[2J\\x1b[31mred\\x1b[0m\\nforged  row\\r\\u202etxt.exe\\x07" == shown
    assert "plain, ünïcödé text" == printable("plain, ünïcödé text")


@pytest.mark.parametrize("command", [["why", "a"], ["list", "--reason", HOSTILE], ["list"]])
def test_stored_reasons_reach_the_terminal_escaped(
    db: Any, db_name: str, command: list[str]
) -> None:
    pool = f"{db_name}.tg"
    assert 0 == cli("add", pool, '{"_id": "a", "session": {}}')[0]
    history = [{"at": None, "kind": "locked", "reason": HOSTILE, "fence": 1, "by": HOSTILE}]
    db["tg"].update_one({"_id": "a"}, {"$set": {"reason": HOSTILE, "history": history}})

    code, shown = cli(command[0], pool, *command[1:])

    assert 0 == code, shown
    assert not any(char in shown for char in "\x1b\r\x07\u202e")
    assert "\\x1b[2J" in shown
    lines = shown.splitlines()
    assert not any(line.startswith("forged") for line in lines)  # no row forged by a newline


def test_json_output_keeps_the_stored_reason_as_it_is(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    cli("add", pool, '{"_id": "a", "session": {}}')
    db["tg"].update_one({"_id": "a"}, {"$set": {"reason": HOSTILE}})

    code, shown = cli("--json", "list", pool)

    assert 0 == code
    assert HOSTILE == json.loads(shown)[0]["reason"]  # scripts get the data, JSON-escaped
    assert "\x1b" not in shown


def test_a_target_for_a_pool_that_does_not_exist_is_refused_with_a_hint(
    db: Any, db_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("add", f"{db_name}.telegram", '{"_id": "a", "session": {}}')

    code, _ = cli("target", f"{db_name}.telegarm", "--min-available", "20")

    assert 2 == code
    error = capsys.readouterr().err
    assert f"no pool {db_name}.telegarm; did you mean {db_name}.telegram?" in error
    assert [] == list(db["sessionpool.pools"].find())  # nothing written


def test_a_target_for_a_pool_that_is_coming_is_set_with_create(db: Any, db_name: str) -> None:
    code, _ = cli("target", f"{db_name}.next", "--min-available", "20", "--create")

    assert 0 == code
    stored = db["sessionpool.pools"].find_one({"_id": "next"})
    assert 20 == stored["target"]["min_available"]


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This machine's zone is New York's (the default zone the CLI shows times in)."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def next_use_shown(shown: str) -> str:
    """The next_use cell of the only row of a ``list`` table (date, time and offset)."""
    row = shown.splitlines()[2].split()
    return " ".join(row[2:5])


def test_times_are_shown_with_their_zone(db: Any, db_name: str, new_york: Any) -> None:
    pool = f"{db_name}.tg"
    assert 0 == cli("add", pool, '{"_id": "a", "session": {}}')[0]
    assert 0 == cli("lock", pool, "a", "--until", "2030-01-15T12:00:00+03:00")[0]

    assert "2030-01-15 12:00:00 +03:00" == next_use_shown(
        cli("list", pool, "--tz", "Europe/Moscow")[1]
    )
    assert "2030-01-15 04:00:00 -05:00" == next_use_shown(cli("list", pool)[1])  # the machine's
    assert "2030-01-15 09:00:00 +00:00" == next_use_shown(cli("--tz", "UTC", "list", pool)[1])
    assert "2030-01-15T09:00:00+00:00" == json.loads(cli("--json", "list", pool)[1])[0]["next_use"]


def test_a_legacy_zone_shows_times_in_that_zone(db: Any, db_name: str, new_york: Any) -> None:
    pool = f"{db_name}.legacy"
    legacy = ["--legacy-timezone", "Europe/Moscow"]
    assert 0 == cli("add", pool, '{"_id": "a", "session": {}}', *legacy)[0]
    assert 0 == cli("lock", pool, "a", "--until", "2030-01-15T12:00:00+03:00", *legacy)[0]

    assert "2030-01-15 12:00:00 +03:00" == next_use_shown(cli("list", pool, *legacy)[1])
    # Stored as Moscow's wall clock, as the seed library wrote it.
    assert "12:00:00" in str(db["legacy"].find_one({"_id": "a"})["next_use"])
    shown = cli("list", pool, *legacy, "--tz", "Asia/Tokyo")[1]
    assert "2030-01-15 18:00:00 +09:00" == next_use_shown(shown)


def test_an_unknown_zone_is_refused_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = cli("--mongo-url", "mongodb://127.0.0.1:9", "list", "a.b", "--tz", "Mars/Olympus")
    assert 2 == code
    assert "--tz: 'Mars/Olympus' is not a time zone" in capsys.readouterr().err


def test_a_cut_list_says_so(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    for number in range(3):
        assert 0 == cli("add", pool, f'{{"_id": {number}, "session": {{}}}}')[0]

    cut = cli("list", pool, "--limit", "2")[1]
    whole = cli("list", pool, "--limit", "3")[1]

    assert cut.rstrip().endswith("2 of 3 shown: --limit N for more, --limit 0 for all")
    assert "shown" not in whole
    assert 2 == len(json.loads(cli("--json", "list", pool, "--limit", "2")[1]))


def test_help_shows_no_internal_names(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["list", "--help"], ["keys", "rotate", "--help"]):
        with pytest.raises(SystemExit):
            cli(*argv)
        shown = capsys.readouterr().out
        assert "BEFORE_" not in shown
        assert "--mongo-url URL" in shown
        assert "--tz ZONE" in shown


def test_a_server_error_is_one_line_and_debug_shows_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "mongodb://user:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=200"
    assert 1 == cli("--mongo-url", url, "--timeout", "1", "list", "a.b")[0]
    short = capsys.readouterr().err

    assert 1 == cli("--mongo-url", url, "--timeout", "1", "list", "a.b", "--debug")[0]
    long = capsys.readouterr().err

    assert 1 == len(short.splitlines())
    assert len(short) < 400
    assert "Connect" in short
    assert "Topology Description" not in short
    assert short.rstrip().endswith("--debug for the driver's details)")
    assert "Topology Description" in long
    assert "Traceback" in long
    assert "s3cret" not in short + long


def test_stored_text_is_never_read_as_markup(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    assert 0 == cli("add", pool, '{"_id": "[bold]a[/bold]", "session": {}}')[0]
    db["tg"].update_one({}, {"$set": {"reason": "[red]banned[/red] 漢字"}})

    shown = cli("list", pool)[1]

    assert "[bold]a[/bold]" in shown
    assert "[red]banned[/red] 漢字" in shown
    header, rule = shown.splitlines()[:2]
    assert len(header.split()) == 7
    assert set(rule) == {"─"}
