"""The backends a benchmark runs on, and a command counter for the wire ones."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mongomock_motor import AsyncMongoMockClient
from pymongo import AsyncMongoClient, monitoring

from exporter.secantus import SecantusServer


class CommandCounter(monitoring.CommandListener):
    """Counts the commands a client sends (handshakes and heartbeats are not commands)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reset(self) -> None:
        self.names.clear()


@dataclass
class Backend:
    """A place to run: a client (with a command counter on the wire) and a URL."""

    name: str
    client: Any
    url: str | None = None
    counter: CommandCounter | None = None
    server: SecantusServer | None = None
    databases: list[str] = field(default_factory=list)

    @property
    def wire(self) -> bool:
        return self.url is not None

    def database(self) -> Any:
        """A fresh database, dropped when the backend closes."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        self.databases.append(name)
        return self.client[name]


@asynccontextmanager
async def open_backend(name: str) -> AsyncIterator[Backend]:
    """Open backend *name*: ``mock``, ``secantus`` (a child process) or ``mongo`` (MONGO_URL)."""
    if name == "mock":
        yield Backend("mongomock-motor (in process)", AsyncMongoMockClient(tz_aware=True))
        return
    server = None
    folder = None
    if name == "secantus":
        folder = tempfile.TemporaryDirectory(prefix="bench-secantus-")
        server = SecantusServer(Path(folder.name)).start()
        url = server.url
        label = "SecantusDB child process (MongoDB wire protocol, no index use)"
    else:
        url = os.environ["MONGO_URL"]
        label = "MongoDB at MONGO_URL"
    counter = CommandCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, tz_aware=True, event_listeners=[counter]
    )
    backend = Backend(label, client, url, counter, server)
    try:
        yield backend
    finally:
        for database in backend.databases:
            await client.drop_database(database)
        await client.close()
        if server is not None:
            server.stop()
        if folder is not None:
            folder.cleanup()
