"""The contract of /count, answered by one implementation (routes.Count): every method,
Accept header, request id and failure, with the status, headers, body and visits counted
that each must give. Quart never dispatches /count."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from quart import Quart, request, request_started
from quart.typing import TestClientProtocol as Client

from service.counter import RedisUnavailable
from service.request_id import RULE
from tests.serving import scrape
from tests.unit.fakes import FakeCounter

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# Each Accept header a client sends, and the format it must get.
ACCEPTS: dict[str | None, str] = {
    None: "text",
    "": "text",
    "*/*": "text",
    "text/plain": "text",
    "application/json": "json",
    "image/png": "text",
    "text/html": "html",
    BROWSER: "html",
    "text/html;q=0.5, application/json": "json",
    "application/json;q=0, */*;q=0.1": "text",
}
CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}
FAILURES: dict[str, Callable[[], Exception] | None] = {
    "ok": None,
    "redis down": lambda: RedisUnavailable("TimeoutError"),
    "a bug": lambda: RuntimeError("internal detail"),
}
VISITS = ("tally_visits_total", ())
ALLOW = "GET, HEAD, OPTIONS"


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


UNAVAILABLE = Problem(
    503,
    "unavailable",
    "The counter is unavailable right now. Try again shortly.",
    (("retry-after", "1"),),
)
INTERNAL = Problem(500, "internal_error", "Something went wrong on our side.")
BAD_ID = Problem(400, "bad_request", RULE)
NOT_ALLOWED = Problem(
    405, "method_not_allowed", f"Method not allowed. Allowed: {ALLOW}.", (("allow", ALLOW),)
)
WITH_BODY = Problem(413, "request_entity_too_large", "This server takes no request body.")


@pytest.fixture
async def served(client: Client) -> AsyncIterator[tuple[Client, list[str]]]:
    """An app's client, and the paths Quart itself dispatched."""
    dispatched: list[str] = []

    async def seen(sender: Quart, **_: Any) -> None:
        dispatched.append(request.path)

    request_started.connect(seen, client.app)
    yield client, dispatched
    request_started.disconnect(seen, client.app)


def check_problem(fmt: str, body: bytes, problem: Problem) -> None:
    if fmt == "json":
        expected = {"error": problem.code, "message": problem.message, "status": problem.status}
        assert json.loads(body) == expected
    elif fmt == "text":
        assert body == f"{problem.status} {problem.message}\n".encode()
    else:
        page = body.decode()
        assert f"<h1>{problem.status}</h1>" in page
        assert problem.message.replace("'", "&#39;") in page
        assert "replica-1" in page


