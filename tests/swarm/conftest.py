"""The swarm tier's stack, deployed once per session and always removed; its tables of rows,
printed at the end and recorded in the reliability results file (tests/results.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import HEADER as FAULT_HEADER
from tests.faults.harness import Row
from tests.results import record_table
from tests.swarm.swarm_stack import Swarm, SwarmStack


@dataclass
class Scenario:
    """A fault harness row and how long the scenario took, fault to settled."""

    row: Row
    took_s: float

    def cells(self) -> list[str]:
        """The harness's first six cells (the counts), then the time it took."""
        return [*self.row.cells()[:6], f"{self.took_s:.1f}"]


HEADER = ["scenario", *FAULT_HEADER[1:6], "took (s)"]
# The table each test module's scenarios go to, by module; a module not named here gets a
# table named after itself.
TITLES = {
    "test_swarm": "Swarm: rollouts and a killed task under load",
    "test_swarm_ha": "Swarm: Redis failover under load (stack-ha.yaml)",
}
SCENARIOS: dict[str, list[Scenario]] = {}
# An alert's way from the fault to the page, each hop in seconds after the fault.
ALERT_TITLE = "Swarm: an alert's way to the page"
ALERT_HEADER = ["alert", "secret set, Alertmanager back (s)", "the scrape's up, each change (s)",
                "primary last sampled (s)", "pending after (s)", "firing after (s)",
                "at the webhook after (s)"]  # fmt: skip
ALERT_PATHS: list[list[str]] = []


@pytest.fixture(scope="session")
def swarm() -> Iterator[Swarm]:
    """This node a manager for the tier; it leaves the swarm when the tier is done."""
    node = Swarm()
    try:
        node.enter()
        yield node
    finally:
        node.leave()


@pytest.fixture(scope="session")
def swarm_stack(swarm: Swarm) -> Iterator[SwarmStack]:
    stack = SwarmStack()
    try:
        stack.start()
        yield stack
    finally:
        stack.destroy()


@pytest.fixture
def scenarios(request: pytest.FixtureRequest) -> list[Scenario]:
    """The scenarios of the calling test's module: a test appends its own."""
    module = request.module.__name__.rpartition(".")[2]
    return SCENARIOS.setdefault(TITLES.get(module, module), [])


@pytest.fixture
def alert_paths() -> list[list[str]]:
    return ALERT_PATHS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, scenarios in SCENARIOS.items():
        rows = [scenario.cells() for scenario in scenarios]
        record_table(title, HEADER, rows, terminal=terminalreporter)
    record_table(ALERT_TITLE, ALERT_HEADER, ALERT_PATHS, terminal=terminalreporter)
