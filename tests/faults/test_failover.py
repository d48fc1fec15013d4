"""Redis failover under load through nginx (compose.ha.yaml): a primary, two replicas,
three Sentinels; the app answers an increment only once a replica holds it (WAIT).

Same accounting as test_faults.py: every request has its own Idempotency-Key, 503s are
retried with it, and the count is checked exactly. Each test appends its row to the
table that `make reliability` prints.

Then, on the same stack, `make rotate-secrets` and `make deploy` to a new tag under load:
no failed request, the count exact, replication and the Sentinels on the new passwords,
every replica replaced. They run last: they leave the stack on other passwords and tag.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stack_client import read_count
from tests.dashboards import panel_queries, without_data
from tests.faults.ha_stack import NODES, SENTINELS, HAStack
from tests.faults.harness import MIN_ATTEMPTS, Load, Row, assert_exact, steady
from tests.faults.operations import (
    USERS,
    Operated,
    assert_clean,
    assert_deployed,
    assert_rotated,
    password,
    under_load,
)
from tests.support import run, wait_until

# Sentinel's down-after (2 s) and a failover take seconds; a loaded 2-core machine more.
# The load's clients retry a 503 with its key for as long: a client that gave up earlier
# would leave a request applied once but never acknowledged, which no count can place.
FAILOVER_DEADLINE = 90


class OperatedHAStack(Operated, HAStack):
    """The HA topology under an app image name of its own, for the deploy's tags."""


@pytest.fixture(scope="module")
def ha() -> Iterator[OperatedHAStack]:
    stack = OperatedHAStack()
    with stack:
        yield stack


@pytest.fixture(autouse=True)
def settled(ha: OperatedHAStack) -> None:
    """Every test starts from all nodes and Sentinels up and agreed, every replica ready:
    whatever the test before killed is started again."""
    ha.up()
    wait_until(ha.settled, FAILOVER_DEADLINE, "the HA topology settled", interval=0.5)
    wait_until(lambda: steady(ha.url), 60, "every replica ready")


def served_again(load: Load, fault_at: float) -> None:
    """Enough 200s after the fault, however long the failover took on this machine."""
    wait_until(
        lambda: (
            sum(1 for a in load.attempts if a.status == 200 and a.started > fault_at)
            >= MIN_ATTEMPTS
        ),
        FAILOVER_DEADLINE,
        "200s again after the fault",
    )


def assert_only_retryable(load: Load, fault_at: float) -> None:
    """Between the fault and the failover every failed attempt was a replica's 503 with
    Retry-After: nothing hung until the client's own timeout, nothing else failed."""
    failed = [a for a in load.attempts if a.status != 200]
    retryable = [a for a in failed if a.status == 503 and a.retry_after and a.served_by]
    assert failed == retryable, load.failures(fault_at)
    assert load.unresolved == 0


def test_primary_sigkill_fails_over_and_loses_no_acknowledged_increment(
    ha: HAStack, report: list[Row]
) -> None:
    old, old_ip = ha.primary(), ha.primary_ip()
    with Load(ha.url, give_up_after=FAILOVER_DEADLINE) as load:
        load.run_past(load.started, 2)
        fault_at = time.monotonic()
        run("docker", "kill", "-s", "KILL", ha.container(old))
        wait_until(
            lambda: ha.primary_ip() not in (None, old_ip),
            FAILOVER_DEADLINE,
            "a replica promoted",
            interval=0.2,
        )
        new = ha.primary()
        served_again(load, fault_at)
    row = load.row("primary SIGKILL (Sentinel failover)", fault_at)
    report.append(row)
    assert new != old
    assert_only_retryable(load, fault_at)
    assert_exact(row, load, fault_at)
    # The killed node comes back as a replica of the promoted one.
    ha.up()
    wait_until(lambda: ha.role(old) == "slave", FAILOVER_DEADLINE, f"{old} back as a replica")


def test_primary_cut_off_from_the_network_no_split_brain(ha: HAStack, report: list[Row]) -> None:
    old, old_ip = ha.primary(), ha.primary_ip()
    container = ha.container(old)
    with Load(ha.url, give_up_after=FAILOVER_DEADLINE) as load:
        load.run_past(load.started, 2)
        fault_at = time.monotonic()
        run("docker", "network", "disconnect", ha.network, container)
        try:
            wait_until(
                lambda: ha.primary_ip() not in (None, old_ip),
                FAILOVER_DEADLINE,
                "a replica promoted",
                interval=0.2,
            )
            served_again(load, fault_at)
        finally:
            run("docker", "network", "connect", ha.network, container)
        # Back on the network, the old primary is told by the Sentinels to follow the new one.
        wait_until(lambda: ha.role(old) == "slave", FAILOVER_DEADLINE, f"{old} a replica again")
    row = load.row("primary cut off (network disconnect)", fault_at)
    report.append(row)
    assert_only_retryable(load, fault_at)
    assert_exact(row, load, fault_at)