def check_count(fmt: str, body: bytes, value: int) -> None:
    if fmt == "json":
        assert json.loads(body) == {"count": value, "served_by": "replica-1"}
    elif fmt == "text":
        assert body == f"{value}\n".encode()
    else:
        page = body.decode()
        assert f"<title>Visit {value} · tally</title>" in page
        assert f"<output>{value}</output>" in page
        assert "<code>replica-1</code>" in page


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("request_id", ["req-42", None, "not valid!"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS"])
async def test_count_answers_every_form_as_its_contract_says(
    served: tuple[Client, list[str]],
    fake: FakeCounter,
    failure: str,
    request_id: str | None,
    method: str,
) -> None:
    client, dispatched = served
    make_failure = FAILURES[failure]
    valid_id = request_id == "req-42"
    problem = None
    if request_id == "not valid!":
        problem = BAD_ID
    elif method == "POST":
        problem = NOT_ALLOWED
    elif method in ("GET", "HEAD") and failure != "ok":
        problem = UNAVAILABLE if failure == "redis down" else INTERNAL
    counts = method == "GET" and problem is None
    reaches_redis = method == "GET" and request_id != "not valid!"

    for accept, fmt in ACCEPTS.items():
        fake.failure = make_failure() if make_failure else None
        fake.value, fake.calls, fake.seen = 0, [], {}
        visits = (await scrape(client))[VISITS]
        headers = {} if accept is None else {"Accept": accept}
        if request_id is not None:
            headers["X-Request-ID"] = request_id

        response = await client.open("/count", method=method, headers=headers, json=None)
        body = await response.get_data(as_text=False)
        got = {k.lower(): v for k, v in response.headers.items()}

        assert got.pop("x-served-by") == "replica-1"
        request_id_header = got.pop("x-request-id")
        if valid_id:
            assert request_id_header == "req-42"
        if method == "OPTIONS" and problem is None:
            assert (response.status_code, body) == (200, b"")
            html = CONTENT_TYPES["html"]
            assert got == {"allow": ALLOW, "content-type": html, "content-length": "0"}
        elif problem is not None:
            assert response.status_code == problem.status
            expected = {
                "content-type": CONTENT_TYPES[fmt],
                "vary": "Accept",
                **dict(problem.headers),
            }
            assert {k: v for k, v in got.items() if k != "content-length"} == expected
            if method != "HEAD":
                assert got["content-length"] == str(len(body))
                check_problem(fmt, body, problem)
        else:
            assert response.status_code == 200
            expected = {
                "content-type": CONTENT_TYPES[fmt],
                "vary": "Accept",
                "cache-control": "no-store",
            }
            assert {k: v for k, v in got.items() if k != "content-length"} == expected
            if method == "GET":
                assert got["content-length"] == str(len(body))
                check_count(fmt, body, 1)
        assert b"internal detail" not in body

        assert fake.calls == ([request_id if valid_id else None] if reaches_redis else [])
        assert fake.value == (1 if counts else 0)
        assert (await scrape(client))[VISITS] - visits == (1 if counts else 0)
    assert "/metrics" in dispatched  # the signal is wired: Quart dispatches the scrapes
    assert "/count" not in dispatched


@pytest.mark.parametrize(
    "headers",
    [{"Content-Length": "5"}, {"Transfer-Encoding": "chunked"}],
    ids=["length", "chunked"],
)
@pytest.mark.parametrize("accept", ["application/json", BROWSER, "*/*"])
async def test_a_request_body_is_refused_with_413_and_not_counted(
    served: tuple[Client, list[str]], fake: FakeCounter, headers: dict[str, str], accept: str
) -> None:
    client, _ = served
    response = await client.get("/count", headers={**headers, "Accept": accept}, data=b"hello")
    assert response.status_code == 413
    check_problem(ACCEPTS[accept], await response.get_data(as_text=False), WITH_BODY)
    assert (fake.calls, fake.value) == ([], 0)


async def test_head_twice_leaves_the_count_where_it_was(
    served: tuple[Client, list[str]], fake: FakeCounter
) -> None:
    client, _ = served
    await client.get("/count")
    for _ in range(2):
        assert (await client.head("/count")).status_code == 200
    assert await (await client.get("/count")).get_data(as_text=True) == "2\n"


async def test_a_retried_request_id_gets_its_first_answer_and_counts_once(
    served: tuple[Client, list[str]], fake: FakeCounter
) -> None:
    client, _ = served
    first = await client.get("/count", headers={"X-Request-ID": "req-7"})
    await client.get("/count")
    again = await client.get("/count", headers={"X-Request-ID": "req-7"})
    assert await again.get_data() == await first.get_data() == b"1\n"
    assert fake.value == 2
    assert (await scrape(client))[VISITS] == 2


@pytest.mark.parametrize(
    ("headers", "client_key"),
    [
        ({"X-Request-ID": "req-1"}, False),  # nginx's own id
        ({"X-Request-ID": "req-1", "Idempotency-Key": "req-1"}, True),  # a client's key
        ({"X-Request-ID": "req-1", "Idempotency-Key": "other"}, False),
    ],
)
async def test_the_counter_is_told_whether_a_client_chose_the_id(
    served: tuple[Client, list[str]],
    fake: FakeCounter,
    headers: dict[str, str],
    client_key: bool,
) -> None:
    client, _ = served
    await client.get("/count", headers=headers)
    assert (fake.calls, fake.client_keys) == (["req-1"], [client_key])
