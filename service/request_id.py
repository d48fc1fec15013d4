"""The request-id contract: the headers that carry it, the ids we accept, their Redis keys.

nginx sends every request upstream with X-Request-ID: the client's Idempotency-Key when
it sent one, else nginx's own $request_id (32 hex characters). /count uses that id as
its idempotency key: the first answer is remembered under `record_key` for
IDEMPOTENCY_TTL seconds, and a retry with the same id gets it back. An id outside
`ACCEPTED` is refused with 400 before it can reach a Redis key.

Two places outside Python must agree with this module; tests/static/test_request_id.py
reads them and compares:
- ops/nginx/templates/tally.conf.template: the map from IDEMPOTENCY_HEADER to the id,
  and the X-Request-ID it sets upstream;
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


def record_key(counter_key: str, request_id: str) -> str:
    """Where a request's first answer is remembered, beside the counter it counted."""
    return f"{counter_key}:request:{request_id}"
