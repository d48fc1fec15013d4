"""The client side of one exactly-once increment: the instructions our process spends on
`Counter.increment` against a real Redis, with each of redis-py's reply parsers (the pure
Python one it uses by default, and hiredis's C one when that package is installed).
Counted under cachegrind as bench/cost.py counts a request: two runs, WARMUP and WARMUP +
CALLS increments, and the difference per call, so start-up and imports cancel out.

    docker run -d --rm --name tally-client-cost -p 127.0.0.1:6399:6379 redis:8.0
    REDIS_URL=redis://127.0.0.1:6399/0 uv run --frozen --with hiredis python bench/client_cost.py
    docker rm -f tally-client-cost

hiredis is not a dependency of tally: this is the measurement that decides whether it
should be (bench/results/client-cost.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.cost import cachegrind  # noqa: E402 (the checkout, on the path above)

WARMUP = int(os.environ.get("COST_WARMUP", "500"))
CALLS = int(os.environ.get("COST_REQUESTS", "2000"))
RESULTS = ROOT / "bench" / "results" / "client-cost.md"


def parsers() -> dict[str, Any]:
    """redis-py's own parser for the protocol it speaks by default (RESP3 without hiredis:
    its DefaultParser), and hiredis's when installed (its DefaultParser then)."""
    from redis.asyncio import connection

    found: dict[str, Any] = {"python": connection._AsyncRESP3Parser}  # type: ignore[attr-defined]
    if connection.HIREDIS_AVAILABLE:  # type: ignore[attr-defined]
        found["hiredis"] = connection._AsyncHiredisParser  # type: ignore[attr-defined]
    return found


def child(parser: str, calls: int) -> None:
    from redis.asyncio import Redis

    from service.counter import Counter

    async def run() -> None:
        redis = Redis.from_url(os.environ["REDIS_URL"], parser_class=parsers()[parser])
        counter = Counter(redis, f"client_cost_{os.getpid()}", 300, 5.0)
        for i in range(calls):
            await counter.increment(f"{os.getpid():08x}{i:024x}", client_key=False)
        await counter.close()

    uvloop.run(run())  # the app's loop (service/__main__.py)


def instructions(parser: str, calls: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return cachegrind([__file__, "--child", parser, str(calls)], env, f"client_cost: {parser}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
        return
    if "REDIS_URL" not in os.environ:
        sys.exit("client_cost: set REDIS_URL to a Redis that may be written to")
    rows = []
    for parser in parsers():
        cost = (instructions(parser, WARMUP + CALLS) - instructions(parser, WARMUP)) / CALLS
        rows.append(f"| {parser} | {cost:,.0f} |")
        print(rows[-1], flush=True)
    RESULTS.write_text(
        "Written by bench/client_cost.py: instructions in the app's process per exactly-once"
        f" increment (`Counter.increment`, an EVALSHA round trip to a real Redis), {CALLS}"
        f" calls after {WARMUP}, under cachegrind, by redis-py's reply parser.\n\n"
        "| parser | instructions per increment |\n| --- | --- |\n" + "\n".join(rows) + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
