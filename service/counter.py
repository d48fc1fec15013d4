"""Everything that talks to Redis: the visit counter, exactly once per request id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv.attributes.db_attributes import (
    DB_NAMESPACE,
    DB_OPERATION_NAME,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from service.request_id import GENERATED_ID_TTL, record_key
from service.settings import Settings
from service.tracing import TRAIL, Trail

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


class NotReplicated(RedisError):
    """Fewer replicas than required acknowledged the increment within the wait."""


# An increment queued for the next coalesced round trip: its keys, its TTL, where its
# reply goes.
_Queued = tuple[list[str], int, asyncio.Future[Any]]


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
        wait_replicas: int = 0,
        sentinel: Sentinel | None = None,
        coalesce: bool = False,
    ) -> None:
        self._redis = redis
        self._key = key
        self._ttl = ttl
        self._timeout = timeout
        self._wait_replicas = wait_replicas
        # Half the call's budget: Redis answers WAIT with the replicas it has before the
        # client's own deadline cuts the connection, so the pool keeps it.
        self._wait_ms = max(1, int(timeout * 500))
        self._sentinel = sentinel
        self._coalesce = coalesce
        # Coalescing (_coalesced): None while no round trip is in flight, else the
        # increments queued for the next one; and the tasks sending those.
        self._queued: list[_Queued] | None = None
        self._senders: set[asyncio.Future[None]] = set()
        self._observe = observe
        self._tracer = tracer or NoOpTracer()
        self._script = redis.register_script(_INCREMENT_ONCE)
        pool = redis.connection_pool.connection_kwargs
        # Database client span attributes (OpenTelemetry semantic conventions), per operation.
        server: dict[str, str | int] = {
            DB_SYSTEM_NAME: "redis",
            DB_NAMESPACE: str(pool.get("db", 0)),
            SERVER_ADDRESS: str(pool.get("host", pool.get("path", ""))),
            SERVER_PORT: int(pool.get("port", 0)),
        }
        self._span_attributes = {
            name: {**server, DB_OPERATION_NAME: name.upper()} for name in REDIS_OPERATIONS
        }

    @classmethod
    def from_settings(
        cls, settings: Settings, observe: Observer = _ignore, tracer: Tracer | None = None
    ) -> Counter:
        options: dict[str, Any] = {
            "username": settings.redis_username,
            "password": settings.redis_password,
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            # Retries would stretch a request past REDIS_TIMEOUT; a caller
            # gets 503 with Retry-After instead and retries itself.
            "retry": Retry(NoBackoff(), 0),
        }
        client_name = f"tally:{settings.replica_id}"
        sentinel = None
        if settings.redis_sentinels:
            # redis-py asks the Sentinels for the primary on every new connection and
            # drops a connection whose server turned replica (READONLY), so after a
            # failover the pool reconnects to the promoted one by itself. The app
            # authenticates to the Sentinels with its own Redis user.
            # redis-py asks the Sentinels in turn and moves one to the front only once it
            # answered. A Sentinel whose host lost power drops packets while its name still
            # resolves: with the whole REDIS_TIMEOUT to connect to each, a dead first one
            # used every request's budget and counting never resumed (the cluster tier's
            # power cut). The same holds for an answer: a pooled connection to a Sentinel
            # that went away, or one cut off, takes the request nowhere until its read
            # times out. A share each, to connect and to answer, leaves time for the next.
            share = settings.redis_timeout / len(settings.redis_sentinels)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(settings.redis_sentinels),
                sentinel_kwargs={
                    **options,
                    "socket_connect_timeout": share,
                    "socket_timeout": share,
                },
            )
            redis: Redis = sentinel.master_for(
                settings.redis_sentinel_service,
                db=parse_url(settings.redis_url).get("db", 0),
                client_name=client_name,
                **options,
            )
        else:
            redis = Redis.from_url(settings.redis_url, client_name=client_name, **options)
        return cls(
            redis,
            settings.counter_key,
            settings.idempotency_ttl,
            settings.redis_timeout,
            observe,
            tracer,
            settings.redis_wait_replicas,
            sentinel,
            settings.redis_coalesce,
        )

    async def increment(self, request_id: str | None, client_key: bool = True) -> Increment:
        """Add one visit; with a request id, exactly once for that id: for the idempotency
        TTL when a client chose the id (it may retry much later), for GENERATED_ID_TTL when
        the proxy made it (only the proxy retries, within seconds)."""
        if request_id is None:
            # execute_command: redis-py's incr() sends INCRBY, which the ACL user is not granted.
            command = self._redis.execute_command("INCR", self._key)  # type: ignore[no-untyped-call]
            value = await self._call("incr", command)
            return Increment(int(value), replayed=False)
        keys = [self._key, record_key(self._key, request_id)]
        ttl = self._ttl if client_key else GENERATED_ID_TTL
        if self._wait_replicas:
            value, replayed = await self._call("evalsha", self._replicated(keys, ttl))
        elif self._coalesce:
            value, replayed = await self._call("evalsha", self._coalesced(keys, ttl))
        else:
            value, replayed = await self._call("evalsha", self._script(keys=keys, args=[ttl]))
        return Increment(int(value), replayed=bool(replayed))

    async def _coalesced(self, keys: list[str], ttl: int) -> Any:
        """The script, sent at once when no coalesced round trip is in flight; otherwise
        queued, and sent with every increment queued meanwhile in one pipeline as soon as
        that round trip is back. One round trip at a time, so an idle replica sends each
        call alone and a busy one sends the more in each the busier it is. Each caller
        still has its own deadline (_timed) and its own reply; a failed round trip fails
        every call in it, and each caller's retry, with the same id, counts once."""
        if self._queued is not None:
            reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queued.append((keys, ttl, reply))
            return await reply
        self._queued = []
        try:
            return await self._script(keys=keys, args=[ttl])
        finally:
            self._send_queued()

    def _send_queued(self) -> None:
        """The round trip in flight is back: send what queued meanwhile, or stand idle."""
        queued, self._queued = self._queued, None
        if queued:
            self._queued = []
            sender = asyncio.ensure_future(self._pipelined(queued))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _pipelined(self, queued: list[_Queued]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                for keys, ttl, _ in queued:
                    pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, ttl)
                results = await pipe.execute(raise_on_error=False)
                for index, ((keys, ttl, _), result) in enumerate(zip(queued, results, strict=True)):
                    if isinstance(result, NoScriptError):
                        # A promoted replica's or a restarted Redis's empty script cache:
                        # the script ran for none of them; each runs alone, which loads it.
                        try:
                            results[index] = await self._script(keys=keys, args=[ttl])
                        except RedisError as failed:
                            results[index] = failed
        except Exception as exc:
            results = [exc] * len(queued)
        except BaseException:
            # A cancelled sender (the loop closing): its callers see a timeout.
            results = [TimeoutError()] * len(queued)
            raise
        finally:
            for (*_, reply), result in zip(queued, results, strict=True):
                if reply.done():  # its caller's deadline passed
                    continue
                if isinstance(result, Exception):
                    reply.set_exception(result)
                else:
                    reply.set_result(result)
            self._send_queued()

    async def _replicated(self, keys: list[str], ttl: int) -> Any:
        """The script, then WAIT in the same round trip: answered only once enough replicas
        hold the write. A replayed id waits too, since its first answer may not have."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, ttl)
        pipe.execute_command("WAIT", self._wait_replicas, self._wait_ms)
        result, acked = await pipe.execute(raise_on_error=False)
        if isinstance(result, NoScriptError):
            # A promoted replica has an empty script cache: load it, run it, then wait.
            result = await self._script(keys=keys, args=[ttl])
            acked = await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "WAIT", self._wait_replicas, self._wait_ms
            )
        if isinstance(result, Exception):
            raise result
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self._wait_replicas:
            raise NotReplicated(f"{acked} of {self._wait_replicas} replicas acknowledged")
        return result

    async def ping(self) -> None:
        """Raise RedisUnavailable unless Redis answers within the timeout."""
        await self._call("ping", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    async def _call(self, name: str, command: Any) -> Any:
        # A child of an unsampled request span is never sampled (parent-based
        # sampling): most requests skip making one, and leave the call on their trail.
        if not trace.get_current_span().is_recording():
            return await self._timed(name, command, TRAIL.get())
        with self._tracer.start_as_current_span(
            name.upper(), kind=SpanKind.CLIENT, attributes=self._span_attributes[name]
        ) as span:
            try:
                return await self._timed(name, command, None)
            except RedisUnavailable as exc:
                span.set_attribute(ERROR_TYPE, str(exc))  # as a rebuilt trace's call has it
                raise

    async def _timed(self, name: str, command: Any, trail: Trail | None) -> Any:
        # socket_timeout bounds each read, but a connect plus a read could
        # take twice that; the outer deadline keeps the whole call within it.
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                result = await command
        except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: uvloop's, for a write to a pooled connection whose socket the
            # peer already closed ("the handler is closed"), where asyncio's loop raises
            # an OSError. redis-py has dropped that connection; the caller gets a 503.
            ended = time.perf_counter()
            error = type(exc).__name__
            self._observe(name, ended - started, False)
            if trail is not None:
                trail.append((name, self._span_attributes[name], started, ended, error))
            raise RedisUnavailable(error) from exc
        ended = time.perf_counter()
        self._observe(name, ended - started, True)
        if trail is not None:
            trail.append((name, self._span_attributes[name], started, ended, None))
        return result
