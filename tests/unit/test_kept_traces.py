"""Head sampling keeps 1 in N traces; every failed or slow request keeps its trace too,
rebuilt after the fact under the ids its log lines carry."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quart.typing import TestClientProtocol as Client
from redis.exceptions import ConnectionError as RedisConnectionError

from service import middleware, tracing
from service.counter import Counter
from service.settings import Settings
from tests.serving import json_logs, serving
from tests.unit.fakes import FakeRedis

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class Traced:
    client: Client
    redis: FakeRedis
    exporter: InMemorySpanExporter
    provider: TracerProvider
    lines: io.StringIO

    def spans(self) -> tuple[ReadableSpan, ...]:
        self.provider.force_flush()
        return self.exporter.get_finished_spans()

    def access_line(self) -> dict[str, Any]:
        found = [json.loads(line) for line in self.lines.getvalue().splitlines()]
        [line] = [line for line in found if line.get("event") == "request"]
        return cast(dict[str, Any], line)


@pytest.fixture
async def traced(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Traced]:
    """The app with tracing on and no trace sampled at the start (ratio 0)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    settings = Settings(replica_id="r1", otel_exporter_otlp_endpoint="http://sink:4318")
    exporter = InMemorySpanExporter()
    provider = tracing.tracer_provider(settings, exporter)
    assert provider is not None
    redis = FakeRedis()

    def counter(settings: Settings, observe: Any, tracer: Any) -> Counter:
        return Counter(cast(Any, redis), "visitor_count", 300, 1.0, observe, tracer)

    with json_logs("r1") as lines:
        async with serving(settings, tracer_provider=provider, counter_factory=counter) as client:
            yield Traced(client, redis, exporter, provider, lines)


def server_and_children(spans: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    children = [span for span in spans if span.kind == SpanKind.CLIENT]
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
    return server, children


def ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


async def test_a_fast_success_is_not_sampled(traced: Traced) -> None:
    assert (await traced.client.get("/count")).status_code == 200
    assert traced.spans() == ()
    line = traced.access_line()
    assert line["trace_id"]  # the id exists, but no trace was kept under it


async def test_a_503_keeps_its_trace_with_the_failed_redis_call(traced: Traced) -> None:
    traced.redis.failure = RedisConnectionError("refused")
    response = await traced.client.get("/count", headers={"X-Request-ID": "req-503"})
    assert response.status_code == 503
    server, [evalsha] = server_and_children(traced.spans())
    assert server.name == "GET /count"
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 503
    assert server.attributes["http.route"] == "/count"
    assert server.attributes["http.request.header.x-request-id"] == ("req-503",)
    assert evalsha.name == "EVALSHA"
    assert evalsha.status.status_code is StatusCode.ERROR
    assert evalsha.attributes is not None
    assert evalsha.attributes["error.type"] == "ConnectionError"
    assert evalsha.attributes["db.system.name"] == "redis"
    assert server.start_time is not None
    assert evalsha.start_time is not None
    assert server.start_time <= evalsha.start_time
    assert evalsha.end_time is not None
    assert server.end_time is not None
    assert evalsha.end_time <= server.end_time
    line = traced.access_line()
    assert (line["trace_id"], line["span_id"]) == ids(server)


async def test_a_slow_success_keeps_its_trace(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(middleware, "LATENCY_SLO_SECONDS", 0.0)  # every request is slow
    assert (await traced.client.get("/count")).status_code == 200
    server, [evalsha] = server_and_children(traced.spans())
    assert server.status.status_code is StatusCode.UNSET
    assert evalsha.status.status_code is StatusCode.UNSET
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    line = traced.access_line()
    assert (line["trace_id"], line["span_id"]) == ids(server)


async def test_a_500_keeps_its_trace_with_the_exception(traced: Traced) -> None:
    traced.redis.failure = ValueError("a bug")  # not a Redis error: the handler's 500
    assert (await traced.client.get("/count")).status_code == 500
    server, _ = server_and_children(traced.spans())
    [event] = [event for event in server.events if event.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert server.status.status_code is StatusCode.ERROR


async def test_a_callers_sampled_trace_is_continued(traced: Traced) -> None:
    traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
    assert (
        await traced.client.get("/count", headers={"traceparent": traceparent})
    ).status_code == 200
    server, [_] = server_and_children(traced.spans())
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN


async def test_a_failure_in_a_callers_unsampled_trace_is_kept_in_that_trace(
    traced: Traced,
) -> None:
    traced.redis.failure = RedisConnectionError("refused")
    traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-00"
    assert (
        await traced.client.get("/count", headers={"traceparent": traceparent})
    ).status_code == 503
    server, [_] = server_and_children(traced.spans())
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN


async def test_a_404_is_not_kept(traced: Traced) -> None:
    assert (await traced.client.get("/nowhere")).status_code == 404
    assert traced.spans() == ()


async def test_a_sampled_failure_names_its_error_as_a_rebuilt_one_does(traced: Traced) -> None:
    traced.redis.failure = RedisConnectionError("refused")
    traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
    response = await traced.client.get("/count", headers={"traceparent": traceparent})
    assert response.status_code == 503
    _, [evalsha] = server_and_children(traced.spans())
    assert evalsha.attributes is not None
    assert evalsha.attributes["error.type"] == "ConnectionError"
    assert evalsha.status.status_code is StatusCode.ERROR
