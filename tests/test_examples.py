"""Every Python example of the README and the documentation runs, against the test server.

Each page's examples run in order in one namespace, as a reader would type
them into Python's asyncio REPL (``python -m asyncio``: ``await`` at the top
level), on a SecantusDB of this test's own, in a folder of its own. The
examples name a MongoDB on ``127.0.0.1:27017``; that URL is replaced with
the test server's. The namespace starts with what a worker brings and the
examples leave to it: :data:`WORKER` (the source's exceptions, ``fetch``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from exporter.secantus import SecantusServer, free_port
from sessionlib import MongoSessions, SessionStore

pytestmark = pytest.mark.wire

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LOCAL = re.compile(r"mongodb://127\.0\.0\.1:27017/?(\?directConnection=true)?")

WORKER = '''
class RateLimited(Exception):
    """The source said 429."""

class Banned(Exception):
    """The source banned the account."""

class BadLogin(Exception):
    """The account's password no longer works."""

class LoginFailed(Exception):
    """The source refused the login."""

async def fetch(session):
    """The worker's request to the source, with the session."""
    return {"ok": True}
'''


def examples(page: Path) -> list[tuple[int, str]]:
    """The ``python`` blocks of *page*, with their first line's number."""
    found, block, start = [], None, 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if block is None and line.strip() == "```python":
            block, start = [], number + 1
        elif block is not None and line.strip() == "```":
            found.append((start, "\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    with SecantusServer(tmp_path_factory.mktemp("examples")) as running:
        yield running


@pytest.fixture
def loopback_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """``start_http_server`` binds a free loopback port, whatever the example asks."""
    servers: list[Any] = []
    real = prometheus_client.start_http_server

    def on_loopback(port: int, addr: str = "0.0.0.0", **kwargs: Any) -> Any:
        started = real(free_port(), addr="127.0.0.1", **kwargs)
        servers.append(started)
        return started

    monkeypatch.setattr(prometheus_client, "start_http_server", on_loopback)
    yield servers
    for httpd, _ in servers:
        httpd.shutdown()


async def run_page(page: Path, url: str) -> None:
    namespace: dict[str, Any] = {"__name__": "__example__"}
    exec(WORKER, namespace)
    try:
        for line, source in examples(page):
            try:
                code = compile(
                    LOCAL.sub(url, source),
                    f"{page.name}:{line}",
                    "exec",
                    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                )
                result = eval(code, namespace)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise AssertionError(f"the example at {page.name}:{line} fails: {exc!r}") from exc
    finally:
        for value in list(namespace.values()):  # close the pools the examples left open
            if isinstance(value, MongoSessions | SessionStore) and value.connected:
                await value.close()


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_every_example_runs(
    page: Path,
    server: SecantusServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loopback_metrics: list[Any],
) -> None:
    monkeypatch.chdir(tmp_path)
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(server.url)
    for name in client.list_database_names():
        if name not in {"admin", "config", "local"}:
            client.drop_database(name)
    client.close()

    asyncio.run(run_page(page, server.url))


def test_the_pages_have_examples() -> None:
    """A guard against an extraction that finds nothing (and so tests nothing)."""
    counted = {page.name: len(examples(page)) for page in PAGES}
    assert counted["README.md"] >= 2
    assert sum(counted.values()) >= 20
