"""The durability step against real Redis servers: with REDIS_WAIT_REPLICAS an increment
is answered only once a replica holds it, and otherwise 503, applied once or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import AppProcess, RedisContainer, redis_container, run, wait_until

JSON = {"Accept": "application/json"}


@pytest.fixture
def replicated(redis_server: RedisContainer) -> Iterator[RedisContainer]:
    """A replica of the tier's Redis, following it over Docker's default bridge."""
    primary_ip = run(
        "docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", redis_server.name
    ).stdout.strip()
    with redis_container() as replica:
        replica.cli("REPLICAOF", primary_ip, "6379")
        wait_until(
            lambda: "master_link_status:up" in replica.cli("INFO", "replication"),
            30,
            "the replica in sync",
        )
        yield replica


def test_an_increment_is_answered_once_a_replica_holds_it(
    redis_server: RedisContainer,
    replicated: RedisContainer,
    start_app: Callable[..., AppProcess],
    counter_key: str,
) -> None:
    app = start_app(REDIS_URL=redis_server.url, COUNTER_KEY=counter_key, REDIS_WAIT_REPLICAS="1")
    response = httpx.get(f"{app.url}/count", headers={**JSON, "X-Request-ID": "durable-1"})
    assert response.status_code == 200
    assert response.json()["count"] == 1
    # WAIT returned: the replica already has the counter and the request's record.
    assert replicated.cli("GET", counter_key) == "1"
    assert replicated.cli("GET", f"{counter_key}:request:durable-1") == "1"


def test_without_a_replica_the_increment_answers_503_and_a_retry_never_counts_twice(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    app = start_app(REDIS_URL=redis_server.url, COUNTER_KEY=counter_key, REDIS_WAIT_REPLICAS="1")
    headers = {**JSON, "X-Request-ID": "unreplicated-1"}
    for _ in range(3):
        response = httpx.get(f"{app.url}/count", headers=headers)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        # Applied on the primary once; each retry with the same id replays it.
        assert redis_server.cli("GET", counter_key) == "1"
