"""OpenTelemetry tracing: a provider built from the standard OTEL_* variables, or none at all."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from service import __version__
from service.logs import get_logger
from service.settings import Settings


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """The SDK, exporting OTLP/HTTP in batches; None (tracing off) without an endpoint.

    Whether tracing is on is configuration, not a guess: an endpoint that does not
    answer yet (the core stack's replicas point at Tempo, which only the observability
    profile starts) is retried on every batch, so traces flow as soon as it is up,
    however late that is. The SDK reads its own variables: the sampler
    (OTEL_TRACES_SAMPLER, _ARG), the exporter's endpoint and headers, the batch limits.
    """
    if settings.otel_sdk_disabled or settings.otel_endpoint is None:
        return None
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": __version__,
            "service.instance.id": settings.replica_id,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = ReportedExporter(OTLPSpanExporter(), settings.otel_endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    get_logger().info("tracing_on", endpoint=settings.otel_endpoint)
    return provider


class ReportedExporter(SpanExporter):
    """Says once when spans stop reaching the endpoint and once when they reach it again,
    instead of the exporter's own warning per retry and error per batch."""

    def __init__(self, exporter: SpanExporter, endpoint: str) -> None:
        self._exporter = exporter
        self._endpoint = endpoint
        self._delivering = True
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._exporter.export(spans)
        delivering = result is SpanExportResult.SUCCESS
        if delivering != self._delivering:
            self._delivering = delivering
            log = get_logger()
            if delivering:
                log.info("traces_delivered", endpoint=self._endpoint)
            else:
                log.warning("traces_undelivered", endpoint=self._endpoint, dropped=len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
