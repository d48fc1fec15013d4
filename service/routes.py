"""HTTP in, HTTP out: the routes, content negotiation and the body of every answer.

GET /count, the hot path, is one ASGI endpoint, `Count`, that the middleware calls for
every request to /count: it reads the raw ASGI scope and sends the raw messages, with no
request context, request or response objects, and no task watching for a disconnect
(docs/PERFORMANCE.md has what that buys). The other routes are Quart views. Both render
through `render()`, so a format, a page or an error reads the same wherever it is answered.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hypercorn.typing import ASGISendCallable, HTTPScope
from quart import Blueprint, Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.http import parse_accept_header

from service import middleware, request_id, tracing
from service.counter import RedisUnavailable
from service.logs import get_logger
from service.state import State

Format = Literal["text", "json", "html"]

# Order matters: for "*/*" (curl) the first wins, so plain text is the default.
_MEDIA_TYPES: dict[str, Format] = {
    "text/plain": "text",
    "application/json": "json",
    "text/html": "html",
}
CONTENT_TYPES: dict[Format, str] = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}
RETRY_AFTER_SECONDS = 1
VARY = {"Vary": "Accept"}
NO_STORE = {"Cache-Control": "no-store"}
COUNT_PATH = "/count"
# What /count answers to; an OPTIONS request gets this list, any other method a 405.
COUNT_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Problem:
    """An error answer: its status, a code for machines and a fixed sentence for people
    (nothing from the request echoes back)."""

    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


UNAVAILABLE = Problem(
    503,
    "unavailable",
    "The counter is unavailable right now. Try again shortly.",
    {"Retry-After": str(RETRY_AFTER_SECONDS)},
)
INTERNAL = Problem(500, "internal_error", "Something went wrong on our side.")
BAD_REQUEST_ID = Problem(400, "bad_request", request_id.RULE)
WITH_BODY = Problem(413, "request_entity_too_large", "This server takes no request body.")
COUNT_NOT_ALLOWED = Problem(
    405,
    "method_not_allowed",
    f"Method not allowed. Allowed: {', '.join(COUNT_METHODS)}.",
    {"Allow": ", ".join(COUNT_METHODS)},
)


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct Accept headers
def negotiate(accept: str | None) -> Format:
    """The response format an Accept header prefers; plain text when there is none."""
    if accept is None:
        return "text"
    best = parse_accept_header(accept, MIMEAccept).best_match(
        list(_MEDIA_TYPES), default="text/plain"
    )
    return _MEDIA_TYPES[best]


async def render(
    state: State, fmt: Format, template: str, data: Mapping[str, Any], text: str
) -> bytes:
    """One body in a format: a Jinja page, a JSON document or a line of text."""
    if fmt == "json":
        return json.dumps(data).encode()
    if fmt == "text":
        return (text + "\n").encode()
    settings = state.settings
    page = await state.templates.get_template(template).render_async(
        links=settings.dashboard_links, **{"served_by": settings.replica_id, **data}
    )
    return page.encode()


async def render_problem(state: State, fmt: Format, problem: Problem) -> bytes:
    data = {"error": problem.code, "message": problem.message, "status": problem.status}
    return await render(state, fmt, "error.html", data, f"{problem.status} {problem.message}")


def unavailable(exc: RedisUnavailable) -> Problem:
    get_logger().warning("redis_unavailable", reason=str(exc))
    return UNAVAILABLE


def internal(exc: Exception) -> Problem:
    # The traceback goes to the log and the trace, never to the client.
    get_logger().error("unhandled_exception", exc_info=exc)
    tracing.record_exception(exc)
    return INTERNAL


class InvalidRequestId(BadRequest):
    description = request_id.RULE


def blueprint(state: State) -> Blueprint:
    """The Quart views: every route but /count, and the error pages."""
    bp = Blueprint("tally", __name__)

    async def answer(
        status: int,
        template: str,
        data: Mapping[str, Any],
        text: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        fmt = negotiate(request.headers.get("Accept"))
        body = await render(state, fmt, template, data, text)
        headers = {**(headers or {}), **VARY}
        return Response(body, status=status, content_type=CONTENT_TYPES[fmt], headers=headers)

    async def problem(found: Problem) -> Response:
        fmt = negotiate(request.headers.get("Accept"))
        return Response(
            await render_problem(state, fmt, found),
            status=found.status,
            content_type=CONTENT_TYPES[fmt],
            headers={**found.headers, **VARY},
        )

    @bp.before_app_request
    async def refuse_bad_request_id() -> None:
        if middleware.current().bad_request_id:
            raise InvalidRequestId()

    @bp.get("/")
    async def index() -> Response:
        welcome = {"message": "Welcome to tally, a visit counter."}
        return await answer(
            200,
            "index.html",
            {**welcome, "served_by": state.settings.replica_id},
            "Welcome to tally, a visit counter. GET /count to count your visit.",
        )

    @bp.get("/metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @bp.get("/healthz")
    async def healthz() -> Response:
        return await answer(200, "status.html", {"status": "ok"}, "ok")

    @bp.get("/readyz")
    async def readyz() -> Response:
        await state.counter.ping()
        return await answer(200, "status.html", {"status": "ready"}, "ready")

    @bp.app_errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = exc.name or "Error"
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        # Descriptions are fixed sentences (werkzeug's or ours); nothing from the request.
        message = {
            404: "Not found. Try / or /count.",
            405: f"Method not allowed. Allowed: {headers.get('Allow', 'GET')}.",
        }.get(status, exc.description or f"{name}.")
        return await problem(Problem(status, name.lower().replace(" ", "_"), message, headers))

    @bp.app_errorhandler(RedisUnavailable)
    async def redis_unavailable(exc: RedisUnavailable) -> Response:
        return await problem(unavailable(exc))

    @bp.app_errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        return await problem(internal(exc))

    return bp


class Count:
    """Every request to /count. GET counts the visit (once per request id when the caller
    gave one) and shows the count; HEAD answers the head a GET would, without counting
    (an uptime monitor or a link checker must not move the count): 200 when Redis
    answers, else the GET's error; OPTIONS lists the methods; anything else is a 405."""

    def __init__(self, state: State) -> None:
        self._state = state

    async def __call__(
        self, scope: HTTPScope, exchange: middleware.Exchange, send: ASGISendCallable
    ) -> None:
        accept = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"accept":
                if accept is None:  # the first one, as werkzeug reads it
                    accept = value.decode("latin-1")
            elif (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                has_body = True
        fmt = negotiate(accept)
        method = scope["method"]
        head = method == "HEAD"
        if exchange.bad_request_id:
            await self._problem(send, fmt, BAD_REQUEST_ID, head)
        elif method == "OPTIONS":
            allow = COUNT_NOT_ALLOWED.headers["Allow"]
            await _send(send, 200, {"Allow": allow, "Content-Type": CONTENT_TYPES["html"]}, b"")
        elif method not in COUNT_METHODS:
            await self._problem(send, fmt, COUNT_NOT_ALLOWED, head)
        elif has_body:
            await self._problem(send, fmt, WITH_BODY, head)
        else:
            await self._count(send, fmt, exchange, head)

    async def _count(
        self, send: ASGISendCallable, fmt: Format, exchange: middleware.Exchange, head: bool
    ) -> None:
        state = self._state
        try:
            if head:
                await state.counter.ping()
            else:
                result = await state.counter.increment(
                    exchange.request_id if exchange.idempotent else None, exchange.client_key
                )
                if not result.replayed:
                    state.metrics.visits.inc()
        except RedisUnavailable as exc:
            await self._problem(send, fmt, unavailable(exc), head)
            return
        except Exception as exc:
            await self._problem(send, fmt, internal(exc), head)
            return
        headers = {**NO_STORE, **VARY, "Content-Type": CONTENT_TYPES[fmt]}
        if head:  # the length of a count not taken is not known: no Content-Length
            await _send(send, 200, headers, None)
            return
        data = {"count": result.value, "served_by": state.settings.replica_id}
        body = await render(state, fmt, "count.html", data, str(result.value))
        await _send(send, 200, headers, body)

    async def _problem(
        self, send: ASGISendCallable, fmt: Format, problem: Problem, head: bool
    ) -> None:
        body = await render_problem(self._state, fmt, problem)
        headers = {**problem.headers, **VARY, "Content-Type": CONTENT_TYPES[fmt]}
        await _send(send, problem.status, headers, body, head)


async def _send(
    send: ASGISendCallable,
    status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    head: bool = False,
) -> None:
    """The two ASGI messages of an answer. A body of None has no Content-Length; with
    `head` the body is counted in Content-Length but not sent."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if body is not None:
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw, "trailers": False})
    await send(
        {"type": "http.response.body", "body": b"" if head else body or b"", "more_body": False}
    )
