"""OpenTelemetry tracing: a provider built from the standard OTEL_* variables, or none at all."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from service import __version__
from service.logs import get_logger
from service.settings import Settings


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """The SDK, exporting OTLP/HTTP in batches; None (tracing off, silently) without an endpoint.

    The SDK reads its own variables: the sampler (OTEL_TRACES_SAMPLER, _ARG),
    the endpoint and headers of the exporter, the batch processor's limits.
    """
    log = get_logger()
    if settings.otel_sdk_disabled or settings.otel_endpoint is None:
        return None
    host = urlsplit(settings.otel_endpoint).hostname
    if host and not _resolves(host):
        # compose points every replica at Tempo, which only the observability
        # profile starts: without it, say so once instead of failing every export.
        log.info("tracing_off", reason=f"{host} does not resolve", endpoint=settings.otel_endpoint)
        return None
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": __version__,
            "service.instance.id": settings.replica_id,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("tracing_on", endpoint=settings.otel_endpoint)
    return provider


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True
