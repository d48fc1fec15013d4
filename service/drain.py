"""Signals: SIGTERM stops the replica; SIGUSR1 drains it first and keeps it up (make deploy).

A drain is Hypercorn's own graceful shutdown without the exit: the listening socket
closes (nginx's next connect is refused at once and goes to another replica), idle
keep-alive connections close, the requests in flight finish within GRACEFUL_TIMEOUT,
the Redis pool closes. The process then stays up, refusing connections, and writes
DRAINED so that ops/deploy.py knows nothing is in flight any more; SIGTERM ends it.
Staying up matters: a stopped container's address goes silent, and nginx, which still
holds it until it re-resolves `app`, would wait out its connect timeout on it.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path

from service.logs import get_logger

# The file a drained replica writes (/tmp, a tmpfs in the stack); ops/deploy.py reads it.
DRAINED_NAME = "tally-drained"


def drained_marker() -> Path:
    return Path(tempfile.gettempdir()) / DRAINED_NAME


class Signals:
    """Installs the handlers: SIGTERM and SIGINT set `stop` (Hypercorn's shutdown trigger)
    and end the process; SIGUSR1 sets `stop` alone, and `hold()` keeps the process up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._stop = stop
        self._terminated = asyncio.Event()
        self.draining = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._terminate)
        loop.add_signal_handler(signal.SIGUSR1, self._drain)

    def _terminate(self) -> None:
        self._terminated.set()
        self._stop.set()

    def _drain(self) -> None:
        if not self.draining:
            get_logger().info("draining")
        self.draining = True
        self._stop.set()

    async def hold(self) -> None:
        """After the server stopped: when it was a drain, say so and wait for SIGTERM."""
        if not self.draining or self._terminated.is_set():
            return
        drained_marker().write_text("drained\n")
        get_logger().info("drained")
        await self._terminated.wait()
