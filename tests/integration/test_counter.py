"""The app against a real Redis: counting, exactly once, outages, and graceful shutdown."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from service.request_id import GENERATED_ID_TTL, record_key
from stack_client import JSON
from tests.settings_cases import INVALID
from tests.support import ROOT, AppProcess, RedisContainer, redis_container, wait_until


def test_count_increments_the_tutorials_key_by_default(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess]
) -> None:
    redis_server.cli("SET", "visitor_count", "41")
    app = start_app(REDIS_URL=redis_server.url)
    assert httpx.get(f"{app.url}/count").text == "42\n"
    assert httpx.get(f"{app.url}/count", headers=JSON).json()["count"] == 43
    assert redis_server.cli("GET", "visitor_count") == "43"


def test_500_concurrent_counts_over_three_replicas_are_distinct_and_none_lost(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    apps = [
        start_app(REDIS_URL=redis_server.url, COUNTER_KEY=counter_key, REPLICA_ID=f"r{i}")
        for i in range(3)
    ]

    async def hammer() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=150)
        # 10 s for each request's connect and read; none for the wait for one of our own
        # 150 connections, which on a slow machine is the client queueing, not the app.
        timeout = httpx.Timeout(10, pool=None)
        async with httpx.AsyncClient(headers=JSON, limits=limits, timeout=timeout) as client:
            return await asyncio.gather(
                *(client.get(f"{apps[i % 3].url}/count") for i in range(500))
            )

    responses = asyncio.run(hammer())
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["served_by"] for r in responses} == {"r0", "r1", "r2"}
    assert sorted(r.json()["count"] for r in responses) == list(range(1, 501))
    assert redis_server.cli("GET", counter_key) == "500"


def test_a_clients_key_is_remembered_for_the_idempotency_ttl_and_nginxs_ids_for_seconds(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    app = start_app(REDIS_URL=redis_server.url, COUNTER_KEY=counter_key, IDEMPOTENCY_TTL="3600")
    # As nginx sends them: its own id alone, or a client's key as the id and as itself.
    httpx.get(f"{app.url}/count", headers={"X-Request-ID": "made-by-nginx"})
    keyed = {"X-Request-ID": "chosen-by-a-client", "Idempotency-Key": "chosen-by-a-client"}
    httpx.get(f"{app.url}/count", headers=keyed)
    generated = int(redis_server.cli("TTL", record_key(counter_key, "made-by-nginx")))
    chosen = int(redis_server.cli("TTL", record_key(counter_key, "chosen-by-a-client")))
    assert 0 < generated <= GENERATED_ID_TTL
    assert GENERATED_ID_TTL < chosen <= 3600


def test_count_never_increments_twice_for_one_request_id(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    env = {"REDIS_URL": redis_server.url, "COUNTER_KEY": counter_key}
    first_app, second_app = start_app(**env, REPLICA_ID="a"), start_app(**env, REPLICA_ID="b")
    headers = {**JSON, "X-Request-ID": "retry-me-1"}
    first = httpx.get(f"{first_app.url}/count", headers=headers)
    retried = httpx.get(f"{second_app.url}/count", headers=headers)  # as nginx retries elsewhere
    assert first.json()["count"] == retried.json()["count"] == 1
    assert retried.headers["X-Request-ID"] == "retry-me-1"
    assert redis_server.cli("GET", counter_key) == "1"
    ttl = int(redis_server.cli("TTL", f"{counter_key}:request:retry-me-1"))
    assert 0 < ttl <= 300
    assert httpx.get(f"{first_app.url}/count", headers=JSON).json()["count"] == 2


def test_redis_outage_answers_503_in_time_and_recovers_without_restart(
    start_app: Callable[..., AppProcess],
) -> None:
    timeout = 0.5
    unavailable: list[str] = []  # the request ids of the 503s
    with redis_container() as redis:
        # INFO: the access lines carry the app's own measure of each answer's time.
        app = start_app(REDIS_URL=redis.url, REDIS_TIMEOUT=str(timeout), LOG_LEVEL="INFO")
        assert httpx.get(f"{app.url}/count").status_code == 200

        subprocess.run(("docker", "pause", redis.name), check=True)
        try:
            for path in ("/count", "/readyz"):
                response = httpx.get(f"{app.url}{path}", headers=JSON, timeout=5)
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "1"
                assert response.json()["error"] == "unavailable"
                unavailable.append(response.headers["X-Request-ID"])
        finally:
            subprocess.run(("docker", "unpause", redis.name), check=True)

        subprocess.run(("docker", "stop", redis.name), check=True, capture_output=True)
        response = httpx.get(f"{app.url}/count", timeout=5)
        assert response.status_code == 503
        unavailable.append(response.headers["X-Request-ID"])
        assert httpx.get(f"{app.url}/healthz").status_code == 200  # liveness ignores Redis

        # Within the timeout plus 100 ms as the app measured it (its access line's
        # duration_ms), not on this client's clock, which a busy machine stretches.
        for request_id in unavailable:
            line = app.access_line(request_id)
            assert line["status"] == 503
            assert line["duration_ms"] <= (timeout + 0.1) * 1000, line

        subprocess.run(("docker", "start", redis.name), check=True, capture_output=True)
        redis.wait_ready()
        wait_until(
            lambda: httpx.get(f"{app.url}/count", timeout=5).status_code == 200,
            10,
            "the app to serve /count again after Redis came back",
        )
        assert app.process.poll() is None


def test_sigterm_lets_the_in_flight_request_finish_then_exits_zero(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    app = start_app(
        REDIS_URL=redis_server.url, COUNTER_KEY=counter_key, REDIS_TIMEOUT="5", GRACEFUL_TIMEOUT="5"
    )
    httpx.get(f"{app.url}/count")  # warm the connection pool and load the script
    # Redis holds write commands while paused, so the request stays in flight.
    redis_server.cli("CLIENT", "PAUSE", "1500", "WRITE")

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            pending = asyncio.create_task(client.get(f"{app.url}/count", headers=JSON))
            await asyncio.to_thread(
                wait_until,
                lambda: redis_server.cli("INFO", "clients").count("blocked_clients:1") == 1,
                5,
                "the /count request to reach Redis",
            )
            app.terminate()
            return await pending

    response = asyncio.run(scenario())
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert app.process.wait(timeout=10) == 0


# The real process for two of the cases (the second masks a password); the unit tier checks
# every case's message against the settings reader.
PROCESS_CASES = [next(case for case in INVALID if case[0] == "REDIS_TIMEOUT")] + [
    case for case in INVALID if "hunter2" in case[1]
]


@pytest.mark.parametrize(("variable", "value", "message"), PROCESS_CASES)
def test_bad_configuration_exits_78_with_one_line_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={variable: value},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78
    assert result.stderr == f"tally: configuration error: {message}\n"
    assert result.stdout == ""


def test_a_missing_secret_file_stops_the_process_with_a_clear_message() -> None:
    env = {"REDIS_PASSWORD_FILE": "/run/secrets/nope"}
    result = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 78
    assert result.stderr == (
        "tally: configuration error: REDIS_PASSWORD_FILE must name a readable file "
        "(No such file or directory), got '/run/secrets/nope'\n"
    )


def test_coalesced_increments_each_count_once_with_retries_in_the_same_round_trip(
    redis_server: RedisContainer, start_app: Callable[..., AppProcess], counter_key: str
) -> None:
    """REDIS_COALESCE: 300 ids sent twice each, all at once over two replicas, so a
    pipeline carries an id and its retry together: 300 counts, each answered twice alike.
    Then with Redis's script cache emptied (a restart, a promoted replica) the next burst
    still counts each once (tests/unit/test_counter_coalesce.py has a pipeline meet it)."""
    env = {"REDIS_URL": redis_server.url, "COUNTER_KEY": counter_key, "REDIS_COALESCE": "true"}
    apps = [start_app(**env, REPLICA_ID=f"r{i}") for i in range(2)]

    async def burst(ids: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(
            headers=JSON,
            limits=httpx.Limits(max_connections=100),
            timeout=httpx.Timeout(10, pool=None),
        ) as client:
            return await asyncio.gather(
                *(
                    client.get(f"{apps[n % 2].url}/count", headers={"X-Request-ID": request_id})
                    for n, request_id in enumerate(ids * 2)
                )
            )

    first = [f"first-{n}" for n in range(300)]
    responses = asyncio.run(burst(first))
    assert {r.status_code for r in responses} == {200}
    counts = {r.headers["X-Request-ID"]: r.json()["count"] for r in responses[:300]}
    assert sorted(counts.values()) == list(range(1, 301))
    assert all(r.json()["count"] == counts[r.headers["X-Request-ID"]] for r in responses[300:])
    assert redis_server.cli("GET", counter_key) == "300"

    redis_server.cli("SCRIPT", "FLUSH")
    responses = asyncio.run(burst([f"second-{n}" for n in range(100)]))
    assert {r.status_code for r in responses} == {200}
    assert sorted({r.json()["count"] for r in responses}) == list(range(301, 401))
    assert redis_server.cli("GET", counter_key) == "400"


def test_coalesced_increments_answer_503_in_time_when_redis_stops_answering(
    start_app: Callable[..., AppProcess],
) -> None:
    """REDIS_COALESCE with Redis paused: the call in flight and every one queued behind it
    answer 503 within their own deadline, and counting resumes once Redis answers."""
    timeout = 0.5
    with redis_container() as redis:
        app = start_app(
            REDIS_URL=redis.url, REDIS_TIMEOUT=str(timeout), REDIS_COALESCE="true", LOG_LEVEL="INFO"
        )
        assert httpx.get(f"{app.url}/count").status_code == 200

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(headers=JSON, timeout=10) as client:
                return await asyncio.gather(*(client.get(f"{app.url}/count") for _ in range(20)))

        subprocess.run(("docker", "pause", redis.name), check=True)
        try:
            responses = asyncio.run(burst())
        finally:
            subprocess.run(("docker", "unpause", redis.name), check=True)
        assert {r.status_code for r in responses} == {503}
        assert {r.json()["error"] for r in responses} == {"unavailable"}
        for response in responses:
            line = app.access_line(response.headers["X-Request-ID"])
            assert line["duration_ms"] <= (timeout + 0.1) * 1000, line

        wait_until(
            lambda: httpx.get(f"{app.url}/count", timeout=5).status_code == 200,
            10,
            "the app to serve /count again after Redis answered",
        )
        responses = asyncio.run(burst())
        assert {r.status_code for r in responses} == {200}
