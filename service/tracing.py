"""OpenTelemetry tracing: a provider built from the standard OTEL_* variables, or none at all,
and the traces of failed and slow requests kept whatever the head sampling decided.

The sampler (OTEL_TRACES_SAMPLER, _ARG: 1% in the stack) decides at the start of a
request, before anyone knows how it ends. A request it drops costs almost nothing: a
span that records nothing, and a `Trail`, the outline of what the request did (its
Redis calls with their times and outcomes, the exception behind a 500). When such a
request ends with a 5xx or slower than the latency SLO's threshold, `rebuild` makes its
trace from that outline, after the fact: the server span under the same trace and span
ids its log lines already carry, a child span per Redis call, the exception recorded.
So every failed or slow request has a trace in Tempo; fast successes stay at the ratio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import Attributes

from service import __version__
from service.logs import get_logger
from service.settings import Settings

# What an unsampled request did, in outline, in the order it happened: each Redis call as
# (operation, its span's attributes, start, end (time.perf_counter()), the error's type
# or None), and the exception behind a 500. A plain list: most requests end fast and
# fine, and this is all they pay for the chance of a trace.
Trail = list[Any]

# At shutdown the spans still queued get this long to reach the endpoint. One that does not
# answer (the core stack starts no Tempo; Tempo down) would otherwise hold a stopping
# replica for the exporter's own timeout and retries (10 s) after GRACEFUL_TIMEOUT: into
# the stop grace period, and into every replica a deploy replaces.
LAST_FLUSH_S = 2.0

# The trail of the request being answered, when it is not sampled and tracing is on.
TRAIL: ContextVar[Trail | None] = ContextVar("tally_trail", default=None)
# While `rebuild` makes a request's server span: the ids that span must have.
_PINNED: ContextVar[trace.SpanContext | None] = ContextVar("tally_pinned", default=None)


def record_exception(exc: BaseException) -> None:
    """On the current span when it records, else on the request's trail."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        return
    trail = TRAIL.get()
    if trail is not None:
        trail.append(exc)


class PinnedIds(RandomIdGenerator):
    """Random ids, but while a request's trace is rebuilt, the ids its logs carry."""

    def generate_trace_id(self) -> int:
        pinned = _PINNED.get()
        return pinned.trace_id if pinned is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        pinned = _PINNED.get()
        return pinned.span_id if pinned is not None else super().generate_span_id()


class KeepRebuilt(Sampler):
    """The configured sampler, except that a rebuilt trace is always kept."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if _PINNED.get() is not None:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"KeepRebuilt{{{self._sampler.get_description()}}}"


def rebuild(
    tracer: Tracer,
    name: str,
    dropped: trace.SpanContext,
    parent: context.Context | None,
    trail: Trail,
    started: float,
    ended: float,
    status: int,
    attributes: Mapping[str, Any],
) -> None:
    """The trace of a request the sampler dropped, from its trail (`started` and `ended`
    by time.perf_counter()): a server span with the dropped span's ids, a child per Redis
    call, the exception; exported as any other span."""
    offset = time.time_ns() - int(time.perf_counter() * 1e9)  # perf_counter to the epoch

    def ns(perf: float) -> int:
        return offset + int(perf * 1e9)

    token = _PINNED.set(dropped)
    try:
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=ns(started),
        )
    finally:
        _PINNED.reset(token)
    under = trace.set_span_in_context(span)
    for entry in trail:
        if isinstance(entry, BaseException):
            span.record_exception(entry)
            continue
        operation, call_attributes, call_started, call_ended, error = entry
        child = tracer.start_span(
            operation.upper(),
            context=under,
            kind=SpanKind.CLIENT,
            attributes=call_attributes,
            start_time=ns(call_started),
        )
        if error is not None:
            child.set_attribute(ERROR_TYPE, error)
            child.set_status(Status(StatusCode.ERROR, error))
        child.end(end_time=ns(call_ended))
    span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=ns(ended))


def tracer_provider(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
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
    # The sampler the SDK makes of OTEL_TRACES_SAMPLER and _ARG, as it reads them.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    provider = BoundedProvider(
        exporter or ReportedExporter(OTLPSpanExporter(), settings.otel_endpoint),
        resource=resource,
        sampler=KeepRebuilt(configured),
        id_generator=PinnedIds(),
    )
    get_logger().info("tracing_on", endpoint=settings.otel_endpoint)
    return provider


class BoundedProvider(TracerProvider):
    """The SDK's provider exporting in batches, whose shutdown gives the last flush
    LAST_FLUSH_S: the SDK waits for that export however long the exporter retries, and
    shutting the exporter down is what ends its retries."""

    def __init__(self, exporter: SpanExporter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exporter = exporter
        self.add_span_processor(BatchSpanProcessor(exporter))

    def shutdown(self) -> None:
        cut = threading.Timer(LAST_FLUSH_S, self._exporter.shutdown)
        cut.daemon = True
        cut.start()
        try:
            super().shutdown()
        finally:
            cut.cancel()


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
