"""HTTP in, HTTP out: the routes, content negotiation and error bodies.

GET /count, the hot path, is answered twice over: by `count()` through Quart, and by
`FastCount` on the raw ASGI messages, which the middleware tries first and which declines
what needs the framework (an HTML page, a request body, a refused request id). Both take
the visit, its body and its headers from the same functions here, and
tests/unit/test_fast_count.py compares their answers byte for byte.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

from hypercorn.typing import ASGISendCallable, HTTPScope
from opentelemetry import trace
from quart import Blueprint, Response, current_app, render_template, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

from service import middleware
from service.counter import Counter, RedisUnavailable
from service.logs import get_logger
from service.metrics import Metrics

Format = Literal["text", "json", "html"]

# Order matters: for "*/*" (curl) the first wins, so plain text is the default.
_MEDIA_TYPES: dict[str, Format] = {
    "text/plain": "text",
    "application/json": "json",
    "text/html": "html",
}
_CONTENT_TYPES: dict[Format, str] = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}
RETRY_AFTER_SECONDS = 1
VARY = {"Vary": "Accept"}
NO_STORE = {"Cache-Control": "no-store"}

bp = Blueprint("tally", __name__)


log = get_logger()


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct Accept headers
def negotiate(accept: str | None) -> Format:
    """The response format an Accept header prefers; plain text when there is none."""
    if accept is None:
        return "text"
    best = parse_accept_header(accept, MIMEAccept).best_match(
        list(_MEDIA_TYPES), default="text/plain"
    )
    return _MEDIA_TYPES[best]


def plain_body(fmt: Format, data: dict[str, Any], text: str) -> str:
    """A JSON document or a line of text (HTML is a template: see render)."""
    return json.dumps(data) if fmt == "json" else text + "\n"


async def render(
    status: int,
    template: str,
    data: dict[str, Any],
    text: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """One response in the negotiated format: a Jinja page, a JSON document or a line of text."""
    fmt = negotiate(request.headers.get("Accept"))
    if fmt == "html":
        links = current_app.extensions["settings"].dashboard_links
        body = await render_template(template, links=links, **{"served_by": _replica(), **data})
    else:
        body = plain_body(fmt, data, text)
    return Response(
        body, status=status, content_type=_CONTENT_TYPES[fmt], headers={**(headers or {}), **VARY}
    )


def _counter() -> Counter:
    counter: Counter = current_app.extensions["counter"]
    return counter


def _replica() -> str:
    replica: str = current_app.extensions["settings"].replica_id
    return replica


@bp.get("/")
async def index() -> Response:
    return await render(
        200,
        "index.html",
        {"message": "Welcome to tally, a visit counter.", "served_by": _replica()},
        "Welcome to tally, a visit counter. GET /count to count your visit.",
    )


async def visit(extensions: Mapping[str, Any], exchange: middleware.Exchange) -> dict[str, Any]:
    """Count one visit (once per request id when the caller gave one); what /count shows."""
    counter: Counter = extensions["counter"]
    result = await counter.increment(exchange.request_id if exchange.idempotent else None)
    if not result.replayed:
        metrics: Metrics = extensions["metrics"]
        metrics.visits.inc()
    return {"count": result.value, "served_by": extensions["settings"].replica_id}


@bp.get("/count")
async def count() -> Response:
    data = await visit(current_app.extensions, middleware.current())
    return await render(200, "count.html", data, str(data["count"]), NO_STORE)


@bp.get("/metrics")
async def metrics() -> Response:
    body, content_type = current_app.extensions["metrics"].exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@bp.get("/healthz")
async def healthz() -> Response:
    return await render(200, "status.html", {"status": "ok"}, "ok")


@bp.get("/readyz")
async def readyz() -> Response:
    await _counter().ping()
    return await render(200, "status.html", {"status": "ready"}, "ready")


def error_content(status: int, code: str, message: str) -> tuple[dict[str, Any], str]:
    """An error's JSON document and its line of text."""
    return {"error": code, "message": message, "status": status}, f"{status} {message}"


async def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return await render(status, "error.html", *error_content(status, code, message), headers)


@bp.app_errorhandler(HTTPException)
async def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    name = exc.name or "Error"
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    # Descriptions are fixed sentences (werkzeug's or ours); nothing from the request echoes back.
    message = {
        404: "Not found. Try / or /count.",
        405: f"Method not allowed. Allowed: {headers.get('Allow', 'GET')}.",
    }.get(status, exc.description or f"{name}.")
    return await error(status, name.lower().replace(" ", "_"), message, headers)


def unavailable(exc: RedisUnavailable) -> tuple[int, str, str, dict[str, str]]:
    log.warning("redis_unavailable", reason=str(exc))
    return (
        503,
        "unavailable",
        "The counter is unavailable right now. Try again shortly.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def internal(exc: Exception) -> tuple[int, str, str, dict[str, str]]:
    # The traceback goes to the log and the trace, never to the client.
    log.error("unhandled_exception", exc_info=exc)
    trace.get_current_span().record_exception(exc)
    return 500, "internal_error", "Something went wrong on our side.", {}


@bp.app_errorhandler(RedisUnavailable)
async def redis_unavailable(exc: RedisUnavailable) -> Response:
    return await error(*unavailable(exc))


@bp.app_errorhandler(Exception)
async def unexpected(exc: Exception) -> Response:
    return await error(*internal(exc))


class FastCount:
    """GET /count on the raw ASGI messages: no request context, no request or response
    objects, no task watching for a disconnect (docs/PERFORMANCE.md has what that buys).
    Returns False, having sent nothing, for what it leaves to Quart's `count()`."""

    def __init__(self, extensions: Mapping[str, Any]) -> None:
        self._extensions = extensions

    async def __call__(
        self, scope: HTTPScope, exchange: middleware.Exchange, send: ASGISendCallable
    ) -> bool:
        accept = None
        for name, value in scope["headers"]:
            if name == b"accept":
                if accept is None:  # the first one, as werkzeug reads it
                    accept = value.decode("latin-1")
            elif (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                return False  # a body: Quart refuses it (MAX_CONTENT_LENGTH)
        fmt = negotiate(accept)
        if fmt == "html" or exchange.bad_request_id:
            return False
        try:
            data = await visit(self._extensions, exchange)
        except RedisUnavailable as exc:
            status, code, message, headers = unavailable(exc)
        except Exception as exc:  # answered as Quart's handler would
            status, code, message, headers = internal(exc)
        else:
            body = plain_body(fmt, data, str(data["count"])).encode()
            await _send(send, 200, fmt, body, NO_STORE)
            return True
        body = plain_body(fmt, *error_content(status, code, message)).encode()
        await _send(send, status, fmt, body, headers)
        return True


async def _send(
    send: ASGISendCallable, status: int, fmt: Format, body: bytes, headers: Mapping[str, str]
) -> None:
    headers = {
        **headers,
        **VARY,
        "Content-Type": _CONTENT_TYPES[fmt],
        "Content-Length": str(len(body)),
    }
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw, "trailers": False})
    await send({"type": "http.response.body", "body": body, "more_body": False})
