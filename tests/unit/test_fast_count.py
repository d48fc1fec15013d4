"""GET /count is answered by routes.FastCount, without the framework, or by Quart's count()
when FastCount declines. Both must answer the same: the same status, headers and body for
every Accept header, request id and failure, and the same visits counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from quart import Quart, request, request_started
from quart.typing import TestClientProtocol as Client

from service import routes
from service.app import create_app
from service.counter import Counter, RedisUnavailable
from service.settings import Settings
from tests.unit.fakes import FakeCounter
from tests.unit.test_metrics import scrape

ACCEPTS = (None, "", "*/*", "text/plain", "application/json", "image/png",
           "text/html;q=0.5, application/json", "application/json;q=0, */*;q=0.1")  # fmt: skip
FAILURES: tuple[Callable[[], Exception] | None, ...] = (
    None,
    lambda: RedisUnavailable("TimeoutError"),
    lambda: RuntimeError("internal detail"),
)
VISITS = ("tally_visits_total", ())


@asynccontextmanager
async def serving(fake: FakeCounter) -> AsyncIterator[tuple[Client, list[str]]]:
    """An app's client, and the paths Quart itself dispatched."""
    app = create_app(Settings(replica_id="replica-1"), lambda *_: cast(Counter, fake))
    dispatched: list[str] = []

    async def seen(sender: Quart, **_: Any) -> None:
        dispatched.append(request.path)

    request_started.connect(seen, app)
    async with app.test_app() as test_app:
        yield test_app.test_client(), dispatched


async def answers(
    client: Client, fake: FakeCounter, request_id: str | None
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    result = []
    for failure in FAILURES:
        fake.failure = failure() if failure else None
        for accept in ACCEPTS:
            headers = {} if accept is None else {"Accept": accept}
            if request_id is not None:
                headers["X-Request-ID"] = request_id
            response = await client.get("/count", headers=headers)
            # A generated request id differs per request; its shape is another test's.
            named = sorted(
                (k.lower(), v)
                for k, v in response.headers.items()
                if request_id is not None or k.lower() != "x-request-id"
            )
            result.append((response.status_code, named, await response.get_data(as_text=False)))
    return result


@pytest.mark.parametrize("request_id", ["req-42", None])
async def test_fast_path_answers_as_quart_does(
    monkeypatch: pytest.MonkeyPatch, request_id: str | None
) -> None:
    fast_fake, quart_fake = FakeCounter(), FakeCounter()
    async with serving(fast_fake) as (client, dispatched):
        fast = await answers(client, fast_fake, request_id)
        fast_visits = (await scrape(client))[VISITS]
    assert "/count" not in dispatched  # every one was answered without Quart

    async def declined(*_: Any) -> bool:
        return False

    monkeypatch.setattr(routes.FastCount, "__call__", declined)
    async with serving(quart_fake) as (client, dispatched):
        slow = await answers(client, quart_fake, request_id)
        quart_visits = (await scrape(client))[VISITS]
    assert dispatched.count("/count") == len(slow)

    assert fast == slow
    assert fast_fake.calls == quart_fake.calls
    assert (fast_fake.value, fast_visits) == (quart_fake.value, quart_visits)
    assert b"internal detail" not in b"".join(body for *_, body in fast)


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": "text/html"},  # a page: Jinja, under Quart
        {"X-Request-ID": "not valid!"},  # refused (400) by Quart's before_request
        {"Content-Length": "5"},  # a body: refused by Quart
        {"Transfer-Encoding": "chunked"},
    ],
)
async def test_what_needs_the_framework_goes_to_quart(headers: dict[str, str]) -> None:
    fake = FakeCounter()
    async with serving(fake) as (client, dispatched):
        body = b"hello" if "Content-Length" in headers or "Transfer-Encoding" in headers else b""
        await client.get("/count", headers=headers, data=body)
    assert dispatched == ["/count"]
