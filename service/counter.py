"""Everything that talks to Redis: the visit counter, exactly once per request id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.request_id import record_key
from service.settings import Settings

# INCR and remembering its result under the request id happen in one atomic
# script, so a retried request (nginx proxy_next_upstream, a client retry)
# gets the first answer back and never increments twice.
# Returns {value, replayed}.
_INCREMENT_ONCE = """
local seen = redis.call('GET', KEYS[2])
if seen then
  return {tonumber(seen), 1}
end
local value = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], value, 'EX', ARGV[1])
return {value, 0}
"""


REDIS_OPERATIONS = ("evalsha", "incr", "ping")

# Told of every Redis call: (command, seconds, ok). The metrics hook in here.
Observer = Callable[[str, float, bool], None]


def _ignore(command: str, seconds: float, ok: bool) -> None:
    pass


class RedisUnavailable(Exception):
    """Redis did not answer in time or refused; the caller should answer 503."""


@dataclass(frozen=True)
class Increment:
    value: int
    replayed: bool


class Counter:
    """The visit counter; one per process, opened at start and closed at shutdown."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        ttl: int,
        timeout: float,
        observe: Observer = _ignore,
        tracer: Tracer | None = None,
    ) -> None:
        self._redis = redis
        self._key = key
        self._ttl = ttl
        self._timeout = timeout
        self._observe = observe
        self._tracer = tracer or NoOpTracer()
        self._script = redis.register_script(_INCREMENT_ONCE)
        pool = redis.connection_pool.connection_kwargs
        # Database client span attributes (OpenTelemetry semantic conventions), per operation.
        server: dict[str, str | int] = {
            "db.system.name": "redis",
            "db.namespace": str(pool.get("db", 0)),
            "server.address": str(pool.get("host", pool.get("path", ""))),
            "server.port": int(pool.get("port", 0)),
        }
        self._span_attributes = {
            name: {**server, "db.operation.name": name.upper()} for name in REDIS_OPERATIONS
        }

    @classmethod
    def from_settings(
        cls, settings: Settings, observe: Observer = _ignore, tracer: Tracer | None = None
    ) -> Counter:
        redis = Redis.from_url(
            settings.redis_url,
            username=settings.redis_username,
            password=settings.redis_password,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            # Retries would stretch a request past REDIS_TIMEOUT; a caller
            # gets 503 with Retry-After instead and retries itself.
            retry=Retry(NoBackoff(), 0),
            client_name=f"tally:{settings.replica_id}",
        )
        return cls(
            redis,
            settings.counter_key,
            settings.idempotency_ttl,
            settings.redis_timeout,
            observe,
            tracer,
        )

    async def increment(self, request_id: str | None) -> Increment:
        """Add one visit; with a request id, exactly once for that id."""
        if request_id is None:
            # execute_command: redis-py's incr() sends INCRBY, which the ACL user is not granted.
            command = self._redis.execute_command("INCR", self._key)  # type: ignore[no-untyped-call]
            value = await self._call("incr", command)
            return Increment(int(value), replayed=False)
        value, replayed = await self._call(
            "evalsha",
            self._script(keys=[self._key, record_key(self._key, request_id)], args=[self._ttl]),
        )
        return Increment(int(value), replayed=bool(replayed))

    async def ping(self) -> None:
        """Raise RedisUnavailable unless Redis answers within the timeout."""
        await self._call("ping", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, name: str, command: Any) -> Any:
        # A child of an unsampled request span is never sampled (parent-based
        # sampling): most requests skip making one.
        if not trace.get_current_span().is_recording():
            return await self._timed(name, command)
        with self._tracer.start_as_current_span(
            name.upper(), kind=SpanKind.CLIENT, attributes=self._span_attributes[name]
        ):
            return await self._timed(name, command)

    async def _timed(self, name: str, command: Any) -> Any:
        # socket_timeout bounds each read, but a connect plus a read could
        # take twice that; the outer deadline keeps the whole call within it.
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                result = await command
        except (RedisError, OSError, TimeoutError) as exc:
            self._observe(name, time.perf_counter() - started, False)
            raise RedisUnavailable(type(exc).__name__) from exc
        self._observe(name, time.perf_counter() - started, True)
        return result
