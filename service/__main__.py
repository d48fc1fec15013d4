"""Entry point: `python -m service` reads the settings and serves the app with Hypercorn."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from service import logs, one_write, tracing
from service.app import create_app
from service.settings import EX_CONFIG, ConfigError, Settings


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"0.0.0.0:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    # Longer than nginx's upstream keepalive_timeout, so nginx always closes an
    # idle connection first and never reuses one that we are closing.
    config.keep_alive_timeout = 75
    # Hypercorn closes a connection after 1,000 requests by default; nginx keeps its
    # upstream connections for 100,000 (keepalive_requests), so it retires them itself
    # instead of reconnecting to a replica every few seconds under load.
    config.keep_alive_max_requests = 100_000
    config.accesslog = None  # the app writes one structured access line per request
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return config


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = logs.get_logger()
    log.info("starting", port=settings.port, redis_timeout=settings.redis_timeout)
    # On SIGTERM Hypercorn stops accepting, lets in-flight requests finish within
    # graceful_timeout, then runs after_serving (which closes the Redis pool).
    app = create_app(settings, tracer_provider=tracing.tracer_provider(settings))
    one_write.install(settings.hypercorn_one_write)
    await serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
    log.info("stopped")


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"tally: configuration error: {exc}", file=sys.stderr)
        sys.exit(EX_CONFIG)
    logs.configure(settings)
    if settings.reload:
        # Dev only: Hypercorn's own runner restarts the process when a source file changes.
        from hypercorn.run import run as run_with_reloader

        config = hypercorn_config(settings)
        config.application_path = "service.asgi:app"
        config.use_reloader = True
        sys.exit(run_with_reloader(config))
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
