"""SIGTERM stops a real `python -m service` process cleanly (exit 0), as `docker stop` and
`make deploy` end a replica: Hypercorn's graceful shutdown, then after_serving."""

from __future__ import annotations

from tests.support import AppProcess


def test_sigterm_stops_the_process_cleanly() -> None:
    # Redis is never reached: nothing is requested, and the pool connects on first use.
    app = AppProcess({"REDIS_URL": "redis://127.0.0.1:1/0", "LOG_LEVEL": "INFO"})
    try:
        app.terminate()
        assert app.process.wait(timeout=20) == 0
        assert '"stopped"' in app.output()
    finally:
        app.stop()
