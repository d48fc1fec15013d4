"""The app in this process, for the unit and integration tiers: built with a test's settings,
driven through Quart's test client, its /metrics read back as samples, its logs as JSON lines."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families
from quart.typing import TestClientProtocol as Client

from service import logs
from service.app import CounterFactory, create_app
from service.counter import Counter
from service.settings import Settings

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@asynccontextmanager
async def serving(
    settings: Settings,
    counter: object = None,
    tracer_provider: TracerProvider | None = None,
    counter_factory: CounterFactory = Counter.from_settings,
) -> AsyncIterator[Client]:
    """A started app's test client: on `counter` (a fake) when given, else on what
    `counter_factory` builds (by default, a counter on the Redis the settings name); the
    app is shut down when the block ends."""
    if counter is not None:
        counter_factory = lambda *_: cast(Counter, counter)  # noqa: E731
    app = create_app(settings, counter_factory, tracer_provider)
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def scrape(client: Client) -> Samples:
    """Every sample of the app's /metrics, by name and labels."""
    text = await (await client.get("/metrics")).get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@contextmanager
def json_logs(replica_id: str) -> Iterator[io.StringIO]:
    """structlog and the stdlib loggers writing JSON lines into a fresh stream, and back to
    the console after. Configure before building the app: a structlog logger binds to the
    configuration on its first use and keeps it (service/ binds none at import)."""
    stream = io.StringIO()
    logs.configure(Settings(replica_id=replica_id, log_format="json"), stream)
    try:
        yield stream
    finally:
        logs.configure(Settings(log_format="console"))


def log_records(stream: io.StringIO, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON lines written so far, only those of `event` when given."""
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [record for record in records if event is None or record.get("event") == event]