def test_one_sentinel_killed_changes_nothing_for_clients(ha: HAStack, report: list[Row]) -> None:
    primary = ha.primary()
    with Load(ha.url, give_up_after=FAILOVER_DEADLINE) as load:
        load.run_past(load.started, 2)
        fault_at = time.monotonic()
        run("docker", "kill", "-s", "KILL", ha.container("sentinel-1"))
        served_again(load, fault_at)
    row = load.row("one Sentinel killed", fault_at)
    report.append(row)
    # No failover, and nothing but the 503s a busy machine gives anyway (a WAIT past its
    # time), usually none.
    assert ha.primary() == primary
    assert_only_retryable(load, fault_at)
    assert_exact(row, load, fault_at)


def test_replica_killed_writes_go_on_with_the_other_replica(ha: HAStack, report: list[Row]) -> None:
    primary = ha.primary()
    replica = next(node for node in ("redis", "redis-2", "redis-3") if node != primary)
    with Load(ha.url, give_up_after=FAILOVER_DEADLINE) as load:
        load.run_past(load.started, 2)
        fault_at = time.monotonic()
        run("docker", "kill", "-s", "KILL", ha.container(replica))
        served_again(load, fault_at)
    row = load.row("one replica killed (WAIT 1, 2 replicas)", fault_at)
    report.append(row)
    # WAIT 1 and min-replicas-to-write 1: the other replica acknowledges every write, so
    # writes go on; any failure is a retryable 503 (a busy machine's late WAIT).
    assert ha.primary() == primary
    assert_only_retryable(load, fault_at)
    assert_exact(row, load, fault_at)


def test_prometheus_sees_every_node_and_the_failover(ha: HAStack) -> None:
    """Every node and Sentinel scraped, every Redis panel (the replication dashboard's
    too) answered; a primary killed shows as another node's role and as an alert."""
    wait_until(
        lambda: (
            {s["metric"]["instance"] for s in ha.query("redis_up == 1")} == {*NODES, *SENTINELS}
        ),
        60,
        "every Redis node and Sentinel scraped",
    )
    read_count(ha.url)  # the counter exists, so the keyspace panels have a series
    queries = list(panel_queries(tag="redis"))
    wait_until(
        lambda: not without_data(queries, ha.query),
        90,
        "every Redis dashboard query to return data",
        interval=2,
    )

    def primaries() -> set[str]:
        found = ha.query('redis_instance_info{job="redis", role="master"}')
        return {sample["metric"]["instance"] for sample in found}

    old = ha.primary()
    assert primaries() == {old}
    run("docker", "kill", "-s", "KILL", ha.container(old))
    wait_until(
        lambda: len(primaries()) == 1 and old not in primaries(),
        FAILOVER_DEADLINE,
        "Prometheus to see a replica promoted",
        interval=1,
    )
    wait_until(
        lambda: ha.query('ALERTS{alertname="TallyRedisFailover", alertstate="firing"}'),
        60,
        "TallyRedisFailover firing",
        interval=1,
    )


def test_rotate_secrets_on_the_ha_topology_moves_replication_and_sentinels(
    ha: OperatedHAStack,
) -> None:
    old = {user: password(ha, name) for user, name in USERS.items()}
    with under_load(ha.url) as loads:
        result = ha.make("rotate-secrets")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    row = loads.row("make rotate-secrets, HA topology")
    assert_clean(row, loads)
    assert_rotated(ha, old, (*NODES, *SENTINELS))
    # Each replica logs in to the primary again, now with the new masterauth.
    primary = ha.primary()
    for node in NODES:
        if node != primary:
            ha.cli(node, "client", "kill", "type", "master")
    wait_until(ha.settled, 120, "both replicas back in sync, a quorum", 1)


def test_deploy_to_a_new_tag_on_the_ha_topology_fails_no_request(ha: OperatedHAStack) -> None:
    assert_deployed(ha, "make deploy, HA topology")
