"""How the counter reaches Redis, from its settings alone (no I/O: clients connect lazily)."""

from __future__ import annotations

from redis.asyncio.sentinel import SentinelConnectionPool

from service.counter import Counter
from service.settings import Settings


async def test_with_sentinels_the_primary_is_asked_of_them_under_the_configured_name() -> None:
    settings = Settings.from_env({
        "REDIS_URL": "redis://ignored-host:6379/2",
        "REDIS_SENTINELS": "sentinel-1:26379,sentinel-2:26380",
        "REDIS_SENTINEL_SERVICE": "counter",
        "REDIS_USERNAME": "app",
        "REDIS_PASSWORD": "pw",
    })  # fmt: skip
    counter = Counter.from_settings(settings)
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
