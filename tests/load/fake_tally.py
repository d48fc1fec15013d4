"""A deliberately wrong tally for proving the load test's checks fail: `duplicates` or `skewed`.

duplicates: every fifth /count repeats the previous value (a lost update).
skewed: a correct counter, but replica r1 answers three times as often as r2 and r3.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[2]
lock = threading.Lock()
count = 0
replicas = itertools.cycle(
    ["r1", "r1", "r1", "r2", "r3"] if MODE == "skewed" else ["r1", "r2", "r3"]
)


class FakeTally(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        global count
        with lock:
            counts = self.path == "/count" and not (MODE == "duplicates" and count % 5 == 4)
            count += counts
            value, replica = count, next(replicas)
        html = "text/html" in self.headers.get("Accept", "")
        if self.path == "/count":
            body = f"<output>{value}</output>" if html else json.dumps({"count": value})
        else:
            body = "<h1>tally</h1>" if html else "{}"
        payload = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Served-By", replica)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), FakeTally).serve_forever()
