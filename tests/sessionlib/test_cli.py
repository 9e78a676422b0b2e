"""The ``sessionpool`` admin tool against the real wire server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.secantus import free_port
from sessionlib.cli import main

pytestmark = pytest.mark.wire

PASSWORD = "cli-pa55word"


@pytest.fixture
def db(wire_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SESSIONPOOL_MONGO_URL", wire_url)
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), stdout=out)
    return code, out.getvalue()


def cli_json(*argv: str) -> Any:
    code, out = cli("--json", *argv)
    assert 0 == code, out
    return json.loads(out)


def test_add_lock_list_release_and_the_rest(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    assert {"inserted_id": "a"} == cli_json("add", pool, '{"_id": "a", "session": {"k": 1}}')
    assert {"inserted_id": 7} == cli_json("add", pool, '{"_id": 7, "session": {"k": 2}}')

    assert {"locked": 1, "missing": []} == cli_json("lock", pool, "a", "--for", "2h")
    assert {"blocked": 1, "missing": []} == cli_json("block", pool, "7", "--for", '{"days": 1}')
    listed = {row["_id"]: row["state"] for row in cli_json("list", pool)}
    assert {"a": "locked", 7: "blocked"} == listed
    assert ["a"] == [row["_id"] for row in cli_json("list", pool, "--state", "locked")]

    assert {"released": 2, "missing": []} == cli_json("release", pool, "a", "7")
    assert {"deactivated": 1, "missing": []} == cli_json("deactivate", pool, "a")
    assert False is db["tg"].find_one({"_id": "a"})["active"]
    assert {"activated": 1, "missing": []} == cli_json("activate", pool, "a")
    stats = cli_json("stats", pool)
    assert (2, 2, 0) == (stats["total"], stats["available"], stats["inactive"])
    assert {
        "indexes": ["sessionpool_order", "sessionpool_states", "sessionpool_scopes"]
    } == cli_json("ensure-indexes", pool)
    assert {"deleted": 1, "missing": []} == cli_json("delete", pool, "7")
    assert ["a"] == [doc["_id"] for doc in db["tg"].find()]


def test_human_output_is_a_table(db: Any, db_name: str) -> None:
    cli("add", f"{db_name}.tg", '{"_id": "a", "session": {}}')

    code, out = cli("list", f"{db_name}.tg")

    lines = out.splitlines()
    assert 0 == code
    assert lines[0].split() == [
        "_id",
        "state",
        "next_use",
        "last_use",
        "uses",
        "successes",
        "reason",
    ]
    assert lines[2].split()[:2] == ["a", "available"]


def test_stats_of_a_database_lists_its_pools(db: Any, db_name: str) -> None:
    db["tg"].insert_many([{"_id": n, "session": {}} for n in range(3)])
    db["wa"].insert_one({"_id": 1, "session": {}, "active": False})
    db["users"].insert_one({"_id": 1, "name": "not a pool"})

    rows = cli_json("stats", db_name)

    assert [(f"{db_name}.tg", 3, 3), (f"{db_name}.wa", 1, 0)] == [
        (r["pool"], r["total"], r["available"]) for r in rows
    ]
    _, out = cli("stats", db_name)
    assert "pool" in out.splitlines()[0]


def write_lines(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path


def test_import_is_idempotent_on_the_chosen_key(
    db: Any, db_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_lines(
        tmp_path / "s.jsonl",
        [{"session": {"phone": f"+7{n:04d}"}} for n in range(1200)],
    )
    pool = f"{db_name}.tg"

    code, out = cli("import", pool, str(file), "--key", "session.phone")
    progress = capsys.readouterr().err
    again = cli_json("import", pool, str(file), "--key", "session.phone")

    assert (0, "imported 1200 session(s); 0 already present") == (code, out.strip())
    assert "importing:" in progress
    assert "1200/1200 (100%)" in progress
    assert {"inserted": 0, "skipped": 1200} == again
    assert 1200 == db["tg"].count_documents({})
    assert {True} == {d["active"] for d in db["tg"].find({}, {"active": 1})}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"_id": 1, "session": {}}\n\xff\xfe\n', "line 2: not valid UTF-8"),
        (b'{"_id": 1, "session": {}}\nnot json\n', "line 2: not valid JSON"),
        (b"[1, 2]\n", "line 1: a session must be a JSON object"),
        (b'{"_id": 1, "session": {"$where": "1"}}\n', "line 1: add(): field name '$where'"),
        (
            b'{"session": {}}\n',
            "line 1: no value for the key field '_id' (lines without an _id: name the field "
            "that identifies a session with --key",
        ),
        (b'{"_id": 1, "session": {}}\n{"_id": 1, "session": {}}\n', "line 2: _id 1 appears twice"),
    ],
)
def test_a_bad_import_writes_nothing(
    db: Any,
    db_name: str,
    tmp_path: Path,
    content: bytes,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_bytes(content)

    code, _ = cli("import", f"{db_name}.tg", str(file))

    err = capsys.readouterr().err
    assert 2 == code
    assert 1 == len(err.splitlines())
    assert message in err
    assert 0 == db["tg"].count_documents({})


def test_export_redacts_unless_revealed_and_round_trips(
    db: Any, db_name: str, tmp_path: Path
) -> None:
    cli("add", f"{db_name}.tg", '{"_id": "a", "session": {"token": "s3cr3t", "cookies": ["c1"]}}')
    cli("lock", f"{db_name}.tg", "a", "--for", "1h")

    code, redacted = cli("export", f"{db_name}.tg")
    _, revealed = cli("export", f"{db_name}.tg", "--reveal")

    assert 0 == code
    assert "s3cr3t" not in redacted
    assert {"token": "***", "cookies": ["***"]} == json.loads(redacted)["session"]
    backup = tmp_path / "backup.jsonl"
    backup.write_text(revealed)
    assert {"inserted": 1, "skipped": 0} == cli_json("import", f"{db_name}.copy", str(backup))
    assert db["tg"].find_one({"_id": "a"}) == db["copy"].find_one({"_id": "a"})


def test_errors_are_one_line_and_never_show_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SESSIONPOOL_MONGO_URL", raising=False)
    url = f"mongodb://admin:{PASSWORD}@127.0.0.1:{free_port()}/?directConnection=true"

    unreachable = main(["stats", "pools.tg", "--mongo-url", url, "--timeout", "0.5"])
    err_unreachable = capsys.readouterr().err
    no_url = main(["stats", "pools.tg"])
    err_no_url = capsys.readouterr().err
    bad_pool = main(["list", "pools", "--mongo-url", url])
    err_bad_pool = capsys.readouterr().err

    assert (1, 2, 2) == (unreachable, no_url, bad_pool)
    for err in (err_unreachable, err_no_url, err_bad_pool):
        assert 1 == len(err.splitlines()), err
        assert err.startswith("sessionpool: error: ")
        assert PASSWORD not in err
    assert "admin:***@" in err_unreachable
    assert "no MongoDB URL" in err_no_url
    assert "names no collection" in err_bad_pool


def test_unknown_ids_exit_1(db: Any, db_name: str) -> None:
    cli("add", f"{db_name}.tg", '{"_id": "a", "session": {}}')

    code, out = cli("--json", "release", f"{db_name}.tg", "a", "zzz")

    assert (1, {"released": 1, "missing": ["zzz"]}) == (code, json.loads(out))


def test_console_script_and_module_entry_points(db: Any, db_name: str) -> None:
    for command in (["sessionpool"], [sys.executable, "-m", "sessionlib"]):
        result = subprocess.run(
            [*command, "--json", "stats", f"{db_name}.none"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        assert 0 == json.loads(result.stdout)["total"]


def test_lock_until_an_instant_for_a_scope_with_a_reason(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    cli("add", pool, '{"_id": "a", "session": {}}')
    until = datetime.now(UTC) + timedelta(hours=3)

    locked = cli_json(
        "lock", pool, "a", "--until", until.isoformat(), "--scope", "search", "--reason", "429"
    )

    stored = db["tg"].find_one({"_id": "a"})
    assert {"locked": 1, "missing": []} == locked
    assert abs(stored["scopes"]["search"] - until) < timedelta(milliseconds=1)
    assert "429" == stored["reason"]
    assert "available" == cli_json("list", pool)[0]["state"]  # for everyone but "search"


def test_why_prints_the_history_and_list_filters_by_reason(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    cli("add", pool, '{"_id": "a", "session": {}}')
    cli("add", pool, '{"_id": "b", "session": {}}')
    cli("lock", pool, "a", "--for", "1h", "--reason", "captcha")
    cli("deactivate", pool, "b", "--reason", "banned")
    cli("release", pool, "a", "--reason", "solved")

    found = cli_json("why", pool, "a")
    code, human = cli("why", pool, "a")

    assert "solved" == found["reason"]
    assert [("locked", "captcha"), ("released", "solved")] == [
        (entry["kind"], entry["reason"]) for entry in found["history"]
    ]
    assert 0 == code
    assert human.startswith("session a: last reason solved\n")
    assert ["at", "kind", "reason", "fence", "by"] == human.splitlines()[1].split()
    assert ["locked", "captcha"] == human.splitlines()[3].split()[3:5]  # after date, time, offset
    assert [("b", "banned")] == [
        (r["_id"], r["reason"]) for r in cli_json("list", pool, "--reason", "banned")
    ]
    assert [] == cli_json("list", pool, "--reason", "captcha")  # a's last reason is "solved"
    assert 1 == cli("why", pool, "zzz")[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["lock", "a", "--until", "2026-05-01T12:00:00"],  # no zone
        ["lock", "a", "--until", "tomorrow"],
        ["lock", "a", "--for", "1h", "--until", "2026-05-01T12:00:00Z"],
        ["lock", "a", "--until", "2999-01-01T00:00:00Z"],  # beyond 100 years
        ["block", "a", "--for", "1h", "--reason", "$inc"],
        ["lock", "a", "--for", "1h", "--reason", "x" * 201],
        ["lock", "a", "--for", "1h", "--scope", "a.b"],
        ["release", "a", "--reason", "$set"],
    ],
)
def test_bad_worker_options_fail_and_write_nothing(
    db: Any, db_name: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = f"{db_name}.tg"
    cli("add", pool, '{"_id": "a", "session": {}}')
    before = db["tg"].find_one({"_id": "a"})
    capsys.readouterr()

    code, out = cli(argv[0], pool, *argv[1:])

    assert code in (1, 2), out
    assert "Traceback" not in capsys.readouterr().err
    assert before == db["tg"].find_one({"_id": "a"})


def test_target_is_set_shown_and_cleared(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    cli("add", pool, '{"_id": "a", "session": {}}')

    nothing = cli_json("target", pool)
    both = cli_json("target", pool, "--min-available", "20", "--min-available-ratio", "0.1")
    code, human = cli("target", pool)
    cleared = cli_json("target", pool, "--clear")

    assert (None, None) == (nothing["min_available"], nothing["min_available_ratio"])
    assert (20, 0.1) == (both["min_available"], both["min_available_ratio"])
    assert (0, f"{pool}: target at least 20 available, at least 10% available\n") == (code, human)
    assert (None, None) == (cleared["min_available"], cleared["min_available_ratio"])
    assert [] == list(db["sessionpool.pools"].find({"target": {"$exists": True}}))
    assert "tg" not in db.list_collection_names() or 1 == db["tg"].count_documents({})


def test_migrate_keys_the_seeds_documents_in_every_pool_of_a_database(
    db: Any, db_name: str
) -> None:
    used = datetime(2026, 1, 1, tzinfo=UTC)
    db["tg"].insert_many(
        [
            {"_id": 1, "session": {}, "next_use": None, "last_use": used},
            {"_id": 2, "session": {}, "active": False},
        ]
    )
    db["vk"].insert_one({"_id": 1, "session": {}, "next_use": None, "last_use": None})

    report = cli_json("migrate", db_name)
    code, again = cli("migrate", f"{db_name}.tg")

    assert [
        {"pool": f"{db_name}.tg", "order_keys": 2, "dropped_indexes": []},
        {"pool": f"{db_name}.vk", "order_keys": 0, "dropped_indexes": []},
    ] == sorted(report, key=lambda row: row["pool"])
    assert (0, f"{db_name}.tg: 0 session(s) given an order key\n") == (code, again)
    assert used == db["tg"].find_one({"_id": 1})["ready_at"].replace(tzinfo=UTC)


def test_breaker_is_shown_and_reset(db: Any, db_name: str) -> None:
    pool = f"{db_name}.tg"
    until = datetime.now(UTC) + timedelta(minutes=5)
    db["sessionpool.pools"].insert_one(
        {
            "_id": "tg",
            "breaker": {
                "open": True,
                "error": "LoginFailedError",
                "opened_at": datetime.now(UTC),
                "until": until,
                "sessions": 6,
                "share": 0.75,
                "trips": 1,
            },
            "failures": [{"at": datetime.now(UTC), "error": "LoginFailedError", "session": "1"}],
        }
    )

    shown = cli_json("breaker", pool)
    code, human = cli("breaker", pool)
    reset = cli_json("breaker", pool, "--reset")

    assert (True, "LoginFailedError", 6, 0.75) == (
        shown["open"],
        shown["error"],
        shown["sessions"],
        shown["share"],
    )
    assert 0 == code
    assert human.startswith(f"{pool}: breaker OPEN since ")
    assert "6 sessions (75% of those handed out) failed with LoginFailedError" in human
    assert (False, 1) == (reset["open"], reset["trips"])
    assert [] == db["sessionpool.pools"].find_one({"_id": "tg"})["failures"]


CHECK_MODULE = """
from pymongo import MongoClient

