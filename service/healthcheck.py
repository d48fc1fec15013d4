"""The container's health probe: exit 0 when GET /healthz on this replica answers 200.

Docker runs it every few seconds in every replica, so it is built to cost little:
run as `python -I -S /app/service/healthcheck.py` it imports the standard library and
the settings' declarations only (no site-packages, no urllib.request), and asks the
port the app was told to listen on (PORT, read by its declaration in settings.py).
"""

import os
import socket
import sys
from pathlib import Path


def probe(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status_line = conn.makefile("rb").readline()
    except OSError:
        return False
    return status_line.split(b" ", 2)[1:2] == [b"200"]


def main() -> int:
    # -I puts only this file's folder on sys.path; the package lives one level up.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from service.settings import ConfigError, port_from_env

    try:
        port = port_from_env(os.environ)
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    return 0 if probe(port) else 1


if __name__ == "__main__":
    sys.exit(main())
