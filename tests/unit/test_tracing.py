"""Tracing is on exactly when configured, and says once when spans stop and start flowing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from service import tracing
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


class Unanswered(SpanExporter):
    """An endpoint that never answers: each export retries until the exporter is shut
    down (the OTLP exporter's retries end the same way), or until the test gives up."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.cut_short = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.cut_short = self.stopped.wait(60)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.stopped.set()


def test_the_last_flush_to_an_endpoint_that_does_not_answer_is_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "LAST_FLUSH_S", 0.1)
    exporter = Unanswered()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318", "OTEL_TRACES_SAMPLER": "always_on"}
    provider = tracer_provider(Settings.from_env(env), exporter)
    assert provider is not None
    provider.get_tracer("test").start_span("queued").end()
    provider.shutdown()
    assert exporter.cut_short  # by the shutdown, not by the test's own 60 s
