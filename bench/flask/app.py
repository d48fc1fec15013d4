"""The benchmark's Flask row: GET /count as one Redis INCR, JSON out, nothing else.

Threads share one redis-py client (its connection pool is thread-safe); the
password comes from the same secret file the replicas read.
"""

import json
import os
from pathlib import Path

import redis
from flask import Flask, Response

REPLICA = os.environ.get("HOSTNAME", "flask")
# compose passes an unset setting through empty, meaning the default (the tutorial's key).
KEY = os.environ.get("COUNTER_KEY") or "visitor_count"
client = redis.Redis.from_url(
    os.environ["REDIS_URL"],
    username=os.environ.get("REDIS_USERNAME"),
    password=Path(os.environ["REDIS_PASSWORD_FILE"]).read_text().strip(),
    socket_timeout=1,
)
app = Flask(__name__)


@app.get("/count")
def count() -> Response:
    value = client.execute_command("INCR", KEY)  # the app ACL user has INCR, not INCRBY
    body = json.dumps({"count": value, "served_by": REPLICA})
    return Response(body, content_type="application/json")


@app.get("/healthz")
def healthz() -> str:
    return "ok"
