"""A test double for a webhook receiver: prints each Alertmanager notification it is sent as
one JSON line. Runs in the app image on the compose network under the alias
`alert-receiver`; the tests read its output with `docker logs`."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 9000


# The server answers on many threads: a lock keeps each line whole, one write each
# (print's text and newline are two writes, and two threads' lines could mix).
_OUTPUT = threading.Lock()


def emit(line: str) -> None:
    with _OUTPUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        emit(json.dumps(json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(format % args + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Receiver).serve_forever()  # noqa: S104
