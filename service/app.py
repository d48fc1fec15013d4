"""The app factory: wires settings, the counter, metrics, tracing and routes, with a lifecycle."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass

import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from quart import Quart, Request, Response, g, request
from werkzeug.exceptions import BadRequest

from service import __version__, routes
from service.counter import Counter, Increment, Observer
from service.logs import get_logger, span_ids
from service.metrics import Metrics
from service.settings import Settings

# nginx's $request_id is 32 hex characters; UUIDs and ULIDs fit too. Anything
# else (long, binary, spaces) is refused before it can reach a Redis key.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

CounterFactory = Callable[[Settings, Observer, Tracer], Counter]


@dataclass(slots=True)
class Exchange:
    """One request's state, from before_request to after_request (kept on `g`)."""

    started: float
    request_id: str
    idempotent: bool
    route: str | None
    span: Span
    trace_token: Token[Context]
    visit: Increment | None = None


class InvalidRequestId(BadRequest):
    description = "Idempotency-Key / X-Request-ID must be 1-128 characters of A-Z a-z 0-9 . _ : -"


def create_app(
    settings: Settings,
    counter_factory: CounterFactory = Counter.from_settings,
    tracer_provider: TracerProvider | None = None,
) -> Quart:
    """Build an app; the counter opens at start, and the counter and tracer close at shutdown."""
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 0  # no route takes a body
    metrics = Metrics(settings.replica_id, __version__)
    tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("tally", __version__)
    app.extensions["settings"] = settings
    app.extensions["metrics"] = metrics
    app.extensions["links"] = routes.DashboardLinks(settings.grafana_url, settings.prometheus_url)
    app.register_blueprint(routes.bp)
    access_log = get_logger()

    @app.before_serving
    async def open_counter() -> None:
        app.extensions["counter"] = counter_factory(settings, metrics.observe_redis, tracer)

    @app.after_serving
    async def close() -> None:
        await app.extensions["counter"].close()
        if tracer_provider is not None:
            tracer_provider.shutdown()  # flushes the spans still queued

    @app.before_request
    async def start_request() -> None:
        # The hot path: the request proxy is resolved once, and the request's state
        # lives in one object on `g` (every proxy access is a context lookup).
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        metrics.in_flight.inc()
        incoming = req.headers.get("X-Request-ID")
        if incoming is not None and _REQUEST_ID.fullmatch(incoming):
            idempotent, request_id = True, incoming
        else:
            idempotent, request_id = False, uuid.uuid4().hex
        route = req.url_rule.rule if req.url_rule else None
        # A caller's W3C traceparent (passed through nginx untouched) continues here.
        traceparent = req.headers.get("traceparent")
        parent = propagate.extract(req.headers) if traceparent is not None else None
        span = tracer.start_span(
            f"{req.method} {route}" if route else req.method, context=parent, kind=SpanKind.SERVER
        )
        if span.is_recording():  # most requests are not sampled: skip the attributes then
            span.set_attributes(
                {
                    "http.request.method": req.method,
                    "http.route": route or "",
                    "url.path": req.path,
                    "url.scheme": req.scheme,
                    "network.protocol.version": req.http_version.removeprefix("HTTP/"),
                    "user_agent.original": req.headers.get("User-Agent", ""),
                    "http.request.header.x-request-id": (request_id,),
                }
            )
        token = context.attach(trace.set_span_in_context(span, parent))
        g.exchange = Exchange(time.perf_counter(), request_id, idempotent, route, span, token)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if incoming is not None and not idempotent:
            raise InvalidRequestId()

    @app.after_request
    async def finish_request(response: Response) -> Response:
        exchange: Exchange = g.exchange
        seconds = time.perf_counter() - exchange.started
        method = request.method
        status = response.status_code
        # Route templates only: a raw path would be unbounded label cardinality.
        route = exchange.route or "unmatched"
        headers = response.headers
        headers["X-Served-By"] = settings.replica_id
        headers["X-Request-ID"] = exchange.request_id
        span = exchange.span
        span_context = span.get_span_context()
        # Exemplars only for sampled spans: those are the traces Tempo has.
        exemplar = span_ids(span_context) if span_context.trace_flags.sampled else None
        metrics.in_flight.dec()
        metrics.observe_request(method, route, status, seconds, exemplar)
        visit = exchange.visit
        if visit is not None and not visit.replayed:
            metrics.visits.inc()
        access_log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
        )
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        context.detach(exchange.trace_token)
        structlog.contextvars.clear_contextvars()
        return response

    return app
