"""An open-loop load generator for `make bench`: GET requests at a fixed rate, latency from
each request's scheduled send time.

wrk keeps each connection busy (a closed loop): when the server slows down it sends less,
and the requests it did not send never show up in its percentiles (coordinated omission).
Here the send times are fixed in advance (start + i / rate); a request that waits for a
free connection waits on the clock, so queueing anywhere is in the latency. Keep-alive
HTTP/1.1 over a fixed pool of connections, one request at a time on each, as nginx's
clients do.

On its own, against a stack already up, it prints the percentiles at each offered rate
(latency against load, the curve behind one `make bench` figure):

    uv run --frozen python bench/openloop.py http://<nginx's address>:80/count 400 1200 1870

With OPENLOOP_SLOW_MS=20 it also prints when, in each run, the answers slower than that
were due: a tail made by periodic stalls (Docker's health probes) comes in clusters.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

# A request that takes longer is an error, not a latency: the stack answers within
# REDIS_TIMEOUT and nginx's proxy_read_timeout (5 s) even when Redis is down.
REQUEST_TIMEOUT = 10.0


@dataclass
class OpenLoopRun:
    rate: float  # offered, requests per second
    sent: int
    latencies: list[float] = field(default_factory=list)  # seconds, of the 2xx answers
    due: list[float] = field(default_factory=list)  # their send times, seconds into the run
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

    def slow_by_time(self, over: float, step: float = 0.1) -> dict[float, int]:
        """How many answers took longer than `over` seconds, by the `step` of the run they
        were due in: a tail from periodic stalls shows up as clusters at their period."""
        counts: dict[float, int] = {}
        for latency, due in zip(self.latencies, self.due, strict=True):
            if latency > over:
                slot = round(due // step * step, 3)
                counts[slot] = counts.get(slot, 0) + 1
        return counts


def request_bytes(host: str, path: str) -> bytes:
    """One GET, as a client that leaves nginx to make up its id."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()


async def run(
    host: str,
    port: int,
    path: str,
    rate: float,
    seconds: float,
    connections: int = 64,
) -> OpenLoopRun:
    """Offer `rate` requests a second for `seconds`; wait for every answer (or its timeout)."""
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * seconds))
    result = OpenLoopRun(rate=rate, sent=total)
    due: asyncio.Queue[float | None] = asyncio.Queue()
    request = request_bytes(host, path)

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
                result.due.append(scheduled - start)
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


def offer(host: str, port: int, path: str, rate: float, seconds: float) -> OpenLoopRun:
    """`run` on uvloop: the generator shares the machine's cores with the stack it loads,
    and on uvloop it took 0.15 of a core at 1,800 req/s against asyncio's 0.22-0.25."""
    return uvloop.run(run(host, port, path, rate, seconds))


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


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: openloop.py URL RATE [RATE ...]  (OPENLOOP_SECONDS, default 10)")
    url = urlsplit(argv[0])
    if url.hostname is None:
        sys.exit(f"openloop: {argv[0]!r} is not an http URL")
    seconds = float(os.environ.get("OPENLOOP_SECONDS", "10"))
    slow_ms = float(os.environ.get("OPENLOOP_SLOW_MS", "0"))
    print("offered req/s | answered | errors | p50 ms | p90 ms | p99 ms | p99.9 ms")
    for rate in map(float, argv[1:]):
        run_ = offer(url.hostname, url.port or 80, url.path or "/", rate, seconds)
        ms = [f"{run_.percentile(q) * 1000:.1f}" for q in (50, 90, 99, 99.9)]
        print(f"{rate:,.0f} | {run_.ok} | {run_.errors} | {' | '.join(ms)}", flush=True)
        if slow_ms:
            slow = run_.slow_by_time(slow_ms / 1000)
            when = ", ".join(f"{slot:.1f} s: {n}" for slot, n in sorted(slow.items()))
            print(f"  answers over {slow_ms:g} ms, by when they were due: {when or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])
