"""The benchmark's baseline: tally's routes on bare Quart + Hypercorn, instrumentation off.

Same Redis path as the service (service.counter: one round trip, exactly once per
X-Request-ID), same Hypercorn on uvloop; no metrics, tracing, access log or
content negotiation. The difference to the real service is what observability costs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

from service.counter import Counter, RedisUnavailable
from service.settings import Settings

settings = Settings.from_env(os.environ)
app = Quart(__name__)
counter: Counter


@app.before_serving
async def open_counter() -> None:
    global counter
    counter = Counter.from_settings(settings)


@app.get("/count")
async def count() -> Response:
    try:
        result = await counter.increment(request.headers.get("X-Request-ID"))
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
