"""The app factory: wires settings, the counter, metrics, tracing and routes, with a lifecycle."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from quart import Quart
from werkzeug.exceptions import BadRequest

from service import __version__, middleware, request_id, routes
from service.counter import Counter, Observer
from service.logs import get_logger
from service.metrics import Metrics
from service.settings import Settings

CounterFactory = Callable[[Settings, Observer, Tracer], Counter]


class InvalidRequestId(BadRequest):
    description = request_id.RULE


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
    app.register_blueprint(routes.bp)

    @app.before_serving
    async def open_counter() -> None:
        app.extensions["counter"] = counter_factory(settings, metrics.observe_redis, tracer)

    @app.after_serving
    async def close() -> None:
        await app.extensions["counter"].close()
        if tracer_provider is not None:
            tracer_provider.shutdown()  # flushes the spans still queued

    @app.before_request
    async def refuse_bad_request_id() -> None:
        if middleware.current().bad_request_id:
            raise InvalidRequestId()

    app.asgi_app = middleware.Observed(  # type: ignore[method-assign]
        app.asgi_app,
        app.url_map,
        settings.replica_id,
        metrics,
        tracer,
        get_logger(),
        fast={"/count": routes.FastCount(app.extensions)},
    )
    return app
