"""The request-id contract: the headers that carry it, the ids we accept, their Redis keys.

nginx sends every request upstream with X-Request-ID: the client's Idempotency-Key when
it sent one, else nginx's own $request_id (32 hex characters), and the client's
Idempotency-Key itself. /count uses that id as its idempotency key: the first answer is
remembered under `record_key`, and a retry with the same id gets it back. How long
depends on who can retry: a client's key for IDEMPOTENCY_TTL seconds (a person or a
program may retry minutes later); an id nginx made only for GENERATED_ID_TTL, since only
nginx can retry that request, within its proxy timeouts. Most traffic sends no key, so
its records are what fills Redis's memory: kept for seconds, not minutes. An id outside
`ACCEPTED` is refused with 400 before it can reach a Redis key.

Two places outside Python must agree with this module; tests/static/test_request_id.py
reads them and compares:
- ops/nginx/templates/tally.conf.template: the map from IDEMPOTENCY_HEADER to the id,
  the X-Request-ID and Idempotency-Key it sets upstream, and the proxy timeouts that
  GENERATED_ID_TTL covers;
- ops/secrets/init.sh: the app's ACL key patterns, `~<counter>` and `record_key(counter, "*")`.
"""

from __future__ import annotations

import re

HEADER = "X-Request-ID"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# ASGI header names are lower case bytes.
HEADER_ASGI = HEADER.lower().encode("ascii")
# UUIDs, ULIDs and nginx's $request_id fit; long, binary or spaced ids do not.
ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
RULE = f"{IDEMPOTENCY_HEADER} / {HEADER} must be 1-128 characters of A-Z a-z 0-9 . _ : -"
IDEMPOTENCY_HEADER_ASGI = IDEMPOTENCY_HEADER.lower().encode("ascii")
# Seconds an id nginx generated is remembered: the longest nginx can still retry its
# request, proxy_next_upstream_timeout (the last retry starts before it) plus that try's
# proxy_connect_timeout and proxy_read_timeout (by then it has reached Redis or failed).
GENERATED_ID_TTL = 6 + 1 + 5


def record_key(counter_key: str, request_id: str) -> str:
    """Where a request's first answer is remembered, beside the counter it counted."""
    return f"{counter_key}:request:{request_id}"
