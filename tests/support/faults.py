"""Fault injection on loopback: a TCP proxy that can turn into a black hole, a silent server."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

from tests.support.loopback import LoopbackProxy


class BlackholeProxy(LoopbackProxy):
    """Forwards 127.0.0.1:port to *target_port*; :meth:`blackhole` makes it silent.

    While silent, it accepts connections and reads what clients send, but
    forwards nothing and answers nothing: a server that hangs, not one that
    is down. :meth:`restore` drops the held connections and forwards again.
    """

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self._silent = threading.Event()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        if not self._silent.is_set():
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                return
            self._track(upstream)
        peers = {client: upstream, upstream: client} if upstream else {client: None}
        with contextlib.suppress(OSError, ValueError):
            while not self._stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    target = peers[sock]
                    if target is not None and not self._silent.is_set():
                        target.sendall(data)
                    # silent: swallow, answer nothing

    def blackhole(self) -> None:
        """Stop answering: keep connections open, forward nothing."""
        self._silent.set()

    def restore(self) -> None:
        """Drop the held connections and forward again."""
        self._silent.clear()
        self._close_all()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers; yields its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
