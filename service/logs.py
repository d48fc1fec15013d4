"""structlog configured once at start: JSON lines in containers, a console renderer in dev."""

from __future__ import annotations

import logging
import sys
from typing import Any, BinaryIO, TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from service.settings import Settings


def configure(settings: Settings, stream: TextIO | None = None) -> None:
    """Route structlog and every stdlib logger (Hypercorn, libraries) to one renderer."""
    out = stream or sys.stdout
    # Bytes straight to the stream's buffer: one access line per request is on the hot path.
    binary: BinaryIO | None = getattr(out, "buffer", None)

    def add_replica(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event.setdefault("replica", settings.replica_id)
        return event

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_replica,
        add_trace_ids,
    ]
    renderer: Processor
    if settings.log_format == "json":
        # Tracebacks go to the log as one string field, never to a client.
        shared.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    level = logging.getLevelNamesMapping()[settings.log_level]
    fast = settings.log_format == "json" and binary is not None
    logger_factory: Any = (
        structlog.BytesLoggerFactory(binary) if fast else structlog.WriteLoggerFactory(out)
    )

    structlog.configure(
        processors=[*shared, renderer if fast else _as_text(renderer)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _as_text(renderer),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Hypercorn ships its own handlers; send its lines through ours instead.
    for name in ("hypercorn.error", "hypercorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


def _as_text(renderer: Processor) -> Processor:
    """orjson renders bytes; text streams and stdlib handlers want str."""

    def render(logger: WrappedLogger, name: str, event: EventDict) -> str:
        rendered = renderer(logger, name, event)
        return rendered.decode() if isinstance(rendered, bytes) else str(rendered)

    return render


def span_ids(span_context: trace.SpanContext) -> dict[str, str]:
    """A span's ids as W3C hex, the form logs, exemplars and trace UIs share."""
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


def add_trace_ids(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The current span's ids, so every line of a request ties back to its trace."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.update(span_ids(span_context))
    return event


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger
