"""`make deploy` to a new tag and `make rotate-secrets` on the Redis failover topology
(compose.ha.yaml) under load through nginx: no failed request, the count exact, every
replica replaced, replication and the Sentinels on the new passwords."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.ha_stack import NODES, SENTINELS, HAStack
from tests.faults.harness import steady
from tests.faults.operations import (
    USERS,
    Operated,
    assert_clean,
    assert_rotated,
    password,
    under_load,
)
from tests.support import wait_until


class OperatedHAStack(Operated, HAStack):
    """The HA topology under an app image name of its own."""


@pytest.fixture(scope="module")
def ha_stack() -> Iterator[OperatedHAStack]:
    stack = OperatedHAStack()
    with stack:
        wait_until(stack.settled, 180, "the primary with both replicas and a quorum", 1)
        wait_until(lambda: steady(stack.url), 60, "every replica ready")
        yield stack


def test_deploy_to_a_new_tag_on_the_ha_topology_fails_no_request(ha_stack: OperatedHAStack) -> None:
    tag = {"TALLY_VERSION": "0.1.0-deploy"}
    ha_stack.compose("build", "app", env=tag)  # before the load: see test_operations.py
    before = ha_stack.replicas()
    with under_load(ha_stack.url) as loads:
        result = ha_stack.make("deploy", env=tag)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make deploy, HA topology")
    assert_clean(row, loads)
    after = ha_stack.replicas()
    assert len(after) == len(before)
    assert {r["image"] for r in after} == {ha_stack.image_id("0.1.0-deploy")}
    assert not {r["hostname"] for r in after} & {r["hostname"] for r in before}


def test_rotate_secrets_on_the_ha_topology_moves_replication_and_sentinels(
    ha_stack: OperatedHAStack,
) -> None:
    old = {user: password(ha_stack, name) for user, name in USERS.items()}
    with under_load(ha_stack.url) as loads:
        result = ha_stack.make("rotate-secrets")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make rotate-secrets, HA topology")
    assert_clean(row, loads)
    assert_rotated(ha_stack, old, (*NODES, *SENTINELS))
    # Each replica logs in to the primary again, now with the new masterauth.
    primary = ha_stack.primary()
    for node in NODES:
        if node != primary:
            ha_stack.cli(node, "client", "kill", "type", "master")
    wait_until(ha_stack.settled, 120, "both replicas back in sync, a quorum", 1)