URL = {url!r}
DB = {db!r}


async def check(session):
    payload = session["session"]
    if payload.get("boom"):
        raise RuntimeError("the source said no")
    if payload.get("taken"):  # a worker gets this session while it is being checked
        with MongoClient(URL) as client:
            client[DB]["tg"].update_one({{"_id": session["_id"]}}, {{"$set": {{"lease": "w"}}}})
    return payload["ok"]
"""


@pytest.fixture
def revive_pool(
    db: Any, db_name: str, wire_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    (tmp_path / f"check_{db_name}.py").write_text(CHECK_MODULE.format(url=wire_url, db=db_name))
    monkeypatch.syspath_prepend(str(tmp_path))
    later = datetime.now(UTC) + timedelta(days=1)
    for number, (ok, fields) in enumerate(
        [
            (True, {"next_use": later, "lock_kind": "blocked"}),
            (False, {"next_use": later, "lock_kind": "blocked"}),
            (True, {"active": False}),
            (True, {"active": False, "boom": True}),
            (True, {}),  # available: not a candidate
            (True, {"next_use": later, "lock_kind": "locked"}),  # locked: not by default
            (True, {"next_use": later, "lock_kind": "blocked", "taken": True}),
        ]
    ):
        payload = {"ok": ok, **({"boom": True} if fields.pop("boom", False) else {})}
        payload.update({"taken": True} if fields.pop("taken", False) else {})
        db["tg"].insert_one(
            {"_id": number, "session": payload, "active": True, "count_use": 0, **fields}
        )
    return f"check_{db_name}:check"


def test_revive_is_a_dry_run_by_default(
    db: Any, db_name: str, revive_pool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = list(db["tg"].find().sort("_id"))

    report = cli_json("revive", f"{db_name}.tg", "--check", revive_pool)
    code, human = cli("revive", f"{db_name}.tg", "--check", revive_pool)

    after = list(db["tg"].find().sort("_id"))
    assert after[6].pop("lease") == "w"  # written by the check itself, playing a worker
    assert before == after  # revive wrote nothing
    verdicts = {s["id"]: (s["verdict"], s["action"]) for s in report["sessions"]}
    assert {
        0: ("passed", "would release"),
        1: ("failed", None),
        2: ("passed", "would activate"),
        3: ("error", None),
        6: ("passed", "would release"),
    } == verdicts
    assert (True, 5, 3, 1, 1, 2, 1, 0) == (
        report["dry_run"],
        report["checked"],
        report["passed"],
        report["failed"],
        report["error"],
        report["would_release"],
        report["would_activate"],
        report["released"],
    )
    assert 0 == code
    assert human.splitlines()[-1] == (
        "checked 5: 3 passed, 1 failed, 1 error(s), 0 changed meanwhile; would release 2, "
        "would activate 1 (dry run: nothing written; --apply to write)"
    )
    progress = capsys.readouterr().err
    assert "checking:" in progress
    assert "5/5 (100%)" in progress


def test_revive_applies_through_a_lease_with_a_reason(
    db: Any, db_name: str, revive_pool: str
) -> None:
    report = cli_json(
        "revive",
        f"{db_name}.tg",
        "--check",
        revive_pool,
        "--apply",
        "--state",
        "blocked,inactive,locked",
    )

    docs = {doc["_id"]: doc for doc in db["tg"].find()}
    verdicts = {s["id"]: (s["verdict"], s["action"]) for s in report["sessions"]}
    assert {
        0: ("passed", "released"),
        1: ("failed", None),
        2: ("passed", "activated"),
        3: ("error", None),
        5: ("passed", "released"),
        6: ("changed", None),  # a worker took it during the check: left alone
    } == verdicts
    assert (None, "revive: check passed", 1) == (
        docs[0]["next_use"],
        docs[0]["reason"],
        docs[0]["fence"],
    )
    assert (True, "revive: check passed") == (docs[2]["active"], docs[2]["reason"])
    assert "blocked" == docs[1]["lock_kind"]
    assert False is docs[3]["active"]
    assert ("blocked", "w") == (docs[6]["lock_kind"], docs[6]["lease"])
    assert [("released", "revive: check passed")] == [
        (entry["kind"], entry["reason"]) for entry in docs[0]["history"]
    ]


PLAIN_CHECK_MODULE = """
import threading

