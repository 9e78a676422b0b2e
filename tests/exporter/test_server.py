"""The HTTP endpoint, in process: routes, readiness, basic auth, TLS, hostile clients."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.collector import SnapshotCollector
from exporter.config import Config
from exporter.server import MetricsServer, make_app, readiness
from exporter.snapshot import Snapshot, State
from tests.support.snapshots import TAKEN_AT, fixed_snapshot

SECRET = "b4sic-s3cret-not-in-any-response"


def serve(config: Config, snapshot: Snapshot, now: float = TAKEN_AT + 1) -> MetricsServer:
    state = State(config.interval)
    state.snapshot = snapshot
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(state))
    server = MetricsServer(config, make_app(state, registry, config, clock=lambda: now))
    server.start()
    return server


def get(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def plain() -> Iterator[MetricsServer]:
    server = serve(Config(mongo_url="mongodb://x", port=0), fixed_snapshot())
    yield server
    server.stop()


@pytest.fixture
def with_auth() -> Iterator[MetricsServer]:
    config = Config(
        mongo_url="mongodb://x", port=0, basic_auth_user="prom", basic_auth_password=SECRET
    )
    server = serve(config, fixed_snapshot())
    yield server
    server.stop()


def test_routes(plain: MetricsServer) -> None:
    status, headers, body = get(plain.url + "/metrics")
    assert (200, True) == (status, 'sessionpool_sessions{collection="telegram"' in body)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert (200, "ok\n") == get(plain.url + "/healthz")[::2]
    landing = get(plain.url + "/")
    assert 200 == landing[0]
    assert 'href="metrics"' in landing[2]
    assert "2 pool(s) discovered" in landing[2]
    assert 404 == get(plain.url + "/metrics/../../etc/passwd")[0]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_refused(plain: MetricsServer, method: str) -> None:
    status, headers, _ = get(plain.url + "/metrics", method=method)

    assert (405, "GET, HEAD") == (status, headers["Allow"])


def test_a_snapshot_is_rendered_once_and_a_new_one_replaces_it() -> None:
    from exporter.server import RenderCache

    state = State(15)
    state.snapshot = fixed_snapshot()
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(state))
    cache = RenderCache(state, registry)

    first = cache.get("", compress=False)
    again = cache.get("", compress=False)
    state.snapshot = replace(fixed_snapshot(), up=False)
    changed = cache.get("", compress=False)

    assert first[1] is again[1]  # the same bytes, not a second rendering
    assert b"sessionpool_up 1.0" in first[1]
    assert b"sessionpool_up 0.0" in changed[1]
    assert gzip.decompress(cache.get("", compress=True)[1]) == changed[1]


def test_gzip_and_head(plain: MetricsServer) -> None:
    status, headers, _ = get(plain.url + "/metrics", method="HEAD")
    assert (200, "text/plain") == (status, headers["Content-Type"].split(";")[0])
    request = urllib.request.Request(plain.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert "gzip" == response.headers["Content-Encoding"]
        assert b"sessionpool_up 1.0" in gzip.decompress(response.read())


def test_openmetrics_is_negotiated(plain: MetricsServer) -> None:
    _, headers, body = get(
        plain.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_readiness() -> None:
    interval = 15
    state = State(interval)
    assert (False, "no refresh has finished yet") == readiness(state, 45, TAKEN_AT)
    state.snapshot = fixed_snapshot()
    # A failing pool is that pool's problem (its error counter): still ready.
    assert (True, "ok: 2 pool(s), 1 failing, refreshed 1 s ago") == readiness(
        state, 45, TAKEN_AT + 1
    )
    state.snapshot = replace(fixed_snapshot(), pools=fixed_snapshot().pools[1:])
    assert (True, "ok: 1 pool(s), refreshed 1 s ago") == readiness(state, 45, TAKEN_AT + 1)
    ready, reason = readiness(state, 45, TAKEN_AT + 46)
    assert (False, "the last refresh finished 46 s ago (limit 45 s)") == (ready, reason)
    state.snapshot = replace(state.snapshot, up=False)
    assert (False, "MongoDB did not answer at the last refresh") == readiness(state, 45, TAKEN_AT)


def test_readyz_answers_503_when_not_ready() -> None:
    server = serve(Config(mongo_url="mongodb://x", port=0), replace(fixed_snapshot(), up=False))
    try:
        status, _, body = get(server.url + "/readyz")
    finally:
        server.stop()
    assert (503, "MongoDB did not answer at the last refresh\n") == (status, body)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("prom", "wrong"),
        basic("other", SECRET),
        {"Authorization": "Bearer " + SECRET},
        {"Authorization": "Basic !!!not-base64"},
    ],
)
def test_basic_auth_rejects_wrong_credentials(
    with_auth: MetricsServer, headers: dict[str, str]
) -> None:
    for path in ("/metrics", "/"):
        status, response_headers, body = get(with_auth.url + path, headers=headers)
        assert 401 == status
        assert response_headers["WWW-Authenticate"].startswith('Basic realm="sessionpool')
        assert SECRET not in body
        assert "sessionpool_" not in body


def test_basic_auth_accepts_the_right_credentials_and_leaves_probes_open(
    with_auth: MetricsServer,
) -> None:
    assert 200 == get(with_auth.url + "/metrics", headers=basic("prom", SECRET))[0]
    assert 200 == get(with_auth.url + "/healthz")[0]
    status, _, body = get(with_auth.url + "/readyz")  # no credentials needed, reason only
    assert (200, "ok: 2 pool(s), 1 failing, refreshed 1 s ago\n") == (status, body)


def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    config = Config(mongo_url="mongodb://x", port=0, tls_cert_file=cert, tls_key_file=key)
    server = serve(config, fixed_snapshot())
    try:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        status, _, body = get(server.url + "/metrics", context=context)
        assert 200 == status
        assert "sessionpool_up 1.0" in body
        # A plain-HTTP client gets nothing, and the server keeps serving.
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure will do
            get(server.url.replace("https", "http") + "/metrics")
        assert 200 == get(server.url + "/healthz", context=context)[0]
    finally:
        server.stop()


def test_slow_and_hostile_clients_do_not_block_scrapes(plain: MetricsServer) -> None:
    port = plain.port
    # Ten clients that connect and send half a request, then nothing.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    for sock in idle:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        started = time.monotonic()
        assert 200 == get(plain.url + "/metrics")[0]
        assert time.monotonic() - started < 1.0
        # A header far over the limit is refused; the server goes on.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
            reply = sock.recv(200)
        assert reply.split(b" ")[1] in {b"400", b"431"}
        # Garbage instead of HTTP.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x00\xff garbage\r\n\r\n")
            assert b"Error code: 400" in sock.recv(4096)
        assert 200 == get(plain.url + "/metrics")[0]
    finally:
        for sock in idle:
            sock.close()


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/", "/missing"])
def test_head_answers_carry_headers_and_no_body(plain: MetricsServer, path: str) -> None:
    request = f"HEAD {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode()

    head, _, body = raw_request(plain.port, request).partition(b"\r\n\r\n")

    assert b"" == body
    assert b"Content-Length: " in head
    assert 0 < int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])


def test_a_non_ascii_authorization_header_is_a_plain_401(
    with_auth: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    request = "GET /metrics HTTP/1.0\r\nAuthorization: Basic ключ\r\n\r\n".encode()

    answer = raw_request(with_auth.port, request)

    assert answer.startswith(b"HTTP/1.0 401")
    assert "Traceback" not in capfd.readouterr().err


def test_an_error_while_serving_is_a_500_in_the_log_not_on_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        def collect(self) -> Any:
            raise RuntimeError("collector bug")

    state = State(15)
    state.snapshot = fixed_snapshot()
    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    config = Config(mongo_url="mongodb://x", port=0)
    server = MetricsServer(config, make_app(state, registry, config))
    server.start()
    try:
        status, _, body = get(server.url + "/metrics")
    finally:
        server.stop()

    assert (500, "internal error\n") == (status, body)
    assert any("collector bug" in str(r.exc_info) for r in caplog.records if r.exc_info)
    assert "Traceback" not in capfd.readouterr().err


def test_two_hundred_concurrent_scrapes_are_all_answered_within_a_second(
    plain: MetricsServer,
) -> None:
    # Connections opened at once, as Prometheus servers and dashboards may:
    # a short listen backlog makes some wait a second or more for a SYN retry.
    async def scrape(start: asyncio.Event) -> float:
        await start.wait()
        began = time.monotonic()
        async with asyncio.timeout(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", plain.port)
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            await writer.drain()
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.0 200")
        return time.monotonic() - began

    async def burst() -> list[float]:
        start = asyncio.Event()
        tasks = [asyncio.create_task(scrape(start)) for _ in range(200)]
        await asyncio.sleep(0.1)
        start.set()
        return await asyncio.gather(*tasks)

    durations = asyncio.run(burst())

    assert 200 == len(durations)
    assert max(durations) < 1.0, f"slowest {max(durations):.2f} s"
