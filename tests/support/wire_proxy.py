"""A loopback proxy that reads the MongoDB wire protocol and can change what it carries.

It forwards whole messages between a client and a server on 127.0.0.1 and,
when told to, for the ``OP_MSG`` messages it understands:

* rewrites the ``localTime`` of ``hello`` replies (a server whose clock is absurd);
* delays the replies to commands it is told of (``hello``: a clock sample taken
  during a stall; ``findAndModify``: a hand-out's late reply);
* refuses commands whose aggregation pipeline has more stages than a limit, or
  whose message is larger than a limit, with the error a real MongoDB sends
  (the test server enforces neither of MongoDB's limits).

Everything else passes unchanged, byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import bson

from tests.support.loopback import LoopbackProxy

OP_MSG = 2013
_HEADER = struct.Struct("<iiii")  # length, requestID, responseTo, opCode
_HELLO = {"hello", "ismaster", "isMaster"}


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> bytes:
    """One whole wire message from *sock*."""
    head = _read_exactly(sock, 4)
    (length,) = struct.unpack("<i", head)
    return head + _read_exactly(sock, length - 4)


def body_of(message: bytes) -> tuple[int, dict[str, Any]] | None:
    """``(flags, document)`` of an ``OP_MSG`` whose first section is a body, else ``None``."""
    _, _, _, op_code = _HEADER.unpack_from(message)
    if op_code != OP_MSG or message[20] != 0:
        return None
    (flags,) = struct.unpack_from("<I", message, 16)
    (size,) = struct.unpack_from("<i", message, 21)
    return flags, bson.decode(message[21 : 21 + size])


def with_body(message: bytes, document: dict[str, Any]) -> bytes:
    """*message* (an ``OP_MSG`` with a body first) with its body replaced by *document*."""
    (size,) = struct.unpack_from("<i", message, 21)
    rest = message[21 + size :]
    payload = message[16:21] + bson.encode(document) + rest
    _, request_id, response_to, op_code = _HEADER.unpack_from(message)
    return _HEADER.pack(16 + len(payload), request_id, response_to, op_code) + payload


def refusal(request: bytes, code: int, message: str) -> bytes:
    """An ``OP_MSG`` reply to *request* with a command error."""
    _, request_id, _, _ = _HEADER.unpack_from(request)
    document = {"ok": 0.0, "errmsg": message, "code": code, "codeName": "Refused"}
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(document)
    return _HEADER.pack(16 + len(payload), 0, request_id, OP_MSG) + payload


class WireProxy(LoopbackProxy):
    """Forwards 127.0.0.1:port to *target_port*, message by message.

    Attributes (set them while it runs):
        local_time: A ``datetime`` every ``hello`` reply's ``localTime`` is replaced by.
        delays: Seconds the replies to each command name are held back, or a
            list of them, one per reply in turn (then none); a command's entry
            in *once* is removed after its first delayed reply.
        max_stages: Refuse an ``aggregate`` whose pipeline, or one of its
            sub-pipelines, has more stages than this.
        max_message: Refuse a command message larger than this many bytes.
        no_change_streams: Refuse ``$changeStream``, as a standalone mongod does
            (with *change_stream_refusal*: another code and message, such as a
            user's role without the ``changeStream`` action).
    """

    def __init__(self, target_port: int) -> None:
        self.local_time: datetime | None = None
        self.delays: dict[str, float | list[float]] = {}
        self.once: set[str] = set()
        self.max_stages: int | None = None
        self.no_change_streams = False
        self.change_stream_refusal = (
            40573,
            "The $changeStream stage is only supported on replica sets",
        )
        self.max_message: int | None = None
        self.commands: list[str] = []
        self.refused = 0
        super().__init__(target_port)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        hellos: dict[int, str] = {}
        for source, target, step in (
            (client, upstream, self._request),
            (upstream, client, self._reply),
        ):
            thread = threading.Thread(
                target=self._pump, args=(source, target, step, hellos), daemon=True
            )
            thread.start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        step: Callable[[bytes, dict[int, str], socket.socket], bytes | None],
        hellos: dict[int, str],
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError, ValueError):
            while not self._stop.is_set():
                message = step(read_message(source), hellos, source)
                if message is not None:
                    target.sendall(message)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()

    def _request(
        self, message: bytes, hellos: dict[int, str], source: socket.socket
    ) -> bytes | None:
        parsed = body_of(message)
        if parsed is None:
            return message
        _, document = parsed
        name = next(iter(document), "")
        self.commands.append(name)
        _, request_id, _, _ = _HEADER.unpack_from(message)
        if name in _HELLO or name in self.delays:
            hellos[request_id] = name
        reason = self._refusal(name, document, len(message))
        if reason is not None:
            self.refused += 1
            source.sendall(refusal(message, *reason))
            return None
        return message

    def _refusal(self, name: str, document: dict[str, Any], size: int) -> tuple[int, str] | None:
        if self.max_message is not None and size > self.max_message:
            return 10334, f"BSONObjectTooLarge: command of {size} bytes"
        pipeline = document.get("pipeline") or [{}]
        if self.no_change_streams and name == "aggregate" and "$changeStream" in pipeline[0]:
            return self.change_stream_refusal
        if self.max_stages is not None and name == "aggregate":
            stages = longest_pipeline(document.get("pipeline", []))
            if stages > self.max_stages:
                return 7749501, "Pipeline length must be no longer than 1000 stages"
        return None

    def _reply(self, message: bytes, hellos: dict[int, str], source: socket.socket) -> bytes | None:
        _, _, response_to, _ = _HEADER.unpack_from(message)
        name = hellos.pop(response_to, None)
        if name is None:
            return message
        planned = self.delays.get(name, 0.0)
        delay = (planned.pop(0) if planned else 0.0) if isinstance(planned, list) else planned
        if delay:
            if name in self.once:
                self.delays.pop(name, None)
            time.sleep(delay)
        parsed = body_of(message)
        if parsed is not None and self.local_time is not None and "localTime" in parsed[1]:
            return with_body(message, {**parsed[1], "localTime": self.local_time})
        return message


def longest_pipeline(pipeline: Any) -> int:
    """Stages of the longest of *pipeline* and its sub-pipelines (MongoDB limits each one)."""
    if not isinstance(pipeline, list):
        return 0
    longest = len(pipeline)
    for stage in pipeline:
        if not isinstance(stage, dict):
            continue
        for operator in ("$unionWith", "$lookup"):
            spec = stage.get(operator)
            if isinstance(spec, dict):
                longest = max(longest, longest_pipeline(spec.get("pipeline")))
        facets = stage.get("$facet")
        if isinstance(facets, dict):
            longest = max([longest, *(longest_pipeline(inner) for inner in facets.values())])
    return longest
