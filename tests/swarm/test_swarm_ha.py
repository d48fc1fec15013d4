"""Redis that fails over, on Swarm (ops/swarm/stack-ha.yaml): a stack of its own, its
primary killed under load, the count exact, the killed node back as a replica."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.faults.ha_stack import NODES, SENTINELS, SERVICE
from tests.faults.harness import Load
from tests.support import run, wait_until
from tests.swarm.conftest import Scenario
from tests.swarm.swarm_stack import HA_STACK_FILES, Swarm, SwarmStack, assert_exact

# Sentinel's detection and election, and Swarm starting the killed node's new task.
FAILOVER_DEADLINE = 120


@pytest.fixture(scope="module")
def ha_stack(swarm: Swarm) -> Iterator[SwarmStack]:
    stack = SwarmStack(HA_STACK_FILES)
    try:
        stack.start()
        wait_until(lambda: settled(stack), FAILOVER_DEADLINE, "the HA topology settled", 1)
        yield stack
    finally:
        stack.destroy()


def cli(stack: SwarmStack, service: str, *args: str, port: int = 6379) -> str:
    """redis-cli in the service's running task, as the sentinel user ('' when none answers)."""
    containers = stack.containers(service)
    if not containers:
        return ""
    command = (
        'REDISCLI_AUTH="$(cat /run/secrets/redis_sentinel_password)" '
        f"redis-cli -p {port} --user sentinel --no-auth-warning " + " ".join(args)
    )
    result = run("docker", "exec", containers[0], "sh", "-c", command, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def ip(stack: SwarmStack, service: str) -> str | None:
    containers = stack.containers(service)
    if not containers:
        return None
    out = run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", containers[0])
    networks = json.loads(out.stdout)
    address: str | None = (networks.get(f"{stack.name}_backend") or {}).get("IPAddress")
    return address


def primary(stack: SwarmStack) -> str | None:
    """The node whose address every running Sentinel names as the primary."""
    named = {
        cli(stack, s, "sentinel", "get-master-addr-by-name", SERVICE, port=26379).split("\n")[0]
        for s in SENTINELS
    }
    if len(named) != 1:
        return None
    address = named.pop()
    return next((node for node in NODES if address and ip(stack, node) == address), None)


def settled(stack: SwarmStack) -> bool:
    """One primary named by every Sentinel, with both replicas in sync."""
    node = primary(stack)
    return node is not None and "min_slaves_good_slaves:2" in cli(
        stack, node, "info", "replication"
    )


def test_primary_killed_on_swarm_fails_over_and_loses_nothing(
    ha_stack: SwarmStack, scenarios: list[Scenario]
) -> None:
    old = primary(ha_stack)
    assert old is not None
    with Load(ha_stack.url, give_up_after=FAILOVER_DEADLINE) as load:
        load.run_past(load.started, 2)
        fault_at = time.monotonic()
        run("docker", "kill", "-s", "KILL", ha_stack.containers(old)[0])
        wait_until(
            lambda: primary(ha_stack) not in (None, old),
            FAILOVER_DEADLINE,
            "a replica promoted",
            interval=0.5,
        )
        promoted = time.monotonic()
        load.run_past(promoted, 2)
    row = load.row("Redis primary killed (Sentinel failover)", fault_at)
    scenarios.append(Scenario(row, promoted - fault_at))
    assert_exact(row, load, fault_at)
    # Swarm starts the killed node again; it asks the Sentinels and follows the new primary.
    wait_until(
        lambda: "role:slave" in cli(ha_stack, old, "info", "replication"),
        FAILOVER_DEADLINE,
        f"{old} back as a replica",
        interval=1,
    )