RELEASE = threading.Event()


class Ambiguous:  # an answer with no truth value, as a NumPy array has
    def __bool__(self):
        raise ValueError("the truth value is ambiguous")


def check(session):  # a plain function, blocking as a synchronous HTTP call can
    payload = session["session"]
    if payload.get("hang"):
        RELEASE.wait(60)
    if payload.get("ambiguous"):
        return Ambiguous()
    return payload["ok"]
"""


def test_a_plain_check_runs_in_a_thread_and_a_blocking_one_is_cut_off(
    db: Any, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"plain_{db_name}"
    (tmp_path / f"{name}.py").write_text(PLAIN_CHECK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    later = datetime.now(UTC) + timedelta(days=1)
    blocked = {"active": True, "count_use": 0, "next_use": later, "lock_kind": "blocked"}
    db["tg"].insert_many(
        [
            {"_id": 0, "session": {"ok": True}, **blocked},
            {"_id": 1, "session": {"ok": True, "hang": True}, **blocked},
            {"_id": 2, "session": {"ok": False}, **blocked},
            {"_id": 3, "session": {"ambiguous": True}, **blocked},
        ]
    )

    started = time.monotonic()
    report = cli_json(
        "revive", f"{db_name}.tg", "--check", f"{name}:check", "--check-timeout", "0.5", "--apply"
    )
    elapsed = time.monotonic() - started
    sys.modules[name].RELEASE.set()  # let the abandoned thread end

    verdicts = {s["id"]: (s["verdict"], s["detail"]) for s in report["sessions"]}
    assert {
        0: ("passed", None),
        1: ("error", "no answer within 0.5 s"),
        2: ("failed", None),
        3: ("error", "ValueError: the truth value is ambiguous"),
    } == verdicts
    assert elapsed < 10, f"revive took {elapsed:.1f} s: the blocking check held it up"
    states = {doc["_id"]: doc.get("lock_kind") for doc in db["tg"].find()}
    assert {0: None, 1: "blocked", 2: "blocked", 3: "blocked"} == states


@pytest.mark.parametrize(
    "argv",
    [
        ["--check", "no_such_module_here:check"],
        ["--check", "json:no_such_function"],
        ["--check", "nocolon"],
        ["--check", "json:dumps", "--state", "available"],
        ["--check", "json:dumps", "--concurrency", "0"],
        ["--check", "json:dumps", "--check-timeout", "nan"],
    ],
)
def test_bad_revive_arguments_exit_2_before_connecting(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONPOOL_MONGO_URL", f"mongodb://127.0.0.1:{free_port()}/")

    assert 2 == cli("revive", "pools.tg", *argv)[0]
