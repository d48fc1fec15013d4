"""A test double for a webhook receiver: prints each Alertmanager notification it is sent as
one JSON line. Runs in the app image on the compose network under the alias
`alert-receiver`; the tests read its output with `docker logs`."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 9000


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(json.dumps(json.loads(body)), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(format % args + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Receiver).serve_forever()  # noqa: S104
