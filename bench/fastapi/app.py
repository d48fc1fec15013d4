"""The benchmark's FastAPI row: GET /count as one Redis INCR, JSON out, nothing else.

What a Python user would write for this job today: FastAPI on uvicorn (uvloop, httptools),
redis.asyncio, no metrics, tracing, access line or exactly-once. Benchmark-only, not a way
to run tally. The password comes from the same secret file the replicas read.
"""

import os
from pathlib import Path

import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

REPLICA = os.environ.get("HOSTNAME", "fastapi")
# compose passes an unset setting through empty, meaning the default (the tutorial's key).
KEY = os.environ.get("COUNTER_KEY") or "visitor_count"
client = redis.Redis.from_url(
    os.environ["REDIS_URL"],
    username=os.environ.get("REDIS_USERNAME"),
    password=Path(os.environ["REDIS_PASSWORD_FILE"]).read_text().strip(),
    socket_timeout=1,
)
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/count")
async def count() -> Response:
    value = await client.execute_command("INCR", KEY)  # the app ACL user has INCR only
    body = b'{"count":%d,"served_by":"%s"}' % (value, REPLICA.encode())
    return Response(body, media_type="application/json")


@app.get("/healthz")
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")
