"""The container's health probe: exit 0 when GET /healthz on this replica answers 200.

Docker runs it every few seconds in every replica, so it is built to cost little:
run as `python -I -S /app/service/healthcheck.py` it imports nothing beyond the standard
library's socket (no site-packages, no urllib), about a third of the CPU of a probe
through urllib.request (docs/PERFORMANCE.md).
"""

import socket
import sys


def probe(host: str = "127.0.0.1", port: int = 8000, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status_line = conn.makefile("rb").readline()
    except OSError:
        return False
    return status_line.split(b" ", 2)[1:2] == [b"200"]


if __name__ == "__main__":
    sys.exit(0 if probe() else 1)
