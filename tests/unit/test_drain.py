"""SIGUSR1 drains a real `python -m service` process: the port closes, the marker says
drained, the process stays up until SIGTERM, then exits cleanly."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from service.drain import DRAINED_NAME
from tests.support import AppProcess, wait_until


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigusr1_closes_the_port_keeps_the_process_until_sigterm(tmp_path: Path) -> None:
    # Redis is never reached: /healthz needs none, and a drain opens no connection.
    app = AppProcess(
        {"REDIS_URL": "redis://127.0.0.1:1/0", "TMPDIR": str(tmp_path), "LOG_LEVEL": "INFO"}
    )
    try:
        marker = tmp_path / DRAINED_NAME
        app.process.send_signal(signal.SIGUSR1)
        wait_until(marker.exists, 20, "the drained marker")
        assert refuses(app.port)
        assert app.process.poll() is None  # drained, not gone
        app.terminate()
        assert app.process.wait(timeout=20) == 0
        assert '"drained"' in app.output()
    finally:
        app.stop()


def test_sigterm_alone_stops_without_a_drain(tmp_path: Path) -> None:
    app = AppProcess({"REDIS_URL": "redis://127.0.0.1:1/0", "TMPDIR": str(tmp_path)})
    try:
        app.terminate()
        assert app.process.wait(timeout=20) == 0
        assert not (tmp_path / DRAINED_NAME).exists()
    finally:
        app.stop()
