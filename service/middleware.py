"""What every request gets, as one ASGI middleware around the Quart app: its request id,
a server span, RED metrics, the access line, and the X-Served-By / X-Request-ID headers.
A liveness probe (GET /healthz) gets the headers and its own counter, nothing else.

It works on the raw ASGI scope and messages, so the hot path has no Quart hooks,
request proxies or header objects of its own (docs/PERFORMANCE.md has what that
bought). What the routes need of it (the request id) they read from `current()`: a
context variable set here is seen by the tasks Quart starts for the request. A GET whose
path has a `fast` handler (GET /count: routes.FastCount) goes to it first, inside the same
span, metrics and access line, and to Quart only when it declines.
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
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from service.logs import REQUEST_ID, span_ids
from service.metrics import Metrics
from service.request_id import ACCEPTED, HEADER_ASGI

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


_current: ContextVar[Exchange] = ContextVar("tally_exchange")

# A GET answered without the framework: sends the whole response and returns True, or
# sends nothing and returns False to leave the request to the app.
FastPath = Callable[[HTTPScope, Exchange, ASGISendCallable], Awaitable[bool]]


def _exchange(scope: HTTPScope) -> tuple[Exchange, bytes | None]:
    """The request's id (the caller's, when valid) and its traceparent header, if any."""
    incoming = traceparent = None
    for name, value in scope["headers"]:  # ASGI header names are lower case
        if name == HEADER_ASGI and incoming is None:  # the first one, as werkzeug reads it
            incoming = value
        elif name == b"traceparent":
            traceparent = value
    if incoming is not None and ACCEPTED.fullmatch(incoming):
        exchange = Exchange(incoming.decode("ascii"), idempotent=True, bad_request_id=False)
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
        replica_id: str,
        metrics: Metrics,
        tracer: Tracer,
        access_log: structlog.typing.FilteringBoundLogger,
        fast: Mapping[str, FastPath] | None = None,
    ) -> None:
        self._app = app
        self._fast = dict(fast or {})  # by path, for GET
        self._routes = {rule.rule: rule.rule for rule in url_map.iter_rules() if not rule.arguments}
        self._match = url_map.bind("tally").match  # for the rules with variables (/static/...)
        self._served_by = (b"x-served-by", replica_id.encode())
        self._metrics = metrics
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
                await self._forward(scope, receive, reply)
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
        span = self._tracer.start_span(
            f"{method} {route}" if route != "unmatched" else method,
            context=parent,
            kind=SpanKind.SERVER,
        )
        if span.is_recording():  # most requests are not sampled: skip the attributes then
            span.set_attributes(self._span_attributes(scope, route, exchange.request_id))
        trace_token = context.attach(trace.set_span_in_context(span, parent))
        request_id_token = REQUEST_ID.set(exchange.request_id)
        self._metrics.in_flight += 1
        fast = self._fast.get(scope["path"]) if method == "GET" else None
        try:
            if fast is None or not await fast(scope, exchange, reply.send):
                await self._forward(scope, receive, reply)
        finally:
            self._finish(method, route, reply.status, time.perf_counter() - started, span)
            REQUEST_ID.reset(request_id_token)
            _current.reset(exchange_token)
            context.detach(trace_token)

    async def _forward(self, scope: HTTPScope, receive: ASGIReceiveCallable, reply: _Reply) -> None:
        try:
            await self._app(scope, receive, reply.send)
        except asyncio.CancelledError:
            raise
        except BaseException:
            reply.status = 500
            raise

    def _finish(
        self, method: str, route: str, status: int, seconds: float, span: trace.Span
    ) -> None:
        self._metrics.in_flight -= 1
        span_context = span.get_span_context()
        ids = span_ids(span_context) if span_context.is_valid else {}
        # Exemplars only for sampled spans: those are the traces Tempo has.
        exemplar = ids if span_context.trace_flags.sampled else None
        self._metrics.observe_request(method, route, status, seconds, exemplar)
        self._log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            **ids,
        )
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    @staticmethod
    def _span_attributes(
        scope: HTTPScope, route: str, request_id: str
    ) -> dict[str, str | tuple[str, ...]]:
        user_agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        return {
            "http.request.method": scope["method"],
            "http.route": route if route != "unmatched" else "",
            "url.path": scope["path"],
            "url.scheme": scope["scheme"],
            "network.protocol.version": scope["http_version"],
            "user_agent.original": user_agent.decode("latin-1"),
            "http.request.header.x-request-id": (request_id,),
        }
