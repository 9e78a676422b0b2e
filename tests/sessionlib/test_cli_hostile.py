"""The admin tool against an operator's mistakes and hostile files, over the wire."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import free_port
from sessionlib.cli import main
from tests.support.faults import silent_server

pytestmark = pytest.mark.wire


@pytest.fixture
def db(wire_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("SESSIONPOOL_MONGO_URL", raising=False)
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), stdout=out)
    return code, out.getvalue()


def unreachable() -> str:
    return f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"


def test_a_url_before_the_command_is_the_one_used(
    db: Any, db_name: str, wire_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db["tg"].insert_many([{"_id": "a", "session": {}}, {"_id": "b", "session": {}}])
    # The environment names another server; the flag before the command wins.
    monkeypatch.setenv("SESSIONPOOL_MONGO_URL", unreachable())

    code, out = cli("--json", "--mongo-url", wire_url, "delete", f"{db_name}.tg", "a")

    assert (0, {"deleted": 1, "missing": []}) == (code, json.loads(out))
    assert ["b"] == [doc["_id"] for doc in db["tg"].find()]


def test_the_same_option_before_and_after_with_other_values_is_refused(
    db: Any, db_name: str, wire_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db["tg"].insert_one({"_id": "a", "session": {}})

    code, _ = cli("--mongo-url", wire_url, "delete", f"{db_name}.tg", "a", "--mongo-url", "x")
    agreeing, _ = cli("--json", "--mongo-url", wire_url, "list", f"{db_name}.tg", "--json")

    assert (2, 0) == (code, agreeing)
    assert "given before and after" in capsys.readouterr().err
    assert 1 == db["tg"].count_documents({})


def test_a_timeout_before_the_command_is_honoured(silent_port: int) -> None:
    url = f"mongodb://127.0.0.1:{silent_port}/?directConnection=true"
    started = time.monotonic()

    code, _ = cli("--timeout", "0.5", "--mongo-url", url, "stats", "pools.tg")

    assert 1 == code
    # One attempt and one reconnect attempt, 0.5 s each, plus backoff.
    assert time.monotonic() - started < 4.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    with silent_server() as port:
        yield port


def lines(count: int, **overrides: Any) -> list[str]:
    return [
        json.dumps({"session": {"phone": f"+7{n:06d}"}, **overrides.get(str(n), {})})
        for n in range(count)
    ]


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"session": {"a\\u0000b": 1}}', "line 550: add(): field name"),
        ('{"session": {"big": "' + "x" * (17 * 1024 * 1024) + '"}}', "line 550: "),
        ('{"session": {"phone": "+7000001"}}', "line 550: session.phone '+7000001' appears twice"),
        ('{"session": {"x": {"$oid": 5}}}', "line 550: not valid JSON"),
        ('{"session": {"x": {"$date": []}}}', "line 550: not valid JSON"),
        ('{"session": {"x": {"$numberLong": "x"}}}', "line 550: not valid JSON"),
        ('{"session": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 550: not valid JSON"),
        ('{"_import": 1, "session": {"phone": "+7"}}', "line 550: the field '_import' is reserved"),
    ],
    ids=["nul", "over-16mb", "duplicate-key", "oid", "date", "long", "deep", "reserved"],
)
def test_one_bad_line_among_many_writes_nothing_and_is_named(
    db: Any,
    db_name: str,
    wire_url: str,
    tmp_path: Path,
    line: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = lines(600)
    rows[549] = line
    file = write(tmp_path / "s.jsonl", rows)

    code, _ = cli(
        "--mongo-url", wire_url, "import", f"{db_name}.tg", str(file), "--key", "session.phone"
    )

    err = capsys.readouterr().err.strip().splitlines()
    assert 2 == code
    assert 1 == len(err), err
    assert message in err[0]
    assert 0 == db["tg"].count_documents({})


def test_an_id_used_twice_under_another_key_is_named(
    db: Any, db_name: str, wire_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = lines(10)
    rows[3] = json.dumps({"_id": 1, "session": {"phone": "a"}})
    rows[7] = json.dumps({"_id": 1, "session": {"phone": "b"}})

    code, _ = cli(
        "--mongo-url",
        wire_url,
        "import",
        f"{db_name}.tg",
        str(write(tmp_path / "f", rows)),
        "--key",
        "session.phone",
    )

    assert 2 == code
    assert "line 8: _id 1 appears twice (line 4)" in capsys.readouterr().err
    assert 0 == db["tg"].count_documents({})


def test_a_line_the_server_refuses_rolls_back_the_import(
    db: Any, db_name: str, wire_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A unique index the import knows nothing of: only the server can refuse.
    db["tg"].create_index("session.token", unique=True)
    db["tg"].insert_one({"_id": "old", "session": {"phone": "old", "token": "taken"}})
    rows = [json.dumps({"session": {"phone": f"+7{n}", "token": f"t{n}"}}) for n in range(1200)]
    rows[1100] = json.dumps({"session": {"phone": "+7new", "token": "taken"}})

    code, _ = cli(
        "--mongo-url",
        wire_url,
        "import",
        f"{db_name}.tg",
        str(write(tmp_path / "f", rows)),
        "--key",
        "session.phone",
    )

    err = capsys.readouterr().err
    assert 1 == code
    assert "line 1101: " in err
    assert "nothing was imported" in err
    assert ["old"] == [doc["_id"] for doc in db["tg"].find()]


def test_a_good_import_activates_everything_and_leaves_no_marks(
    db: Any, db_name: str, wire_url: str, tmp_path: Path
) -> None:
    rows = lines(700)
    rows[5] = json.dumps({"session": {"phone": "dead"}, "active": False})
    file = write(tmp_path / "f", rows)

    code, out = cli(
        "--json",
        "--mongo-url",
        wire_url,
        "import",
        f"{db_name}.tg",
        str(file),
        "--key",
        "session.phone",
    )

    assert (0, {"inserted": 700, "skipped": 0}) == (code, json.loads(out))
    assert 699 == db["tg"].count_documents({"active": True})
    assert [False] == [d["active"] for d in db["tg"].find({"session.phone": "dead"})]
    assert 0 == db["tg"].count_documents({"_import": {"$exists": True}})


def test_redacted_export_hides_every_value_but_the_bookkeeping(
    db: Any, db_name: str, wire_url: str
) -> None:
    db["tg"].insert_one(
        {
            "_id": "a",
            "session": {"token": "s3cr3t"},
            "api_key": "k3y",
            "cookies": ["c00kie"],
            "active": True,
            "count_use": 4,
        }
    )

    _, redacted = cli("--mongo-url", wire_url, "export", f"{db_name}.tg")
    _, revealed = cli("--mongo-url", wire_url, "export", f"{db_name}.tg", "--reveal")

    document = json.loads(redacted)
    for secret in ("s3cr3t", "k3y", "c00kie"):
        assert secret not in redacted
        assert secret in revealed
    assert ("a", True, 4, "***", ["***"]) == (
        document["_id"],
        document["active"],
        document["count_use"],
        document["api_key"],
        document["cookies"],
    )


def test_a_negative_limit_is_refused(db: Any, db_name: str, wire_url: str) -> None:
    db["tg"].insert_one({"_id": "a", "session": {}})

    code, out = cli("--mongo-url", wire_url, "list", f"{db_name}.tg", "--limit", "-5")

    assert (2, "") == (code, out)


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "{db}.sessionpool.pools", '{{"_id": "tg", "session": {{}}}}'],
        ["target", "{db}.sessionpool.pools", "--min-available", "5"],
        ["lock", "{db}.sessionpool.pools", "tg", "--for", "1h"],
    ],
)
def test_sessionpools_own_collection_is_no_pool(
    db: Any, db_name: str, wire_url: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    db["sessionpool.pools"].insert_one({"_id": "tg", "target": {"min_available": 3}})
    before = list(db["sessionpool.pools"].find())

    code, out = cli("--mongo-url", wire_url, *(arg.format(db=db_name) for arg in argv))

    assert (2, "") == (code, out)
    assert "sessionpool's own" in capsys.readouterr().err
    assert before == list(db["sessionpool.pools"].find())


def test_a_reader_that_goes_away_ends_the_export_quietly(
    db: Any, db_name: str, wire_url: str
) -> None:
    db["tg"].insert_many([{"_id": n, "session": {"n": "x" * 200}} for n in range(3000)])
    env = {**os.environ, "SESSIONPOOL_MONGO_URL": wire_url}
    export = subprocess.Popen(
        [sys.executable, "-m", "sessionlib", "export", f"{db_name}.tg", "--reveal"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert export.stdout is not None
    export.stdout.readline()
    export.stdout.close()  # as `| head -1` does
    code = export.wait(60)
    assert export.stderr is not None
    with export.stderr:
        stderr = export.stderr.read().decode()

    assert 141 == code
    assert "Traceback" not in stderr
    assert "" == stderr
