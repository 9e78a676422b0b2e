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
