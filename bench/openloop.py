"""An open-loop load generator for `make bench`: GET requests at a fixed rate, latency from
each request's scheduled send time.

wrk keeps each connection busy (a closed loop): when the server slows down it sends less,
and the requests it did not send never show up in its percentiles (coordinated omission).
Here the send times are fixed in advance (start + i / rate); a request that waits for a
free connection waits on the clock, so queueing anywhere is in the latency. Keep-alive
HTTP/1.1 over a fixed pool of connections, one request at a time on each, as nginx's
clients do.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

# A request that takes longer is an error, not a latency: the stack answers within
# REDIS_TIMEOUT and nginx's proxy_read_timeout (5 s) even when Redis is down.
REQUEST_TIMEOUT = 10.0


@dataclass
class OpenLoopRun:
    rate: float  # offered, requests per second
    sent: int
    latencies: list[float] = field(default_factory=list)  # seconds, of the 2xx answers
    errors: int = 0  # refused, timed out, cut, or not 2xx

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        """The nearest-rank percentile (q in 0-100); NaN when nothing was answered."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run(
    host: str, port: int, path: str, rate: float, seconds: float, connections: int = 64
) -> OpenLoopRun:
    """Offer `rate` requests a second for `seconds`; wait for every answer (or its timeout)."""
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * seconds))
    result = OpenLoopRun(rate=rate, sent=total)
    due: asyncio.Queue[float | None] = asyncio.Queue()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()

    async def connection() -> None:
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (scheduled := await due.get()) is not None:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if stream is None:
                        stream = await asyncio.open_connection(host, port)
                    ok, keep = await exchange(*stream, request)
            except (OSError, EOFError, ValueError, TimeoutError, asyncio.LimitOverrunError):
                ok = keep = False
            if not keep and stream is not None:
                stream[1].close()
                stream = None
            if ok:
                result.latencies.append(loop.time() - scheduled)
            else:
                result.errors += 1
        if stream is not None:
            stream[1].close()

    pool = [asyncio.create_task(connection()) for _ in range(connections)]
    start = loop.time() + 0.05
    for i in range(total):
        send_at = start + i / rate
        if send_at > loop.time():
            await asyncio.sleep(send_at - loop.time())
        due.put_nowait(send_at)
    for _ in pool:
        due.put_nowait(None)
    await asyncio.gather(*pool)
    return result


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bool, bool]:
    """One request and its whole answer on a keep-alive connection: (a 2xx, the connection
    stays open). nginx closes a client's connection after keepalive_requests, saying so."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")  # IncompleteReadError is an EOFError
    status = int(head[9:12])
    length, keep = 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    await reader.readexactly(length)
    return 200 <= status < 300, keep
