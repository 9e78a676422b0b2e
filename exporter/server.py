"""The HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz`` and a landing page.

It runs in its own threads (one per connection), apart from the event loop
that talks to MongoDB, so a busy refresh or a slow client never holds up a
scrape, and it only ever reads the published snapshot.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import html
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder

from .config import Config
from .snapshot import State

__all__ = ["MetricsServer", "RenderCache", "make_app", "readiness"]

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sessionpool exporter</title></head>
<body><h1>sessionpool exporter</h1>
<p>Session pool statistics from MongoDB, refreshed every {interval:g} seconds.</p>
<ul>
<li><a href="metrics">/metrics</a> (Prometheus metrics)</li>
<li><a href="healthz">/healthz</a> (the process is alive)</li>
<li><a href="readyz">/readyz</a> (the last refresh succeeded and is fresh)</li>
</ul>
<p>{pools} pool(s) discovered; MongoDB {up}.</p>
</body></html>
"""


def readiness(state: State, stale_after: float, now: float) -> tuple[bool, str]:
    """Return whether the exporter is ready, and why (or why not).

    Ready means: a refresh finished recently and MongoDB answered it. A pool
    that fails is the pool's problem, shown by its error counter: it does not
    make the exporter unready, which would hide every other pool's metrics
    from a Kubernetes service.
    """
    snapshot = state.snapshot
    if snapshot.taken_at == 0:
        return False, "no refresh has finished yet"
    if not snapshot.up:
        return False, "MongoDB did not answer at the last refresh"
    age = now - snapshot.taken_at
    if age > stale_after:
        return False, f"the last refresh finished {age:.0f} s ago (limit {stale_after:g} s)"
    failed = len(snapshot.failed)
    failing = f", {failed} failing" if failed else ""
    return True, f"ok: {len(snapshot.pools)} pool(s){failing}, refreshed {age:.0f} s ago"


class RenderCache:
    """The exposition of the current snapshot, rendered once per snapshot and format.

    Snapshots never change once published, so a scrape between two refreshes
    gets the bytes the first one rendered: scrape time no longer grows with
    the number of pools, whether MongoDB answers or not.
    """

    def __init__(self, state: State, registry: CollectorRegistry) -> None:
        self.state = state
        self.registry = registry
        self._lock = threading.Lock()
        self._snapshot: object = None
        self._bodies: dict[tuple[str, bool], tuple[str, bytes]] = {}

    def get(self, accept: str, compress: bool) -> tuple[str, bytes]:
        """Return the content type and body for *accept* (gzipped if *compress*)."""
        with self._lock:
            snapshot = self.state.snapshot
            if snapshot is not self._snapshot:
                self._snapshot, self._bodies = snapshot, {}
            encoder, content_type = choose_encoder(accept)
            key = (content_type, compress)
            if key not in self._bodies:
                body = encoder(self.registry)
                self._bodies[key] = (content_type, gzip.compress(body) if compress else body)
            return self._bodies[key]


def _text(start_response: StartResponse, status: str, body: str, **headers: str) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers.items(),
        ],
    )
    return [data]


def _authorized(environ: Environ, user: str, password: str) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = (
            base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        )
    except (ValueError, UnicodeDecodeError):  # binascii.Error too; non-ASCII headers
        return False
    # Compare both in constant time, and always both, to leak nothing by timing.
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return user_ok and password_ok


def make_app(
    state: State,
    registry: CollectorRegistry,
    config: Config,
    clock: Callable[[], float] = time.time,
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """Return the WSGI application serving the endpoints from *state* and *registry*."""
    metrics = make_wsgi_app(registry)  # for the rare ?name[]= filtered scrape
    cache = RenderCache(state, registry)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = route(environ, start_response)
            if environ.get("REQUEST_METHOD") == "HEAD":
                # Headers only: drain and drop the body, keep its Content-Length.
                for _ in body:
                    pass
                return []
            return body
        except Exception:
            # A bug, not the client's doing: say so in the log, where JSON logs
            # keep it on one line, and answer 500 without details.
            log.exception("error serving %s", environ.get("PATH_INFO", "/"))
            return _text(start_response, "500 Internal Server Error", "internal error\n")

    def route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in {"GET", "HEAD"}:
            return _text(start_response, "405 Method Not Allowed", "use GET\n", Allow="GET, HEAD")
        # Probes need no credentials and reveal nothing but liveness.
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            ready, reason = readiness(state, config.stale_after, clock())
            return _text(
                start_response, "200 OK" if ready else "503 Service Unavailable", reason + "\n"
            )
        if config.basic_auth_user and not _authorized(
            environ, config.basic_auth_user, config.basic_auth_password or ""
        ):
            return _text(
                start_response,
                "401 Unauthorized",
                "unauthorized\n",
                **{"WWW-Authenticate": 'Basic realm="sessionpool exporter", charset="UTF-8"'},
            )
        if path == "/metrics":
            if environ.get("QUERY_STRING"):
                result: Iterable[bytes] = metrics(environ, start_response)
                return result
            compress = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower()
            content_type, body = cache.get(environ.get("HTTP_ACCEPT", ""), compress)
            headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            if compress:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/":
            snapshot = state.snapshot
            body = LANDING.format(
                interval=state.interval,
                pools=len(snapshot.pools),
                up="answered at the last refresh" if snapshot.up else "is not answering",
            ).encode("utf-8")
            start_response(
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return _text(start_response, "404 Not Found", f"no page {html.escape(path)}\n")

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog. socketserver's default of 5 makes a burst of scrapes
    # (many Prometheus servers, or a dashboard reloading) wait for SYN
    # retransmits: seconds, past Prometheus's scrape timeout.
    request_queue_size = 1024
    ssl_context: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that breaks off or fails the TLS handshake is not news.
        log.debug("request from %s failed", client_address[0], exc_info=True)


class _Handler(WSGIRequestHandler):
    # A client that sends nothing for this long is dropped; it only ever
    # holds its own thread.
    timeout = 10

    def setup(self) -> None:
        context = getattr(self.server, "ssl_context", None)
        if context is not None:
            # The TLS handshake happens here, in the connection's own thread,
            # so a slow handshake cannot stall the accept loop. Wrapping
            # detaches the raw socket, so this handler closes the TLS one.
            self.request.settimeout(self.timeout)
            tls = context.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
            self.request = tls
            try:
                tls.do_handshake()
            except BaseException:
                tls.close()
                raise
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def get_stderr(self) -> Any:
        # wsgiref prints the tracebacks of failed responses (a client that
        # went away mid-answer) to stderr; keep them in the log, at debug.
        return _DebugLog()

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s dropped: %s", self.client_address[0], exc)


class _DebugLog:
    """A text stream that sends what is written to it to the log at debug level."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("%s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


class MetricsServer:
    """The HTTP(S) server on *config.listen*:*config.port*, in a background thread."""

    def __init__(self, config: Config, app: Callable[[Environ, StartResponse], Iterable[bytes]]):
        self.config = config
        self._server = make_server(
            config.listen, config.port, app, server_class=_ThreadingServer, handler_class=_Handler
        )
        if config.tls_cert_file and config.tls_key_file:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
            self._server.ssl_context = context
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        scheme = "https" if self._server.ssl_context else "http"
        host = self.config.listen if ":" not in self.config.listen else f"[{self.config.listen}]"
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
