"""The unit tier's stand-in for Redis: a counter in memory that can be told to fail."""

from __future__ import annotations

from typing import Any

from service.counter import Increment


class FakeCounter:
    def __init__(self) -> None:
        self.value = 0
        self.seen: dict[str, int] = {}
        self.calls: list[str | None] = []
        self.client_keys: list[bool] = []
        self.failure: Exception | None = None

    async def increment(self, request_id: str | None, client_key: bool = True) -> Increment:
        self.calls.append(request_id)
        self.client_keys.append(client_key)
        if self.failure:
            raise self.failure
        if request_id in self.seen:
            return Increment(self.seen[request_id], replayed=True)
        self.value += 1
        if request_id is not None:
            self.seen[request_id] = self.value
        return Increment(self.value, replayed=False)

    async def ping(self) -> None:
        if self.failure:
            raise self.failure

    async def close(self) -> None:
        pass


class FakeRedis:
    """Just enough of redis.asyncio.Redis for the real Counter: answers at once, or raises
    `failure` from every command."""

    def __init__(self) -> None:
        self.value = 0
        self.failure: Exception | None = None
        self.connection_pool = type("Pool", (), {"connection_kwargs": {"host": "redis"}})()

    def register_script(self, _: str) -> Any:
        async def script(keys: list[str], args: list[int]) -> list[int]:
            return [await self.execute_command("INCR"), 0]

        return script

    async def execute_command(self, *_: Any) -> int:
        if self.failure is not None:
            raise self.failure
        self.value += 1
        return self.value

    async def ping(self) -> bool:
        await self.execute_command("PING")
        return True

    async def aclose(self) -> None:
        pass
