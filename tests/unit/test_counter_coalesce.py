"""REDIS_COALESCE: calls that arrive while one is in flight share the next round trip,
each with its own reply, and a failure or a deadline reaches each of them as its own."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError, NoScriptError

from service.counter import Counter, Increment, RedisUnavailable
from tests.unit.fakes import FakeRedis


class ScriptRedis(FakeRedis):
    """The exactly-once script's effect in memory, with round trips that wait on `gate`,
    can fail (`failure`), and can find the script cache empty."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, int] = {}
        self.round_trips: list[int] = []  # how many calls each round trip carried
        self.gate = asyncio.Event()
        self.gate.set()
        self.cache_empty = False
        self.restart_after_next_call = False  # Redis restarts, its script cache empty

    async def round_trip(self, calls: int) -> None:
        self.round_trips.append(calls)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure

    def run(self, record: str) -> list[int]:
        if record in self.seen:
            return [self.seen[record], 1]
        self.value += 1
        self.seen[record] = self.value
        return [self.value, 0]

    def register_script(self, _: str) -> Any:
        redis = self

        class Script:
            sha = "sha1-of-the-script"

            async def __call__(self, keys: list[str], args: list[int]) -> list[int]:
                await redis.round_trip(1)
                # redis-py's Script loads the script on NOSCRIPT, then runs it.
                answer = redis.run(keys[1])
                redis.cache_empty = redis.restart_after_next_call
                redis.restart_after_next_call = False
                return answer

        return Script()

    def pipeline(self, transaction: bool) -> Any:
        redis = self
        calls: list[tuple[Any, ...]] = []

        class Pipeline:
            def execute_command(self, *args: Any) -> None:
                calls.append(args)

            async def execute(self, raise_on_error: bool) -> list[Any]:
                assert not raise_on_error
                await redis.round_trip(len(calls))
                if redis.cache_empty:
                    return [NoScriptError("No matching script.") for _ in calls]
                # EVALSHA sha numkeys counter-key record-key ttl
                return [redis.run(call[4]) for call in calls]

        return Pipeline()


@pytest.fixture
def redis() -> ScriptRedis:
    return ScriptRedis()


def coalescing(redis: ScriptRedis, timeout: float = 5.0) -> Counter:
    return Counter(cast(Any, redis), "visitor_count", 300, timeout, coalesce=True)


async def started(counter: Counter, *ids: str) -> list[asyncio.Task[Increment]]:
    """Each id's increment under way, in order, each past its first step."""
    tasks = []
    for request_id in ids:
        tasks.append(asyncio.create_task(counter.increment(request_id)))
        await asyncio.sleep(0)
    return tasks


async def test_calls_arriving_while_one_is_in_flight_share_the_next_round_trip(
    redis: ScriptRedis,
) -> None:
    counter = coalescing(redis)
    assert await counter.increment("alone") == Increment(1, replayed=False)
    redis.gate.clear()
    first, *queued = await started(counter, "a", "b", "c", "b")
    redis.gate.set()
    assert await first == Increment(2, replayed=False)
    answers = await asyncio.gather(*queued)
    assert answers[:2] == [Increment(3, replayed=False), Increment(4, replayed=False)]
    assert answers[2] == Increment(3, replayed=True)  # "b" again, in the same round trip
    assert await counter.increment("idle again") == Increment(5, replayed=False)
    assert redis.round_trips == [1, 1, 3, 1]


async def test_a_failed_round_trip_fails_every_call_in_it_then_counting_resumes(
    redis: ScriptRedis,
) -> None:
    counter = coalescing(redis)
    redis.gate.clear()
    tasks = await started(counter, "a", "b", "c")
    redis.failure = ConnectionError("Connection closed by server.")
    redis.gate.set()
    for task in tasks:
        with pytest.raises(RedisUnavailable, match=r"^ConnectionError$"):
            await task
    redis.failure = None
    assert await counter.increment("after") == Increment(1, replayed=False)
    assert redis.round_trips == [1, 2, 1]


async def test_an_empty_script_cache_runs_each_queued_call_alone(redis: ScriptRedis) -> None:
    counter = coalescing(redis)
    redis.gate.clear()
    first, *queued = await started(counter, "a", "b", "c")
    redis.restart_after_next_call = True  # between the first call and the pipeline
    redis.gate.set()
    assert await first == Increment(1, replayed=False)
    assert await asyncio.gather(*queued) == [
        Increment(2, replayed=False),
        Increment(3, replayed=False),
    ]
    assert redis.round_trips == [1, 2, 1, 1]


async def test_a_queued_call_is_answered_by_its_own_deadline(redis: ScriptRedis) -> None:
    counter = coalescing(redis, timeout=0.05)
    redis.gate.clear()  # Redis stops answering
    tasks = await started(counter, "a", "b", "c")
    for task in tasks:
        with pytest.raises(RedisUnavailable, match=r"^TimeoutError$"):
            await task
    redis.gate.set()
    # The round trip in flight when they gave up may still land, as an uncoalesced call's
    # may: their retries, with the same ids, then replay it.
    after = await counter.increment("after")
    assert after == Increment(redis.value, replayed=False)
