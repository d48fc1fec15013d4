"""What every request gets, as one ASGI middleware around the Quart app: its request id,
a server span, RED metrics, the access line, and the X-Served-By / X-Request-ID headers.
A liveness probe (GET /healthz) gets the headers and its own counter, nothing else.

It works on the raw ASGI scope and messages, so the hot path has no Quart hooks,
request proxies or header objects of its own (docs/PERFORMANCE.md has what that
bought). A path with an endpoint of its own (/count: routes.Count) goes to it, every
method, inside the same span, metrics and access line; every other path goes to Quart,
whose views read the request id from `current()`: a context variable set here is seen
by the tasks Quart starts for the request.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)
from opentelemetry import context, propagate, trace
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_HEADER_TEMPLATE,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from service.logs import REQUEST_ID, span_ids
from service.metrics import LATENCY_SLO_SECONDS
from service.request_id import ACCEPTED, HEADER, HEADER_ASGI, IDEMPOTENCY_HEADER_ASGI
from service.state import State
from service.tracing import TRAIL, Trail, rebuild, record_exception

# The request id on the server span, as the conventions name a captured request header.
REQUEST_ID_ATTRIBUTE = f"{HTTP_REQUEST_HEADER_TEMPLATE}.{HEADER.lower()}"
# Sent when no response was started: the client went away first (nginx's convention).
CLIENT_CLOSED = 499
# Docker probes every replica every few seconds: a line and a request series for each would
# bury the traffic people read (and cost CPU on an idle stack), so probes are only counted.
HEALTH_PATH = "/healthz"
PROBE_METHODS = frozenset(("GET", "HEAD"))


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request as the routes see it."""

    request_id: str
    idempotent: bool  # the id came from the caller (nginx or an Idempotency-Key): count once
    bad_request_id: bool  # the caller sent an X-Request-ID we refuse (400)
    client_key: bool = False  # the id is a client's Idempotency-Key, not one nginx made


_current: ContextVar[Exchange] = ContextVar("tally_exchange")

# A path answered without the framework: sends the whole response.
Endpoint = Callable[[HTTPScope, Exchange, ASGISendCallable], Awaitable[None]]


def _exchange(scope: HTTPScope) -> tuple[Exchange, bytes | None]:
    """The request's id (the caller's, when valid) and its traceparent header, if any."""
    incoming = traceparent = key = None
    for name, value in scope["headers"]:  # ASGI header names are lower case
        if name == HEADER_ASGI and incoming is None:  # the first one, as werkzeug reads it
            incoming = value
        elif name == b"traceparent":
            traceparent = value
        elif name == IDEMPOTENCY_HEADER_ASGI and key is None:
            key = value
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        exchange = Exchange(incoming.decode("ascii"), True, False, client_key=key == incoming)
    else:
        exchange = Exchange(secrets.token_hex(16), False, bad_request_id=incoming is not None)
    return exchange, traceparent


class _Reply:
    """The server's `send` with our headers added to the response; remembers its status."""

    __slots__ = ("_headers", "_send", "status")

    def __init__(self, send: ASGISendCallable, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self._send = send
        self._headers = headers
        self.status = CLIENT_CLOSED

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), *self._headers]
        await self._send(message)


def current() -> Exchange:
    return _current.get()


