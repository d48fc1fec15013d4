"""The client side of one exactly-once increment: the instructions our process spends on
`Counter.increment` against a real Redis, with each of redis-py's reply parsers (the pure
Python one it uses by default, and hiredis's C one when that package is installed).
Counted under cachegrind as bench/cost.py counts a request: two runs, WARMUP and WARMUP +
CALLS increments, and the difference per call, so start-up and imports cancel out.

    docker run -d --rm --name tally-client-cost -p 127.0.0.1:6399:6379 redis:8.0
    REDIS_URL=redis://127.0.0.1:6399/0 uv run --frozen --with hiredis python bench/client_cost.py
    docker rm -f tally-client-cost

hiredis is not a dependency of tally: this is the measurement that decides whether it
should be (bench/results/client-cost.md). The pipelined rows are the bound on coalescing
the Redis calls of concurrent requests: the same increments, PIPELINED to a round trip
(one pipeline of EVALSHAs), which is the most that sending a loop turn's calls together
could save the client side of each.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cost import cachegrind, write_results  # noqa: E402 (the checkout, on the path above)

WARMUP = int(os.environ.get("COST_WARMUP", "500"))
CALLS = int(os.environ.get("COST_REQUESTS", "2000"))
RESULTS = ROOT / "bench" / "results" / "client-cost.md"
# Increments per round trip: about a replica's requests in flight at 32 and 128 connections.
PIPELINED = (8, 32)


def parsers() -> dict[str, Any]:
    """redis-py's own parser for the protocol it speaks by default (RESP3 without hiredis:
    its DefaultParser), and hiredis's when installed (its DefaultParser then)."""
    from redis.asyncio import connection

    found: dict[str, Any] = {"python": connection._AsyncRESP3Parser}  # type: ignore[attr-defined]
    if connection.HIREDIS_AVAILABLE:  # type: ignore[attr-defined]
        found["hiredis"] = connection._AsyncHiredisParser  # type: ignore[attr-defined]
    return found


def child(parser: str, per_trip: int, calls: int) -> None:
    from redis.asyncio import Redis

    from service.counter import Counter
    from service.request_id import GENERATED_ID_TTL, record_key

    async def run() -> None:
        redis = Redis.from_url(os.environ["REDIS_URL"], parser_class=parsers()[parser])
        key = f"client_cost_{os.getpid()}"
        counter = Counter(redis, key, 300, 5.0)
        ids = (f"{os.getpid():08x}{i:024x}" for i in range(calls))
        if per_trip == 1:
            for request_id in ids:
                await counter.increment(request_id, client_key=False)
        else:
            sha = await redis.script_load(counter._script.script)
            while batch := list(itertools.islice(ids, per_trip)):
                pipe = redis.pipeline(transaction=False)
                for request_id in batch:
                    pipe.evalsha(sha, 2, key, record_key(key, request_id), GENERATED_ID_TTL)
                await pipe.execute()
        await counter.close()

    uvloop.run(run())  # the app's loop (service/__main__.py)


def instructions(parser: str, per_trip: int, calls: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return cachegrind(
        [__file__, "--child", parser, str(per_trip), str(calls)],
        env,
        f"client_cost: {parser}, {per_trip} per round trip",
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if "REDIS_URL" not in os.environ:
        sys.exit("client_cost: set REDIS_URL to a Redis that may be written to")
    rows = []
    variants = [(parser, 1) for parser in parsers()] + [("python", n) for n in PIPELINED]
    for parser, per_trip in variants:
        cost = (
            instructions(parser, per_trip, WARMUP + CALLS) - instructions(parser, per_trip, WARMUP)
        ) / CALLS
        rows.append(f"| {parser} | {per_trip} | {cost:,.0f} |")
        print(rows[-1], flush=True)
    write_results(
        RESULTS,
        "Written by bench/client_cost.py: instructions in the app's process per exactly-once"
        " increment (an EVALSHA round trip to a real Redis: `Counter.increment` alone, or"
        f" that many in one pipeline), {CALLS} calls after {WARMUP}, under cachegrind, by"
        " redis-py's reply parser.",
        ["parser", "increments per round trip", "instructions per increment"],
        rows,
    )


if __name__ == "__main__":
    main()
