"""The app factory: wires settings, the counter, metrics, tracing and routes, with a lifecycle."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from quart import Quart

from service import __version__, middleware, routes
from service.counter import Counter, Observer
from service.logs import get_logger
from service.metrics import Metrics
from service.settings import Settings
from service.state import State

CounterFactory = Callable[[Settings, Observer, Tracer], Counter]


def create_app(
    settings: Settings,
    counter_factory: CounterFactory = Counter.from_settings,
    tracer_provider: TracerProvider | None = None,
) -> Quart:
    """Build an app; the counter's pool connects on first use, and the counter and tracer
    close at shutdown."""
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 0  # no route takes a body
    metrics = Metrics(settings.replica_id, __version__)
    tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("tally", __version__)
    state = State(
        settings, metrics, counter_factory(settings, metrics.observe_redis, tracer), app.jinja_env
    )
    app.register_blueprint(routes.blueprint(state))

    @app.after_serving
    async def close() -> None:
        await state.counter.close()
        if tracer_provider is not None:
            tracer_provider.shutdown()  # flushes the spans still queued

    app.asgi_app = middleware.Observed(  # type: ignore[method-assign]
        app.asgi_app,
        app.url_map,
        state,
        tracer,
        get_logger(),
        endpoints={routes.COUNT_PATH: routes.Count(state)},
    )
    return app
