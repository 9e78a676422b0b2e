"""A webhook receiver for Alertmanager that writes each notification as one JSON line.

The example receiver of deploy/alertmanager/alertmanager.yml, for the compose
stack and for trying the alerting path end to end; standard library only:

    python deploy/alertmanager/webhook_log.py --port 5001 [--output FILE]

Each line is Alertmanager's webhook payload (``status``, ``groupLabels``,
``alerts`` with their ``labels`` and ``annotations``), as received.
Replace it with a real receiver (chat, paging) in production.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, ClassVar

MAX_BODY = 1 << 20
"""Bytes: a notification larger than this is refused (Alertmanager's are a few KiB)."""


class Handler(BaseHTTPRequestHandler):
    """Answers POSTs: writes the JSON body as a line, replies 200; anything else is 400."""

    output: ClassVar[IO[str]] = sys.stdout

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self.send_error(400, "a JSON body of at most 1 MiB is expected")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_error(400, "the body is not JSON")
            return
        self.output.write(json.dumps(payload, sort_keys=True) + "\n")
        self.output.flush()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"webhook: {format % args}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    parser.add_argument("--port", type=int, default=5001, help="port to listen on (5001)")
    parser.add_argument("--output", help="file to append the lines to (default: standard output)")
    args = parser.parse_args(argv)
    if args.output:
        Handler.output = open(args.output, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as the server)
    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    sys.stderr.write(f"webhook: listening on {args.listen}:{args.port}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
