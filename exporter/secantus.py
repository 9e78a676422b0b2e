"""Run SecantusDB, a MongoDB-wire-compatible server, as a child process.

The exporter's embedded default and the test suite both use it: it listens on
loopback only, keeps its data in a folder of the caller's, and is stopped
(terminated, then killed if it lingers) when the caller is done.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["SecantusServer", "ServerStartError", "free_port"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The child server did not start or did not answer in time."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on *host* right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SecantusServer:
    """A SecantusDB child process on ``127.0.0.1:port`` with its data in *data_dir*.

    Args:
        data_dir: Folder for the server's data and its log file ``secantus.log``;
            created if missing and kept across restarts.
        port: TCP port; a free one is chosen when omitted.
        start_timeout: Seconds to wait for the server to answer.
        test_commands: Enable ``configureFailPoint`` (fault-injection tests only:
            any client that reaches the port could use it).
        durable: Fsync the log on every commit, so writes acknowledged with
            ``j=True`` survive a crash (slower; off by default, as in mongod).
        env: The child's environment; the parent's when omitted.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        start_timeout: float = 60.0,
        *,
        test_commands: bool = False,
        durable: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = dict(env) if env is not None else None
        self.test_commands = test_commands
        self.durable = durable
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The connection string of the server."""
        return f"mongodb://{LOOPBACK}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Self:
        """Start the server and wait until it accepts connections.

        Raises:
            ServerStartError: SecantusDB is not installed, exited, or did not
                answer within *start_timeout* seconds.
        """
        if self._process is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.data_dir / "secantus.log").open("ab")
        command = [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.data_dir / "db"),
            "--log-level",
            "WARNING",
        ]
        if self.test_commands:
            command.append("--enable-test-commands")
        if self.durable:
            command.append("--sync-on-commit")
        log.debug("starting %s", " ".join(command))
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C in the terminal goes to the
            # parent, which then stops the child in order.
            start_new_session=True,
            cwd=self.data_dir,
            env=self.env,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"SecantusDB exited with code {self._process.returncode}: {self._cause()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"SecantusDB did not accept connections on {LOOPBACK}:{self.port} "
            f"within {self.start_timeout:g} s"
        )

    def _cause(self) -> str:
        """Why the server exited: the last error its log names, or that it is not installed."""
        if importlib.util.find_spec("secantus") is None:
            return "the 'SecantusDB' package is not installed (pip install 'sessionpool[embedded]')"
        log_file = self.data_dir / "secantus.log"
        try:
            lines = log_file.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        errors = [line.strip() for line in lines if "Error" in line or "error" in line]
        last = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        return f"{last[-300:]} (see {log_file})"

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM (or SIGKILL with *kill*), then SIGKILL after *timeout* s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
