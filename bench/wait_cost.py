"""What the durability step costs one increment: tally's own Counter against a real
primary with one replica, REDIS_WAIT_REPLICAS 0 and 1 taking turns in blocks (so both
see the same minutes of a drifting machine), one client, one increment at a time.

    uv run --frozen python bench/wait_cost.py   (WAIT_COST_N increments each, 2000)

The round trips are the same (the WAIT rides in the script's pipeline); what this shows
is the time the primary waits for the replica's acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "loadtest")]
from service.counter import Counter  # noqa: E402
from stack_client import free_port  # noqa: E402

N = int(os.environ.get("WAIT_COST_N", "2000"))
BLOCK = 200


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


async def measure(url: str) -> dict[int, list[float]]:
    redis = Redis.from_url(url)
    counters = {
        wait: Counter(redis, "bench:count", 300, 1.0, wait_replicas=wait) for wait in (0, 1)
    }
    seconds: dict[int, list[float]] = {0: [], 1: []}
    try:
        for _ in range(N // BLOCK):
            for wait, counter in counters.items():
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    await counter.increment(uuid.uuid4().hex)
                    seconds[wait].append(time.perf_counter() - started)
    finally:
        await redis.aclose()
    return seconds


def main() -> None:
    name, port = f"tally-wait-cost-{uuid.uuid4().hex[:6]}", free_port()
    primary, replica = f"{name}-primary", f"{name}-replica"
    try:
        sh("docker", "run", "-d", "--name", primary, "-p", f"127.0.0.1:{port}:6379",
           "redis:8.0", "redis-server", "--save", "", "--appendonly", "yes")  # fmt: skip
        sh("docker", "run", "-d", "--name", replica, "redis:8.0", "redis-server", "--save", "")
        address = sh("docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", primary)
        deadline = time.monotonic() + 60
        while "master_link_status:up" not in sh(
            "docker", "exec", replica, "redis-cli", "info", "replication"
        ):
            sh("docker", "exec", replica, "redis-cli", "replicaof", address, "6379")
            if time.monotonic() > deadline:
                sys.exit("wait_cost: the replica never came in sync")
            time.sleep(0.5)
        seconds = asyncio.run(measure(f"redis://127.0.0.1:{port}/0"))
    finally:
        subprocess.run(("docker", "rm", "-f", primary, replica), capture_output=True, check=False)
    print("| REDIS_WAIT_REPLICAS | increments | median ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for wait, values in seconds.items():
        values.sort()
        median, p99 = statistics.median(values), values[int(len(values) * 0.99)]
        print(f"| {wait} | {len(values)} | {median * 1000:.3f} | {p99 * 1000:.3f} |")


if __name__ == "__main__":
    main()
