"""The app factory: wires settings, the counter and the routes, with an explicit lifecycle."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from quart import Quart, Response, g, request
from werkzeug.exceptions import BadRequest

from service import __version__, routes
from service.counter import Counter, Observer
from service.logs import get_logger
from service.metrics import Metrics
from service.settings import Settings

# nginx's $request_id is 32 hex characters; UUIDs and ULIDs fit too. Anything
# else (long, binary, spaces) is refused before it can reach a Redis key.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class InvalidRequestId(BadRequest):
    description = "Idempotency-Key / X-Request-ID must be 1-128 characters of A-Z a-z 0-9 . _ : -"


def create_app(
    settings: Settings,
    counter_factory: Callable[[Settings, Observer], Counter] = Counter.from_settings,
) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 0  # no route takes a body
    metrics = Metrics(settings.replica_id, __version__)
    app.extensions["settings"] = settings
    app.extensions["metrics"] = metrics
    app.register_blueprint(routes.bp)
    access_log = get_logger()

    @app.before_serving
    async def open_counter() -> None:
        app.extensions["counter"] = counter_factory(settings, metrics.observe_redis)

    @app.after_serving
    async def close_counter() -> None:
        await app.extensions["counter"].close()

    @app.before_request
    async def start_request() -> None:
        g.started = time.perf_counter()
        metrics.in_flight.inc()
        incoming = request.headers.get("X-Request-ID")
        g.idempotent = incoming is not None and _REQUEST_ID.fullmatch(incoming) is not None
        g.request_id = incoming if g.idempotent else uuid.uuid4().hex
        if incoming is not None and not g.idempotent:
            raise InvalidRequestId()

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers["X-Served-By"] = settings.replica_id
        response.headers["X-Request-ID"] = g.request_id
        # Route templates only: a raw path would be unbounded label cardinality.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.started
        metrics.in_flight.dec()
        metrics.requests.labels(request.method, route, response.status_code).inc()
        metrics.duration.labels(request.method, route).observe(seconds)
        visit = g.get("visit")
        if visit is not None and not visit.replayed:
            metrics.visits.inc()
        access_log.info(
            "request",
            method=request.method,
            route=route,
            status=response.status_code,
            duration_ms=round(seconds * 1000, 2),
            request_id=g.request_id,
        )
        return response

    return app
