"""Redis failover under load through nginx (compose.ha.yaml): a primary, two replicas,
three Sentinels; the app answers an increment only once a replica holds it (WAIT).

Same accounting as test_faults.py: every request has its own Idempotency-Key, 503s are
retried with it, and the count is checked exactly. Each test appends its row to the
table that `make reliability` prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stack_client import read_count
from tests.dashboards import panel_queries, without_data
from tests.faults.ha_stack import NODES, SENTINELS, HAStack
from tests.faults.harness import MIN_ATTEMPTS, Load, Row, assert_exact
from tests.support import run, wait_until

# Sentinel's down-after (2 s) and a failover take seconds; a loaded 2-core machine more.
# The load's clients retry a 503 with its key for as long: a client that gave up earlier
# would leave a request applied once but never acknowledged, which no count can place.
FAILOVER_DEADLINE = 90


@pytest.fixture(scope="module")
def ha() -> Iterator[HAStack]:
    stack = HAStack()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop("-v")


@pytest.fixture(autouse=True)
def settled(ha: HAStack) -> Iterator[None]:
    """Every fault starts from, and leaves behind, all nodes and Sentinels up and agreed."""
    ha.up()
    wait_until(ha.settled, FAILOVER_DEADLINE, "the HA topology settled", interval=0.5)
    yield
    ha.up()


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
