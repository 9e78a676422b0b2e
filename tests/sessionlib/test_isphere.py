"""Seed workers' ``except`` clauses keep catching what the seed raised.

The situations run in a child process that can import a stand-in
``isphere_exceptions`` package (``tests/support/isphere_stub``), over the
real wire protocol against a SecantusDB of the test's own, which is stopped
with SIGSTOP for the timeout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter.secantus import SecantusServer, free_port
from sessionlib import ConfigurationError, MongoSessions, ServerUnavailableError
from sessionlib.isphere import PACKAGE

REPOSITORY = Path(__file__).resolve().parents[2]
STUB = REPOSITORY / "tests" / "support" / "isphere_stub"

EXPECTED = {
    "no_url": ("ConfigurationError", "MongoConfigurationInvalid"),
    "no_db": ("ConfigurationError", "MongoConfigurationInvalid"),
    "closed_port": ("ServerUnavailableError", "MongoConnection"),
    # A stopped server: the command times out, or the driver gives the
    # server up first (its heartbeat times out); the seed said MongoTimeout.
    "hang": (("OperationTimeoutError", "ServerUnavailableError"), "MongoTimeout"),
    "duplicate": ("DuplicateSessionError", "MongoOperationFailure"),
    "empty": ("NoSessionAvailableError", "SessionEmpty"),
}
SEED_CLASSES = (
    "MongoConfigurationInvalid",
    "MongoConnection",
    "MongoTimeout",
    "MongoOperationFailure",
    "SessionEmpty",
)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with SecantusServer(tmp_path_factory.mktemp("isphere")) as server:
        closed = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.support.isphere_scenarios",
                server.url,
                closed,
                "isphere_test",
                str(server.pid),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPOSITORY,
            env={**os.environ, "PYTHONPATH": f"{STUB}{os.pathsep}{REPOSITORY}"},
            check=False,
        )
    assert 0 == result.returncode, result.stderr
    outcomes: dict[str, Any] = json.loads(result.stdout)
    return outcomes


@pytest.mark.wire
@pytest.mark.parametrize("situation", sorted(EXPECTED))
def test_seed_style_except_clauses_catch_the_error(
    outcomes: dict[str, Any], situation: str
) -> None:
    ours, seed = EXPECTED[situation]
    outcome = outcomes[situation]

    assert outcome["class"] in ((ours,) if isinstance(ours, str) else ours)
    assert outcome[seed], f"except {seed}: does not catch it"
    assert [seed] == [name for name in SEED_CLASSES if outcome[name]]
    assert outcome["ISphereException"]
    assert outcome["SessionPoolError"]  # sessionlib's own clauses still catch it
    if seed.startswith("Mongo"):
        assert outcome["MongoErrorInterface"]
        assert 522 == outcome["code"]  # the seed's class set itself up
    # sessionlib's message, not the stand-in's "MNG-522: ..." format.
    assert not outcome["message"].startswith(("MNG-", "SES-"))


@pytest.mark.wire
def test_the_errors_keep_their_cause_and_redaction(outcomes: dict[str, Any]) -> None:
    assert "ServerSelectionTimeoutError" == outcomes["closed_port"]["cause"]
    assert "DuplicateKeyError" == outcomes["duplicate"]["cause"]
    assert outcomes["hang"]["message"].startswith(("count_stats did not finish", "count_stats"))
    assert "pass a MongoDB URL" in outcomes["no_url"]["message"]


def test_without_the_package_nothing_changes_and_nothing_is_imported() -> None:
    with pytest.raises(ConfigurationError) as caught:
        MongoSessions(db="pools", collection="tg")

    assert ConfigurationError is type(caught.value)
    assert PACKAGE not in sys.modules


async def test_the_older_spelling_of_the_retry_flag(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"

    for flag, attempts in ((True, 1), (False, 0)):
        caplog.clear()
        pool = MongoSessions(url, db="pools", collection="tg", timeout=2, allow_reconnect=flag)
        assert attempts == pool.max_allowed_reconnect
        with pytest.raises(ServerUnavailableError):
            await pool.connect()
        assert attempts == sum("reconnect attempt" in r.getMessage() for r in caplog.records)

    with pytest.raises(ConfigurationError, match="not both"):
        MongoSessions(url, db="p", collection="t", allow_reconnect=True, max_allowed_reconnect=2)
    with pytest.raises(ConfigurationError, match="True or False"):
        MongoSessions(url, db="p", collection="t", allow_reconnect="yes")  # type: ignore[arg-type]
