"""Tracing is on exactly when configured, and says once when spans stop and start flowing."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from service.settings import Settings
from service.tracing import ReportedExporter, tracer_provider


def test_no_endpoint_means_no_tracing() -> None:
    assert tracer_provider(Settings.from_env({})) is None


def test_sdk_disabled_wins_over_an_endpoint() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracer_provider(Settings.from_env(env)) is None


def test_an_endpoint_that_does_not_resolve_yet_still_turns_tracing_on() -> None:
    # Tempo may start after the replicas: the name is looked up at each export, not at start.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://no-such-host.invalid:4318"}
    provider = tracer_provider(Settings.from_env(env))
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_a_provider_carries_our_resource() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "REPLICA_ID": "r7"}
    provider = tracer_provider(Settings.from_env(env))
    assert isinstance(provider, TracerProvider)
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "tally"
    assert attributes["service.instance.id"] == "r7"
    assert attributes["service.version"]
    provider.shutdown()


class Flaky(SpanExporter):
    def __init__(self, results: list[SpanExportResult]) -> None:
        self.results = results

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.results.pop(0)


def test_undelivered_and_delivered_are_each_said_once_per_change() -> None:
    ok, failed = SpanExportResult.SUCCESS, SpanExportResult.FAILURE
    exporter = ReportedExporter(Flaky([ok, failed, failed, ok, ok]), "http://tempo:4318")
    with structlog.testing.capture_logs() as lines:
        for _ in range(5):
            exporter.export([])
    assert [line["event"] for line in lines] == ["traces_undelivered", "traces_delivered"]
