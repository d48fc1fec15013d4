"""HTTP in, HTTP out: the routes, content negotiation and error bodies."""

from __future__ import annotations

import json
from typing import Any, Literal

from opentelemetry import trace
from quart import Blueprint, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from service import middleware
from service.counter import Counter, RedisUnavailable
from service.logs import get_logger

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

bp = Blueprint("tally", __name__)


log = get_logger()


def negotiate() -> Format:
    """The response format the client prefers; plain text when it does not say."""
    best = request.accept_mimetypes.best_match(list(_MEDIA_TYPES), default="text/plain")
    return _MEDIA_TYPES[best]


async def render(
    status: int,
    template: str,
    data: dict[str, Any],
    text: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """One response in the negotiated format: a Jinja page, a JSON document or a line of text."""
    fmt = negotiate() if "Accept" in request.headers else "text"
    if fmt == "html":
        links = current_app.extensions["settings"].dashboard_links
        body = await render_template(template, links=links, **{"served_by": _replica(), **data})
    elif fmt == "json":
        body = json.dumps(data)
    else:
        body = text + "\n"
    return Response(
        body,
        status=status,
        content_type=_CONTENT_TYPES[fmt],
        headers={**headers, "Vary": "Accept"} if headers else {"Vary": "Accept"},
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


@bp.get("/count")
async def count() -> Response:
    exchange = middleware.current()
    result = await _counter().increment(exchange.request_id if exchange.idempotent else None)
    if not result.replayed:
        current_app.extensions["metrics"].visits.inc()
    response = await render(
        200, "count.html", {"count": result.value, "served_by": _replica()}, str(result.value)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


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


async def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return await render(
        status,
        "error.html",
        {"error": code, "message": message, "status": status},
        f"{status} {message}",
        headers,
    )


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


@bp.app_errorhandler(RedisUnavailable)
async def redis_unavailable(exc: RedisUnavailable) -> Response:
    log.warning("redis_unavailable", reason=str(exc))
    return await error(
        503,
        "unavailable",
        "The counter is unavailable right now. Try again shortly.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@bp.app_errorhandler(Exception)
async def unexpected(exc: Exception) -> Response:
    # The traceback goes to the log and the trace, never to the client.
    log.error("unhandled_exception", exc_info=exc)
    trace.get_current_span().record_exception(exc)
    return await error(500, "internal_error", "Something went wrong on our side.")
