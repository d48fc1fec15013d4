"""Load through nginx while a fault is injected, and exact accounting of what was counted.

Every logical request carries its own Idempotency-Key. A 503 is retried with the
same key after a short pause, as the contract intends, and so is a connection
that died under the client (a well-behaved client retries an idempotent request):
then each logical request is counted exactly once, even when Redis ran a command
whose answer timed out. Anything else would show up as lost or double-counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from stack_client import JSON, read_count
from tests.support import wait_until

# Seconds a read of the counter retries (with one key) while a fault lasts.
READ_RETRY = 15.0
# Attempts each side of a fault (8 connections, 6 rounds and more): the load runs until it
# has made them, however slow the machine is at that moment.
MIN_ATTEMPTS = 50
# How long a load may take to make its attempts before it counts as stalled.
STALLED = 60.0


@dataclass
class Attempt:
    started: float
    latency: float
    status: int  # 0: the connection failed
    request_id: str  # the Idempotency-Key, which nginx passes on as X-Request-ID
    retry_after: str | None
    served_by: str | None = None  # None: nginx answered itself (or nobody did)


@dataclass
class Row:
    fault: str
    requests: int
    attempts: int
    errors: int
    lost: int
    double_counted: int
    recovery_s: float
    max_latency_s: float
    rate: float

    def cells(self) -> list[str]:
        return [
            self.fault, str(self.requests), str(self.attempts), str(self.errors),
            str(self.lost), str(self.double_counted), f"{self.recovery_s:.2f}",
            f"{self.max_latency_s:.3f}", f"{self.rate:.0f}",
        ]  # fmt: skip


HEADER = [
    "fault", "requests", "attempts", "errors", "lost", "double-counted",
    "recovery (s)", "max latency (s)", "req/s",
]  # fmt: skip


def steady(url: str, rounds: int = 3, concurrency: int = 30) -> bool:
    """Rounds of concurrent /readyz all 200: every pooled Redis connection of every replica
    (not just the one a sequential client would reuse) answers again after a fault."""

    async def probe() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(rounds):
                answers = await asyncio.gather(
                    *(client.get(f"{url}/readyz") for _ in range(concurrency))
                )
                if any(answer.status_code != 200 for answer in answers):
                    return False
        return True

    return asyncio.run(probe())


@dataclass
class Load:
    url: str
    concurrency: int = 8
    retry: bool = True
    give_up_after: float = 15.0
    stalled: float = STALLED
    attempts: list[Attempt] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    unresolved: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> Load:
        self.start_count = read_count(self.url, retry_for=READ_RETRY)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.stopped = time.monotonic()

    def run_for(self, seconds: float) -> None:
        """Let the load run for `seconds` while the caller holds off (its thread does the work)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)

    def run_past(self, since: float, seconds: float, attempts: int = MIN_ATTEMPTS) -> None:
        """Run `seconds` more, then on until `attempts` attempts have started since `since`:
        a floor the load reaches by itself rather than a rate this machine must keep."""
        self.run_for(seconds)
        wait_until(
            lambda: sum(1 for a in self.attempts if a.started >= since) >= attempts,
            self.stalled, f"{attempts} attempts since +{since - self.started:.1f}s",
        )  # fmt: skip

    def run_until_served(self, since: float) -> None:
        """Run until an attempt started after `since` gets a 200: the service recovered."""
        wait_until(
            lambda: any(a.status == 200 and a.started > since for a in self.attempts),
            self.stalled, "a 200 after the fault was over",
        )  # fmt: skip

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=10, headers=JSON) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.concurrency)))

    def _target(self, turn: int) -> str:
        """Where an attempt goes (one stack here; a subclass may spread over several)."""
        return self.url

    def _unreachable(self, url: str) -> None:
        """Told when an attempt at `url` got no answer at all."""

    async def _worker(self, client: httpx.AsyncClient, worker: int) -> None:
        turn = worker
        while not self._stop.is_set():
            key = uuid.uuid4().hex
            give_up = time.monotonic() + self.give_up_after
            while True:
                turn += 1
                url = self._target(turn)
                started = time.monotonic()
                try:
                    response = await client.get(f"{url}/count", headers={"Idempotency-Key": key})
                    status = response.status_code
                    retry_after = response.headers.get("Retry-After")
                    served_by = response.headers.get("X-Served-By")
                except httpx.TransportError:
                    status, retry_after, served_by = 0, None, None
                    self._unreachable(url)
                self.attempts.append(
                    Attempt(
                        started, time.monotonic() - started, status, key, retry_after, served_by
                    )
                )
                if status == 200:
                    self.acked[key] = response.json()["count"]
                    break
                if not self.retry or time.monotonic() > give_up:
                    self.unresolved += 1
                    break
                await asyncio.sleep(0.1)

    def attempts_around(self, fault_at: float) -> tuple[int, int]:
        """How many attempts started before the fault and how many after it."""
        before = sum(1 for a in self.attempts if a.started < fault_at)
        return before, len(self.attempts) - before

    def failures(self, fault_at: float) -> list[str]:
        """The attempts that did not get a 200: when (after the fault), what, and from whom."""
        return [
            f"+{a.started - fault_at:.3f}s status={a.status or 'connection failed'}"
            f" served_by={a.served_by or 'nginx/none'} latency={a.latency:.3f}s"
            for a in self.attempts
            if a.status != 200
        ]

    def row(self, fault: str, fault_at: float, end_count: int | None = None) -> Row:
        """Account for the run: `end_count` is read through the API unless given."""
        end = read_count(self.url, retry_for=READ_RETRY) if end_count is None else end_count
        values = list(self.acked.values())
        expected = self.start_count + len(values) + (1 if end_count is None else 0)
        duplicates = sum(n - 1 for n in Counter(values).values() if n > 1)
        failed = [a for a in self.attempts if a.status != 200]
        last_failure = max((a.started + a.latency for a in failed), default=fault_at)
        elapsed = self.stopped - self.started
        return Row(
            fault=fault,
            requests=len(values) + self.unresolved,
            attempts=len(self.attempts),
            errors=len(failed),
            lost=max(0, expected - end),
            double_counted=duplicates + max(0, end - expected),
            recovery_s=max(0.0, last_failure - fault_at) if failed else 0.0,
            max_latency_s=max((a.latency for a in self.attempts), default=0.0),
            rate=len(self.attempts) / elapsed if elapsed else 0.0,
        )


def assert_under_load(load: Load, fault_at: float, after: bool = True) -> None:
    """The fault landed inside a running load, not before it began or after it stalled.
    A count, not a rate: this machine's speed drifts by 2x within a day."""
    before, since = load.attempts_around(fault_at)
    assert before >= MIN_ATTEMPTS, f"load too light: {before} attempts before the fault"
    if after:
        assert since >= MIN_ATTEMPTS, f"load too light: {since} attempts after the fault"


def assert_exact(row: Row, load: Load, fault_at: float) -> None:
    """Under load across the fault, and every request counted exactly once."""
    assert_under_load(load, fault_at)
    assert row.lost == 0
    assert row.double_counted == 0
