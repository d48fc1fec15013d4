"""Traces and logs against a real Redis: one server span and one Redis child span per /count."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quart.typing import TestClientProtocol as Client

from service.settings import Settings
from tests.serving import json_logs, log_records, serving
from tests.support import RedisContainer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    with json_logs("r1") as stream:
        yield stream


def provider_to(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def client(
    redis_server: RedisContainer,
    counter_key: str,
    exporter: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> AsyncIterator[Client]:
    settings = Settings(redis_url=redis_server.url, counter_key=counter_key, replica_id="r1")
    async with serving(settings, tracer_provider=provider_to(exporter)) as test_client:
        yield test_client


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == kind]


async def test_count_gives_one_server_span_and_one_redis_child_span(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    response = await client.get("/count", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    [redis] = by_kind(spans, SpanKind.CLIENT)
    assert server.name == "GET /count"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/count"
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.request.header.x-request-id"] == ("trace-me",)
    assert redis.name == "EVALSHA"
    assert redis.attributes is not None
    assert redis.attributes["db.system.name"] == "redis"
    assert redis.attributes["db.operation.name"] == "EVALSHA"
    assert redis.parent is not None
    assert redis.parent.span_id == server.context.span_id
    assert redis.context.trace_id == server.context.trace_id


async def test_unknown_route_span_is_named_by_method_only(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    await client.get("/nope/123")
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    assert server.name == "GET"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 404


async def test_incoming_traceparent_is_continued(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    await client.get("/count", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_ID


async def test_log_lines_are_json_with_the_spans_trace_and_span_ids(
    client: Client, exporter: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    await client.get("/count", headers={"X-Request-ID": "log-me"})
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    [access] = log_records(log_lines, "request")
    assert access["trace_id"] == format(server.context.trace_id, "032x")
    assert access["span_id"] == format(server.context.span_id, "016x")
    assert access["request_id"] == "log-me"
    assert access["replica"] == "r1"
    assert (access["method"], access["route"], access["status"]) == ("GET", "/count", 200)
    assert isinstance(access["duration_ms"], float)


async def test_latency_exemplars_carry_the_spans_trace_id(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    await client.get("/count")
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    text = await (
        await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    ).get_data(as_text=True)
    bucket = r'http_request_duration_seconds_bucket\{[^}]*route="/count"[^}]*\} \S+'
    exemplars = re.findall(bucket + r' # \{[^}]*trace_id="(\w+)"', text)
    assert exemplars == [format(server.context.trace_id, "032x")]


async def test_redis_failure_marks_the_redis_span_as_error(
    exporter: InMemorySpanExporter,
) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2, replica_id="r1")
    async with serving(settings, tracer_provider=provider_to(exporter)) as client:
        response = await client.get("/count")
    assert response.status_code == 503
    spans = exporter.get_finished_spans()
    [redis] = by_kind(spans, SpanKind.CLIENT)
    [server] = by_kind(spans, SpanKind.SERVER)
    assert redis.status.status_code == StatusCode.ERROR
    assert server.status.status_code == StatusCode.ERROR
