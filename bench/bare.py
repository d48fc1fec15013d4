"""The benchmark's baselines: GET /count on bare Quart + Hypercorn, instrumentation off.

Same Hypercorn on uvloop and the same Redis client as the service (service.counter); no
metrics, tracing, access log or content negotiation. BARE_INCREMENT picks the Redis side:
`once`, the service's exactly-once script per X-Request-ID (so the difference to tally is
what its observability costs), or `incr`, one plain INCR as the Flask baseline sends (the
framework's own baseline; the difference between the two is the script's cost).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

from service.counter import Counter, RedisUnavailable
from service.settings import Settings

settings = Settings.from_env(os.environ)
MODE = os.environ.get("BARE_INCREMENT", "once")
if MODE not in ("once", "incr"):
    sys.exit(f"bare: BARE_INCREMENT must be once or incr, got {MODE!r}")
app = Quart(__name__)
counter: Counter


@app.before_serving
async def open_counter() -> None:
    global counter
    counter = Counter.from_settings(settings)


@app.get("/count")
async def count() -> Response:
    try:
        request_id = request.headers.get("X-Request-ID") if MODE == "once" else None
        result = await counter.increment(request_id)
    except RedisUnavailable:
        return Response("unavailable", status=503, headers={"Retry-After": "1"})
    body = json.dumps({"count": result.value, "served_by": settings.replica_id})
    return Response(body, content_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response("ok")


async def main() -> None:
    config = Config()
    config.bind = ["0.0.0.0:8000"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    uvloop.run(main())
