"""Alerts reach a person: real faults on the stack, and Alertmanager's notifications at the
webhook receiver double (switched on with its secret file, as a user does).

Each wait's deadline is the alert's own `for` plus a scrape, an evaluation and
Alertmanager's group wait (tests/stack/compose.alerts.yaml shortens the latter), with a
margin for this machine: polls with a deadline, never a client-side timing assertion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.compose_stack import Stack
from tests.support import ROOT, run, wait_until

PROMETHEUS = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())["global"]
# One scrape and one evaluation, each in seconds.
PIPELINE = int(PROMETHEUS["scrape_interval"][:-1]) + int(PROMETHEUS["evaluation_interval"][:-1])
# Alertmanager's group wait under the test override, and room for this slow machine.
GROUP_WAIT = 1
MARGIN = 60


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def rule(alertname: str, **labels: str) -> dict[str, Any]:
    """The alerting rule of that name (and labels) from the shipped rule files."""
    for path in sorted((ROOT / "ops/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for found in group["rules"]:
                if found.get("alert") == alertname and labels.items() <= found["labels"].items():
                    return found  # type: ignore[no-any-return]
    raise AssertionError(f"no rule {alertname} {labels}")


def deadline(alertname: str, **labels: str) -> int:
    return seconds(rule(alertname, **labels)["for"]) + PIPELINE + GROUP_WAIT + MARGIN


def notified(
    stack: Stack, alertname: str, status: str, after: int = 0, **labels: str
) -> dict[str, Any] | None:
    """The first notification carrying that alert in that status (firing or resolved),
    among those after the first `after` (the ones before a fault are not its doing)."""
    for notification in stack.notifications()[after:]:
        for alert in notification["alerts"]:
            if (
                alert["labels"]["alertname"] == alertname
                and alert["status"] == status
                and labels.items() <= alert["labels"].items()
            ):
                found: dict[str, Any] = notification
                return found
    return None


def running_replicas_healthy(stack: Stack) -> bool:
    ids = [row["ID"] for row in stack.containers("app")]
    states = run("docker", "inspect", "-f", "{{.State.Health.Status}}", *ids).stdout.split()
    return all(state == "healthy" for state in states)


@pytest.fixture
def restore(stack: Stack) -> Iterator[None]:
    """Other stack tests share this stack: bring every service back, whatever happened.
    Requested before `traffic`, so it runs once the traffic has stopped; the replicas that
    kept running may have missed probes on a busy machine, and `up --wait` gives up on a
    container it finds unhealthy, so they get the time to pass one first."""
    yield
    wait_until(lambda: running_replicas_healthy(stack), 120, "running replicas healthy", 1)
    stack.up()
    wait_until(lambda: len(stack.app_targets_up()) == 3, 60, "3 app targets up again")


def test_a_killed_replica_notifies_replica_down_without_all_down(
    stack: Stack, restore: None, traffic: None
) -> None:
    wait_until(lambda: len(stack.app_targets_up()) == 3, 60, "3 app targets up in Prometheus")
    victim = stack.containers("app")[0]["ID"]
    replica = victim[:12]  # its hostname: the replica id
    # A stack started on a busy machine may have paged "all down" before its replicas were up.
    before = len(stack.notifications())
    run("docker", "kill", victim)

    found = wait_until(
        lambda: notified(stack, "TallyReplicaDown", "firing", before, replica=replica),
        deadline("TallyReplicaDown"),
        f"TallyReplicaDown for {replica} at the webhook",
        interval=1,
    )
    assert found is not None
    assert found["receiver"] == "ticket"
    assert notified(stack, "TallyAllReplicasDown", "firing", before) is None


def test_redis_stopped_pages_redis_down_and_the_availability_burn_and_redis_down_resolves(
    stack: Stack, restore: None, traffic: None
) -> None:
    page = {"severity": "page", "window": "1h"}
    wait_until(lambda: stack.query('redis_up{job="redis"} == 1'), 60, "redis_up == 1")
    before = len(stack.notifications())
    stack.compose("stop", "redis")

    redis_down = wait_until(
        lambda: notified(stack, "TallyRedisDown", "firing", before),
        deadline("TallyRedisDown"),
        "TallyRedisDown at the webhook",
        interval=1,
    )
    assert redis_down is not None
    assert redis_down["receiver"] == "page"
    burn = wait_until(
        lambda: notified(stack, "TallyAvailabilityBudgetBurn", "firing", before, **page),
        deadline("TallyAvailabilityBudgetBurn", **page),
        "the availability page (14.4x over 1h and 5m) at the webhook",
        interval=1,
    )
    assert burn is not None
    assert burn["receiver"] == "page"
    alert = next(a for a in burn["alerts"] if a["labels"]["alertname"].endswith("BudgetBurn"))
    assert alert["annotations"]["runbook_url"] == "docs/RUNBOOK.md#tallyavailabilitybudgetburn"

    stack.compose("start", "redis")
    wait_until(
        lambda: notified(stack, "TallyRedisDown", "resolved", before),
        60 + PIPELINE + MARGIN,
        "TallyRedisDown resolved at the webhook",
        interval=1,
    )
    # The page's end is the rule's (promtool's "is resolved once its 5m window holds none
    # of it"): waiting for it here would add that window to this tier for no other check.
