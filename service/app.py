"""The app factory: wires settings, the counter, metrics, tracing and routes, with a lifecycle."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from quart import Quart, Response, g, request
from werkzeug.exceptions import BadRequest

from service import __version__, routes
from service.counter import Counter, Observer
from service.logs import get_logger, span_ids
from service.metrics import Metrics
from service.settings import Settings

# nginx's $request_id is 32 hex characters; UUIDs and ULIDs fit too. Anything
# else (long, binary, spaces) is refused before it can reach a Redis key.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

CounterFactory = Callable[[Settings, Observer, Tracer], Counter]


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
        g.started = time.perf_counter()
        metrics.in_flight.inc()
        incoming = request.headers.get("X-Request-ID")
        g.idempotent = incoming is not None and _REQUEST_ID.fullmatch(incoming) is not None
        g.request_id = incoming if g.idempotent else uuid.uuid4().hex
        g.route = request.url_rule.rule if request.url_rule else None
        # A caller's W3C traceparent (passed through nginx untouched) continues here.
        parent = propagate.extract(request.headers) if "traceparent" in request.headers else None
        g.span = tracer.start_span(
            f"{request.method} {g.route}" if g.route else request.method,
            context=parent,
            kind=SpanKind.SERVER,
        )
        if g.span.is_recording():  # most requests are not sampled: skip the attributes then
            g.span.set_attributes(
                {
                    "http.request.method": request.method,
                    "http.route": g.route or "",
                    "url.path": request.path,
                    "url.scheme": request.scheme,
                    "network.protocol.version": request.http_version.removeprefix("HTTP/"),
                    "user_agent.original": request.headers.get("User-Agent", ""),
                    "http.request.header.x-request-id": (g.request_id,),
                }
            )
        g.trace_token = context.attach(trace.set_span_in_context(g.span, parent))
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        if incoming is not None and not g.idempotent:
            raise InvalidRequestId()

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers["X-Served-By"] = settings.replica_id
        response.headers["X-Request-ID"] = g.request_id
        # Route templates only: a raw path would be unbounded label cardinality.
        route = g.route or "unmatched"
        status = response.status_code
        seconds = time.perf_counter() - g.started
        span_context = g.span.get_span_context()
        # Exemplars only for sampled spans: those are the traces Tempo has.
        exemplar = span_ids(span_context) if span_context.trace_flags.sampled else None
        metrics.in_flight.dec()
        metrics.requests.labels(request.method, route, status).inc()
        metrics.duration.labels(request.method, route).observe(seconds, exemplar)
        visit = g.get("visit")
        if visit is not None and not visit.replayed:
            metrics.visits.inc()
        access_log.info(
            "request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
        )
        g.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            g.span.set_status(Status(StatusCode.ERROR))
        g.span.end()
        context.detach(g.trace_token)
        structlog.contextvars.clear_contextvars()
        return response

    return app
