"""The stack on a single-node Docker Swarm, driven through nginx as the compose stack is.

Rollouts and the killed task run under the fault harness's load (an Idempotency-Key
per request, 503 retried with it), and each adds a row to the table printed at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import httpx

from service import __version__
from stack_client import JSON, read_count
from tests.faults.harness import Load
from tests.support import run, wait_until
from tests.swarm.conftest import Scenario
from tests.swarm.swarm_stack import SwarmStack, assert_counted_once, assert_exact

# A rollout waits for each new task's healthcheck and the monitor window (ops/swarm/swarm.yaml).
ROLLOUT_TIMEOUT = 240

NEXT_VERSION = f"{__version__}+next"
# The next release: the same image with another version, which tally_build_info reports.
NEXT_DOCKERFILE = f"""\
ARG BASE
FROM ${{BASE}}
USER root
RUN sed -i 's/^__version__ = .*/__version__ = "{NEXT_VERSION}"/' /app/service/__init__.py \\
    && python -m compileall -q /app/service
USER 10001:10001
"""
# A release whose replicas never turn healthy.
BROKEN_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["false"]
"""


def concurrent_counts(url: str, requests: int, connections: int) -> list[httpx.Response]:
    """`requests` /count at once, each with its own Idempotency-Key and retried with it
    until it answers 200, as the contract asks of a client: each is counted exactly once
    even when a starved machine makes nginx give up on one (502, 504)."""

    async def send() -> list[httpx.Response]:
        # The gate queues the burst here: httpx's own pool slows down with thousands waiting.
        gate = asyncio.Semaphore(connections)
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=10, headers=JSON) as client:

            async def one() -> httpx.Response:
                key = {"Idempotency-Key": uuid.uuid4().hex}
                async with gate:
                    deadline = time.monotonic() + 120
                    while True:
                        try:
                            response = await client.get(f"{url}/count", headers=key)
                        except httpx.TransportError:
                            if time.monotonic() > deadline:
                                raise
                        else:
                            if response.status_code == 200 or time.monotonic() > deadline:
                                return response
                        await asyncio.sleep(0.1)

            return await asyncio.gather(*(one() for _ in range(requests)))

    return asyncio.run(send())


def task_images(stack: SwarmStack) -> set[str]:
    return {
        task["Spec"]["ContainerSpec"]["Image"].split("@")[0] for task in stack.running_tasks("app")
    }


def update(stack: SwarmStack, image: str) -> None:
    run(
        "docker", "service", "update", "--detach", "--no-resolve-image", "--image", image,
        stack.service("app"),
    )  # fmt: skip


def test_2000_concurrent_counts_are_distinct_none_lost_and_every_replica_serves(
    swarm_stack: SwarmStack,
) -> None:
    start = read_count(swarm_stack.url)
    responses = concurrent_counts(swarm_stack.url, 2000, 32)
    assert [r.status_code for r in responses] == [200] * 2000
    values = [r.json()["count"] for r in responses]
    assert len(set(values)) == 2000
    assert read_count(swarm_stack.url) == start + 2000 + 1
    served_by = {r.headers["X-Served-By"] for r in responses}
    assert served_by == set(swarm_stack.containers("app"))
    assert len(served_by) == 3


def test_scaled_to_five_every_task_serves_and_is_scraped_without_touching_nginx(
    swarm_stack: SwarmStack,
) -> None:
    nginx_tasks = swarm_stack.tasks("nginx")
    app = swarm_stack.service("app")
    run("docker", "service", "scale", "--detach", f"{app}=5")
    try:
        # Running, for Swarm, is healthy: only then is a task in DNS for nginx to find.
        wait_until(lambda: len(swarm_stack.running_tasks("app")) == 5, 120, "five tasks healthy")
        replicas = {
            task["Status"]["ContainerStatus"]["ContainerID"][:12]
            for task in swarm_stack.running_tasks("app")
        }
        seen: set[str] = set()

        def all_serve() -> bool:
            with httpx.Client(timeout=5) as client:
                seen.update(
                    client.get(f"{swarm_stack.url}/").headers["X-Served-By"] for _ in range(20)
                )
            return seen >= replicas

        wait_until(all_serve, 15, "all five tasks serving through nginx")
        wait_until(
            lambda: len(swarm_stack.prometheus('up{job="tally"} == 1')) == 5,
            30,
            "Prometheus scraping all five tasks",
        )
        assert swarm_stack.tasks("nginx") == nginx_tasks
    finally:
        run("docker", "service", "scale", "--detach", f"{app}=3")
        wait_until(lambda: len(swarm_stack.containers("app")) == 3, 60, "back to three tasks")


