"""How the counter reaches Redis, from its settings alone (clients connect lazily), and
how it finds the primary when a Sentinel does not answer (stand-ins on localhost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from service.counter import Counter
from service.settings import Settings


def with_sentinels(sentinels: str, **env: str) -> Counter:
    """The counter as a replica of the HA topology makes it: `counter` asked of `sentinels`,
    the app's own user to log in to them."""
    return Counter.from_settings(Settings.from_env({
        "REDIS_SENTINELS": sentinels,
        "REDIS_SENTINEL_SERVICE": "counter",
        "REDIS_USERNAME": "app",
        "REDIS_PASSWORD": "pw",
        **env,
    }))  # fmt: skip


async def test_with_sentinels_the_primary_is_asked_of_them_under_the_configured_name() -> None:
    counter = with_sentinels(
        "sentinel-1:26379,sentinel-2:26380", REDIS_URL="redis://ignored-host:6379/2"
    )
    try:
        pool = counter._redis.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "counter"
        assert pool.connection_kwargs["db"] == 2
        assert pool.connection_kwargs["username"] == "app"
        sentinels = pool.sentinel_manager.sentinels
        addresses = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ]
        assert addresses == [("sentinel-1", 26379), ("sentinel-2", 26380)]
        # The app logs in to the Sentinels as its own user, with the same timeouts.
        assert all(s.connection_pool.connection_kwargs["username"] == "app" for s in sentinels)
    finally:
        await counter.close()


async def test_without_sentinels_the_counter_talks_to_redis_url() -> None:
    counter = Counter.from_settings(Settings.from_env({"REDIS_URL": "redis://cache:6380/1"}))
    try:
        pool = counter._redis.connection_pool
        assert not isinstance(pool, SentinelConnectionPool)
        assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"]) == ("cache", 6380)
    finally:
        await counter.close()


# What one Sentinel, asked for its primaries, says: `counter` is at 10.0.0.9:6379.
MASTERS = [
    b"name", b"counter", b"ip", b"10.0.0.9", b"port", b"6379",
    b"flags", b"master", b"num-other-sentinels", b"2",
]  # fmt: skip
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def resp(items: list[bytes]) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(item), item) for item in items)


async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Sentinel stand-in: the handshake, then the primary to SENTINEL MASTERS."""
    while header := await reader.readline():
        words = [
            (await reader.readexactly(int((await reader.readline())[1:]) + 2))[:-2].upper()
            for _ in range(int(header[1:]))
        ]
        if words[0] == b"HELLO":  # RESP3, as the counter speaks it
            writer.write(b"%1\r\n" + resp([b"proto"]) + b":3\r\n")
        elif words[:2] == [b"SENTINEL", b"MASTERS"]:
            writer.write(b"*1\r\n%%%d\r\n" % (len(MASTERS) // 2) + resp(MASTERS))
        else:
            writer.write(b"+OK\r\n")
        await writer.drain()


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Sentinel that went away while the connection to it stayed open: it reads and never
    answers, as a pooled connection to a host that lost power or was cut off does."""
    while await reader.read(4096):
        pass


@pytest.fixture
async def sentinels() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        servers.append(await asyncio.start_server(handler, "127.0.0.1", 0))
        return f"127.0.0.1:{servers[-1].sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def test_a_sentinel_that_never_answers_leaves_the_request_time_to_ask_the_next(
    sentinels: Callable[[Handler], Awaitable[str]],
) -> None:
    silent, alive = await sentinels(never_answers), await sentinels(answers)
    counter = with_sentinels(f"{silent},{alive}")
    try:
        assert counter._sentinel is not None
        # Within one request's budget (REDIS_TIMEOUT), as a new connection to the primary asks.
        async with asyncio.timeout(counter._timeout):
            address = await counter._sentinel.discover_master("counter")
        assert address == ("10.0.0.9", 6379)
    finally:
        await counter.close()
