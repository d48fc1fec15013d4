"""What every driver of a running tally needs from outside it: the counter, a free port.

Standard library only, and outside tests/: the Locust processes (which see only this
folder), bench/ and tests/ all import it, each with loadtest/ on sys.path.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def free_port() -> int:
    """A loopback port nothing listens on now, for a stack or process of the caller's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_count(url: str, retry_for: float = 0.0, timeout: float = 10.0) -> int:
    """The counter through GET /count as JSON (the read is itself one increment).

    The request carries an Idempotency-Key of its own. With `retry_for`, a refused
    connection or a non-200 answer is retried with that same key until `retry_for`
    seconds have passed, so however many attempts it takes, the read counts once.
    """
    # The caller's own stack address: no file: or custom schemes reach here.
    request = urllib.request.Request(  # noqa: S310
        f"{url.rstrip('/')}/count", headers={**JSON, "Idempotency-Key": uuid.uuid4().hex}
    )
    deadline = time.monotonic() + retry_for
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(json.load(response)["count"])
        except OSError:  # refused, reset, timed out, or an HTTP error status
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.1)