def test_the_locust_suite_passes_against_the_swarm(swarm_stack: SwarmStack) -> None:
    # Balancing and exact counting are what this tier proves on Swarm; latency is the
    # bench's (a node this busy put p99 at 2.2 s against the suite's default 500 ms).
    result = run(
        "make", "load", f"LOAD_HOST={swarm_stack.url}", "USERS=30", "SPAWN_RATE=15",
        "DURATION=15s", check=False, env={**os.environ, "TALLY_MAX_P99_MS": "10000"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for check in ("atomicity", "balancing", "errors_and_latency"):
        assert f"PASS {check}" in result.stdout


def test_a_rolling_update_under_load_fails_nothing_and_the_new_version_serves(
    swarm_stack: SwarmStack, scenarios: list[Scenario]
) -> None:
    image = swarm_stack.build_image("next", NEXT_DOCKERFILE)
    with Load(swarm_stack.url) as load:
        load.run_for(2)
        fault_at = time.monotonic()
        update(swarm_stack, image)
        done = swarm_stack.wait_for_update("app", "completed", ROLLOUT_TIMEOUT)
        # Past nginx's DNS validity (2 s): what it sends now goes to the new tasks only.
        load.run_for(3)
    row = load.row("rolling update to a new image (start-first)", fault_at)
    scenarios.append(Scenario(row, done - fault_at))
    assert_exact(row, load, fault_at)
    assert task_images(swarm_stack) == {image}
    new_tasks = set(swarm_stack.containers("app"))
    served_after = {a.served_by for a in load.attempts if a.started > done + 2.5}
    assert served_after
    assert served_after <= new_tasks
    wait_until(
        lambda: (
            {
                s["metric"]["version"]: s["value"][1]
                for s in swarm_stack.prometheus("count by (version) (tally_build_info)")
            }
            == {NEXT_VERSION: "3"}
        ),
        30,
        f"tally_build_info reporting {NEXT_VERSION} on three tasks",
    )


def test_a_broken_image_rolls_back_by_itself_under_load(
    swarm_stack: SwarmStack, scenarios: list[Scenario]
) -> None:
    before = swarm_stack.service_image("app")
    broken = swarm_stack.build_image("broken", BROKEN_DOCKERFILE)
    with Load(swarm_stack.url) as load:
        load.run_for(2)
        fault_at = time.monotonic()
        update(swarm_stack, broken)
        done = swarm_stack.wait_for_update("app", "rollback_completed", ROLLOUT_TIMEOUT)
        load.run_for(1)
    row = load.row("rollout of an image that never turns healthy", fault_at)
    scenarios.append(Scenario(row, done - fault_at))
    assert_exact(row, load, fault_at)
    assert swarm_stack.service_image("app").split("@")[0] == before.split("@")[0]
    wait_until(
        lambda: (
            task_images(swarm_stack) == {before.split("@")[0]}
            and len(swarm_stack.containers("app")) == 3
        ),
        60,
        "three tasks of the previous image",
    )


def test_a_killed_task_is_replaced_and_nothing_is_lost(
    swarm_stack: SwarmStack, scenarios: list[Scenario]
) -> None:
    tasks = swarm_stack.tasks("app")
    with Load(swarm_stack.url) as load:
        load.run_for(2)
        fault_at = time.monotonic()
        run("docker", "kill", swarm_stack.containers("app")[0])
        wait_until(
            lambda: (
                len(swarm_stack.running_tasks("app")) == 3
                and bool(swarm_stack.tasks("app") - tasks)
            ),
            120,
            "Swarm replacing the killed task",
            interval=0.2,
        )
        replaced = time.monotonic()
        load.run_for(1)
    row = load.row("task killed (docker kill)", fault_at)
    scenarios.append(Scenario(row, replaced - fault_at))
    # A killed task's address stays in nginx's DNS answer for up to 2 s, and a connect
    # to it on the overlay waits out its 1 s timeout: a few 502s, each retried with its key.
    assert_counted_once(row, load, fault_at)


def test_the_count_survives_stack_rm_and_a_fresh_deploy(swarm_stack: SwarmStack) -> None:
    before = read_count(swarm_stack.url)
    swarm_stack.remove()
    swarm_stack.deploy()
    assert read_count(swarm_stack.url) == before + 1
