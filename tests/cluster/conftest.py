"""The cluster tier's hosts, swarm and stack, made once per session and always removed;
the table of its faults."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cluster.cluster_stack import ClusterStack
from tests.cluster.hosts import Cluster
from tests.faults.harness import Row
from tests.results import record_table

# What the nodes run besides the app image, copied from this machine's engine.
IMAGES = ("redis:8.0", "nginx:1.30")


HEADER = ("fault", "requests", "retries", "failed", "lost", "double-counted",
          "last error after (s)", "last 5xx after (s)", "every host answers after (s)")  # fmt: skip


@dataclass
class Fault:
    """A fault's row: requests given up on, the last 5xx the stack answered, and how long
    after the fault every host answered /readyz again."""

    row: Row
    failed: int
    last_5xx_s: float
    every_host_s: float

    def cells(self) -> list[str]:
        row = self.row
        return [
            row.fault, str(row.requests), str(row.attempts - row.requests), str(self.failed),
            str(row.lost), str(row.double_counted), f"{row.recovery_s:.1f}",
            f"{self.last_5xx_s:.1f}", f"{self.every_host_s:.1f}",
        ]  # fmt: skip


FAULTS: list[Fault] = []


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Three hosts, a registry, a swarm of three managers."""
    with Cluster(3).running(IMAGES) as cluster:
        cluster.swarm()
        yield cluster


@pytest.fixture(scope="session")
def stack(cluster: Cluster) -> Iterator[ClusterStack]:
    """The HA stack deployed with the README's commands; this machine's engine keeps no
    tag of the registry's after the session."""
    stack = ClusterStack(cluster)
    try:
        stack.push()
        stack.label()
        stack.deploy()
        yield stack
    finally:
        stack.forget_pushed()


@pytest.fixture
def faults() -> list[Fault]:
    return FAULTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test that fails with the stack up reports the cluster's state as it found it."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and call.when == "call" and isinstance(stack, ClusterStack):
        report.sections.append(("cluster state at the failure", stack.state()))
        # The summary line is the crash message's first line: the cluster in brief goes
        # there, where a CI log that keeps only its tail still shows it.
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            try:
                brief = stack.brief()
            except Exception as exc:  # a host that hangs must not hide the failure itself
                brief = f"could not ask ({exc!r})"
            first, newline, rest = crash.message.partition("\n")
            crash.message = f"{first} [cluster: {brief}]{newline}{rest}"
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FAULTS:
        record_table(
            "Three hosts",
            list(HEADER),
            [fault.cells() for fault in FAULTS],
            terminal=terminalreporter,
        )
