"""The compose stack from outside: balancing, exactly once, scaling, persistence, exposure.

Every test leaves the session's stack as `up` makes it; the persistence test, which
takes a stack down, brings up one of its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter

import httpx
import pytest

from checks import balancing
from stack_client import BROWSER, JSON
from tests.compose_stack import CoreStack, Stack
from tests.support import wait_until


@pytest.mark.parametrize(
    ("headers", "content_type", "fragment"),
    [
        ({}, "text/plain", "Welcome to tally"),
        (JSON, "application/json", '"message"'),
        (BROWSER, "text/html", "<h1>tally</h1>"),
    ],
)
def test_index_through_nginx_in_each_format(
    stack: Stack, headers: dict[str, str], content_type: str, fragment: str
) -> None:
    response = httpx.get(f"{stack.url}/", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert fragment in response.text
    assert response.headers["X-Served-By"]
    assert len(response.headers["X-Request-ID"]) == 32


def test_count_through_nginx_in_each_format(stack: Stack) -> None:
    text = httpx.get(f"{stack.url}/count")
    assert text.text.strip().isdigit()
    document = httpx.get(f"{stack.url}/count", headers=JSON).json()
    assert set(document) == {"count", "served_by"}
    assert document["count"] == int(text.text) + 1
    page = httpx.get(f"{stack.url}/count", headers=BROWSER)
    assert f"<output>{document['count'] + 1}</output>" in page.text


def test_300_sequential_counts_are_balanced_over_three_replicas(stack: Stack) -> None:
    with httpx.Client() as client:
        served = Counter(
            client.get(f"{stack.url}/count").headers["X-Served-By"] for _ in range(300)
        )
    # The load test's own verdict: its band follows the number of responses.
    verdict = balancing(served, replicas=3, tolerance=0.10)
    assert verdict.passed, verdict


def test_1000_counts_64_at_a_time_are_distinct_and_none_lost(stack: Stack) -> None:
    start = stack.count()

    async def load() -> list[int]:
        gate = asyncio.Semaphore(64)
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(headers=JSON, limits=limits, timeout=10) as client:

            async def one() -> int:
                # As the contract asks of a client: its own key, and a 503 (Redis slower
                # than REDIS_TIMEOUT on a busy machine) or an answer that never came
                # (load 20 on 2 cores: over 10 s) retried with it, so none is lost or
                # counted twice however slow the machine is.
                key = {"Idempotency-Key": uuid.uuid4().hex}
                async with gate:
                    for _ in range(50):
                        try:
                            response = await client.get(f"{stack.url}/count", headers=key)
                        except httpx.TransportError:
                            continue
                        if response.status_code != 503:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"no answer but 503 or none for {key}")
                    response.raise_for_status()
                    value: int = response.json()["count"]
                    return value

            return await asyncio.gather(*(one() for _ in range(1000)))

    values = asyncio.run(load())
    assert len(set(values)) == 1000
    assert sorted(values) == list(range(start + 1, start + 1001))
    assert stack.count() == start + 1001


def test_idempotency_key_through_nginx_counts_once(stack: Stack) -> None:
    request_id = f"stack-test-{uuid.uuid4().hex}"  # never used before, whatever ran first
    key = {"Idempotency-Key": request_id, **JSON}
    first = httpx.get(f"{stack.url}/count", headers=key)
    again = httpx.get(f"{stack.url}/count", headers=key)
    assert first.json()["count"] == again.json()["count"]
    assert again.headers["X-Request-ID"] == request_id
    assert stack.count() == first.json()["count"] + 1


def test_head_count_through_nginx_answers_a_gets_head_and_never_counts(stack: Stack) -> None:
    get = httpx.get(f"{stack.url}/count", headers=JSON)
    before = stack.count()
    for _ in range(2):
        head = httpx.head(f"{stack.url}/count", headers=JSON)
        assert head.status_code == 200
        assert head.content == b""
        for name in ("Content-Type", "Cache-Control"):
            assert head.headers[name] == get.headers[name]
        assert head.headers["X-Served-By"]
        assert len(head.headers["X-Request-ID"]) == 32
    assert stack.count() == before + 1  # this GET's visit, none from the HEADs


def test_metrics_are_not_public(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/metrics").status_code == 404


def test_only_nginx_publishes_a_port_and_the_uis_only_on_loopback(stack: Stack) -> None:
    out = stack.compose("ps", "--format", "json").stdout
    published = {
        (row["Service"], p["URL"], p["PublishedPort"])
        for row in map(json.loads, out.splitlines())
        for p in row.get("Publishers") or []
        if p.get("PublishedPort")
    }
    prometheus_port = int(stack.prometheus.rsplit(":", 1)[1])
    alertmanager_port = int(stack.alertmanager.rsplit(":", 1)[1])
    assert {(service, port) for service, _, port in published} == {
        ("nginx", stack.port),
        ("prometheus", prometheus_port),
        ("alertmanager", alertmanager_port),
    }
    assert {url for service, url, _ in published if service != "nginx"} == {"127.0.0.1"}


def test_redis_refuses_a_client_without_credentials(stack: Stack) -> None:
    result = stack.redis_cli("GET", "visitor_count")
    assert "NOAUTH" in result.stdout + result.stderr


def test_a_direct_hit_on_a_replica_counts_under_the_redis_acl(stack: Stack) -> None:
    # Inside a replica's container: no nginx, so no X-Request-ID: the plain INCR path.
    probe = (
        "import json, urllib.request as u;"
        "r = u.urlopen(u.Request('http://127.0.0.1:8000/count',"
        " headers={'Accept': 'application/json'}), timeout=5);"
        "print(r.status, json.load(r)['count'])"
    )
    before = stack.count()
    out = stack.compose("exec", "-T", "app", "python", "-c", probe).stdout.split()
    assert out == ["200", str(before + 1)]


def test_scaling_is_seen_live_by_nginx_and_prometheus_without_a_restart(stack: Stack) -> None:
    nginx_before = stack.containers("nginx")[0]["ID"]
    stack.up("--scale", "app=5")
    with httpx.Client() as client:

        def five_replicas_answer() -> bool:
            seen = {client.get(f"{stack.url}/").headers["X-Served-By"] for _ in range(40)}
            return len(seen) == 5

        wait_until(five_replicas_answer, 15, "5 replicas to answer through nginx")
    wait_until(lambda: len(stack.app_targets_up()) == 5, 30, "Prometheus to scrape 5 replicas")

    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    status = client.get(f"{stack.url}/count").status_code
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                else:
                    if status != 200:
                        failures.append(str(status))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        stack.up("--scale", "app=3")
    finally:
        stop.set()
        worker.join()
    errors = [
        line for line in stack.compose("logs", "--no-color", "nginx").stdout.splitlines()
        if "[error]" in line or "[warn]" in line
    ]  # fmt: skip
    assert failures == [], "\n".join(errors[-20:])
    assert len(stack.containers("app")) == 3
    assert stack.containers("nginx")[0]["ID"] == nginx_before


def test_count_survives_down_and_up_and_down_v_erases_it() -> None:
    with CoreStack() as own:
        value = own.count()
        own.stop()
        own.start()
        assert own.count() == value + 1
        own.stop("-v")
        own.start()
        assert own.count() == 1