class Observed:
    """Wraps `app.asgi_app`. Route labels are templates, never raw paths (bounded
    cardinality): a path that matches no rule is "unmatched"."""

    def __init__(
        self,
        app: ASGIFramework,
        url_map: Map,
        state: State,
        tracer: Tracer,
        access_log: structlog.typing.FilteringBoundLogger,
        endpoints: Mapping[str, Endpoint] | None = None,
    ) -> None:
        self._app = app
        self._endpoints = dict(endpoints or {})  # by path, every method
        self._routes = {rule.rule: rule.rule for rule in url_map.iter_rules() if not rule.arguments}
        self._routes.update((path, path) for path in self._endpoints)
        self._match = url_map.bind("tally").match  # for the rules with variables (/static/...)
        self._served_by = (b"x-served-by", state.settings.replica_id.encode())
        self._metrics = state.metrics
        self._tracer = tracer
        self._log = access_log

    def route(self, path: str) -> str:
        found = self._routes.get(path)
        if found is not None:
            return found
        try:
            rule, _ = self._match(path, "GET", return_rule=True)
        except HTTPException:  # NotFound, MethodNotAllowed, RequestRedirect: no template
            return "unmatched"
        return str(rule.rule)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method: str = scope["method"]
        exchange, traceparent = _exchange(scope)
        exchange_token = _current.set(exchange)
        reply = _Reply(send, (self._served_by, (HEADER_ASGI, exchange.request_id.encode())))
        if scope["path"] == HEALTH_PATH and method in PROBE_METHODS:
            try:
                await self._guarded(self._app(scope, receive, reply.send), reply)
            finally:
                self._metrics.observe_probe(reply.status)
                _current.reset(exchange_token)
            return
        started = time.perf_counter()
        route = self.route(scope["path"])
        # A caller's W3C traceparent (passed through nginx untouched) continues here.
        parent = None
        if traceparent is not None:
            parent = propagate.extract(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        name = f"{method} {route}" if route != "unmatched" else method
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        trail: Trail | None = None
        if span.is_recording():  # most requests are not sampled: skip the attributes then
            span.set_attributes(self._span_attributes(scope, route, exchange.request_id))
        elif span.get_span_context().is_valid:  # tracing is on: keep the outline
            trail = []
        trail_token = TRAIL.set(trail)
        trace_token = context.attach(trace.set_span_in_context(span, parent))
        request_id_token = REQUEST_ID.set(exchange.request_id)
        self._metrics.in_flight += 1
        endpoint = self._endpoints.get(scope["path"])
        try:
            if endpoint is None:
                await self._guarded(self._app(scope, receive, reply.send), reply)
            else:
                await self._guarded(endpoint(scope, exchange, reply.send), reply)
        finally:
            ended = time.perf_counter()
            status = reply.status
            # A failed or slow request keeps its trace, whatever the sampler decided.
            kept = False
            if trail is not None and (status >= 500 or ended - started > LATENCY_SLO_SECONDS):
                kept = True
                attributes = self._span_attributes(scope, route, exchange.request_id)
                dropped = span.get_span_context()
                rebuild(
                    self._tracer, name, dropped, parent, trail, started, ended, status, attributes
                )
            self._finish(method, route, status, ended - started, span, kept)
            TRAIL.reset(trail_token)
            REQUEST_ID.reset(request_id_token)
            _current.reset(exchange_token)
            context.detach(trace_token)

    @staticmethod
    async def _guarded(answer: Awaitable[None], reply: _Reply) -> None:
        """Await an answer; one that fails is a 500 (the server sends it) in the metrics."""
        try:
            await answer
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            reply.status = 500
            record_exception(exc)
            raise

    def _finish(
        self, method: str, route: str, status: int, seconds: float, span: trace.Span, kept: bool
    ) -> None:
        self._metrics.in_flight -= 1
        span_context = span.get_span_context()
        ids = span_ids(span_context) if span_context.is_valid else {}
        # Exemplars only for the traces Tempo has: the sampled and the rebuilt.
        exemplar = ids if span_context.trace_flags.sampled or kept else None
        self._metrics.observe_request(method, route, status, seconds, exemplar)
        self._log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            **ids,
        )
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    @staticmethod
    def _span_attributes(
        scope: HTTPScope, route: str, request_id: str
    ) -> dict[str, str | tuple[str, ...]]:
        user_agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        return {
            HTTP_REQUEST_METHOD: scope["method"],
            HTTP_ROUTE: route if route != "unmatched" else "",
            URL_PATH: scope["path"],
            URL_SCHEME: scope["scheme"],
            NETWORK_PROTOCOL_VERSION: scope["http_version"],
            USER_AGENT_ORIGINAL: user_agent.decode("latin-1"),
            REQUEST_ID_ATTRIBUTE: (request_id,),
        }
