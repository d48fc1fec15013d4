"""structlog configured once at start: JSON lines in containers, a console renderer in dev."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from service.settings import Settings


def configure(settings: Settings) -> None:
    """Route structlog and every stdlib logger (Hypercorn, libraries) to one renderer."""

    def add_replica(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event.setdefault("replica", settings.replica_id)
        return event

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_replica,
    ]
    renderer: Processor
    if settings.log_format == "json":
        # Tracebacks go to the log as one string field, never to a client.
        shared.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()
    level = logging.getLevelNamesMapping()[settings.log_level]

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger
