"""Which failures of a Redis call the counter turns into RedisUnavailable (a 503 with
Retry-After, retried by the client with its key) and which stay bugs (a 500)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError, ResponseError

from service.counter import Counter, RedisUnavailable
from tests.unit.fakes import FakeRedis

# What the client library and the event loop raise when Redis does not answer.
UNAVAILABLE = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "dropped": ConnectionError("Connection closed by server."),
    "too slow": TimeoutError(),
    "no replica": ResponseError("NOREPLICAS Not enough good replicas to write."),
    # uvloop's, for a write to a pooled connection whose socket the peer closed.
    "closed under uvloop": RuntimeError(
        "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    ),
}


def counter(failure: Exception) -> Counter:
    redis = FakeRedis()
    redis.failure = failure
    return Counter(cast(Any, redis), "visitor_count", 300, 1.0)


@pytest.mark.parametrize("failure", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
async def test_redis_not_answering_is_unavailable_named_by_its_error(failure: Exception) -> None:
    with pytest.raises(RedisUnavailable, match=f"^{type(failure).__name__}$"):
        await counter(failure).increment("a-request-id")


async def test_a_bug_is_not_mistaken_for_redis_being_unavailable() -> None:
    with pytest.raises(ValueError, match="a bug"):
        await counter(ValueError("a bug")).increment(None)
