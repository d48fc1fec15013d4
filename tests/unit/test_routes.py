"""The HTTP layer with a fake counter: negotiation, headers, and error bodies."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service.counter import RedisUnavailable
from service.settings import Settings
from tests.serving import serving
from tests.unit.fakes import FakeCounter

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


async def get(client: Client, path: str, accept: str | None = None, **headers: str) -> Any:
    if accept is not None:
        headers["Accept"] = accept
    return await client.get(path, headers=headers)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain"),
        ("*/*", "text/plain"),
        ("application/json", "application/json"),
        (BROWSER, "text/html"),
        ("image/png", "text/plain"),
    ],
)
async def test_format_follows_the_accept_header(
    client: Client, accept: str | None, content_type: str
) -> None:
    response = await get(client, "/", accept)
    assert response.status_code == 200
    assert response.mimetype == content_type
    assert "Accept" in response.headers["Vary"]


async def test_count_as_json_has_count_and_replica(client: Client) -> None:
    response = await get(client, "/count", "application/json")
    assert json.loads(await response.get_data()) == {"count": 1, "served_by": "replica-1"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_count_as_text_is_the_number(client: Client) -> None:
    response = await get(client, "/count")
    assert await response.get_data(as_text=True) == "1\n"


async def test_count_as_html_shows_number_and_replica(client: Client) -> None:
    page = await (await get(client, "/count", BROWSER)).get_data(as_text=True)
    assert "<output>1</output>" in page
    assert "replica-1" in page
    assert '<html lang="en">' in page


@pytest.mark.parametrize("path", ["/", "/count", "/healthz", "/readyz", "/missing"])
async def test_every_response_names_replica_and_request_id(client: Client, path: str) -> None:
    response = await get(client, path, **{"X-Request-ID": "req-42"})
    assert response.headers["X-Served-By"] == "replica-1"
    assert response.headers["X-Request-ID"] == "req-42"


async def test_request_id_is_generated_when_absent(client: Client, fake: FakeCounter) -> None:
    response = await get(client, "/count")
    assert len(response.headers["X-Request-ID"]) == 32
    assert fake.calls == [None]  # a direct hit without an id is a plain increment


async def test_request_id_is_the_idempotency_key(client: Client, fake: FakeCounter) -> None:
    first = await get(client, "/count", "application/json", **{"X-Request-ID": "abc"})
    second = await get(client, "/count", "application/json", **{"X-Request-ID": "abc"})
    assert (
        await first.get_json() == await second.get_json() == {"count": 1, "served_by": "replica-1"}
    )
    assert fake.calls == ["abc", "abc"]


@pytest.mark.parametrize("bad_id", ["x" * 129, "has space", "semi;colon", "ünïcode"])
async def test_malformed_request_id_is_refused_without_counting(
    client: Client, fake: FakeCounter, bad_id: str
) -> None:
    response = await client.get("/count", headers={"X-Request-ID": bad_id})
    assert response.status_code == 400
    assert fake.calls == []
    assert response.headers["X-Request-ID"] != bad_id


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", '{"error": "not_found"'),
        (BROWSER, "<h1>404</h1>"),
        ("*/*", "404 Not found."),
    ],
)
async def test_unknown_route_is_404_in_the_negotiated_format(
    client: Client, accept: str, expected: str
) -> None:
    response = await get(client, "/nope", accept)
    assert response.status_code == 404
    assert expected in await response.get_data(as_text=True)


async def test_wrong_method_is_405_with_allow(client: Client, fake: FakeCounter) -> None:
    response = await client.post("/count", headers={"Accept": "application/json"})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert (await response.get_json())["error"] == "method_not_allowed"
    assert fake.calls == []


@pytest.mark.parametrize("accept", ["application/json", BROWSER, "*/*"])
@pytest.mark.parametrize("path", ["/count", "/readyz"])
async def test_redis_down_is_503_with_retry_after(
    client: Client, fake: FakeCounter, accept: str, path: str
) -> None:
    fake.failure = RedisUnavailable("ConnectionError")
    response = await get(client, path, accept)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = await response.get_data(as_text=True)
    assert "unavailable" in body
    assert "ConnectionError" not in body


async def test_liveness_does_not_check_redis(client: Client, fake: FakeCounter) -> None:
    fake.failure = RedisUnavailable("down")
    assert (await get(client, "/healthz")).status_code == 200


async def test_unexpected_error_is_500_without_internal_detail(
    client: Client, fake: FakeCounter
) -> None:
    fake.failure = ZeroDivisionError("secret internals")
    response = await get(client, "/count", "application/json")
    assert response.status_code == 500
    body = await response.get_data(as_text=True)
    assert "secret internals" not in body
    assert "Traceback" not in body
    assert "ZeroDivisionError" not in body
    assert json.loads(body)["error"] == "internal_error"


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        ({}, []),
        ({"GRAFANA_URL": "http://g:3000"}, ["http://g:3000"]),
        ({"GRAFANA_URL": "http://g", "PROMETHEUS_URL": "http://p"}, ["http://g", "http://p"]),
    ],
)
async def test_pages_link_the_dashboards_the_settings_name(
    fake: FakeCounter, env: dict[str, str], shown: list[str]
) -> None:
    settings = Settings.from_env({"REPLICA_ID": "r1", **env})
    async with serving(settings, fake) as client:
        page = await (await get(client, "/", BROWSER)).get_data(as_text=True)
    assert re.findall(r'<a href="(http[^"]+)"', page) == shown


async def test_error_pages_name_the_replica(client: Client) -> None:
    page = await (await get(client, "/nope", BROWSER)).get_data(as_text=True)
    assert "<code>replica-1</code>" in page
