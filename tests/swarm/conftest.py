"""The swarm tier's stack, deployed once per session and always removed; its table of rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import Row
from tests.swarm.swarm_stack import Swarm, SwarmStack


@dataclass
class Scenario:
    """A fault harness row and how long the scenario took, fault to settled."""

    row: Row
    took_s: float


HEADER = ["scenario", "requests", "attempts", "errors", "lost", "double-counted", "took (s)"]
SCENARIOS: list[Scenario] = []


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
def scenarios() -> list[Scenario]:
    return SCENARIOS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCENARIOS:
        terminalreporter.write_sep("=", "swarm: rollouts and faults under load through nginx")
        terminalreporter.write_line("| " + " | ".join(HEADER) + " |")
        terminalreporter.write_line("|" + " --- |" * len(HEADER))
        for scenario in SCENARIOS:
            row = scenario.row
            cells = [
                row.fault, str(row.requests), str(row.attempts), str(row.errors), str(row.lost),
                str(row.double_counted), f"{scenario.took_s:.1f}",
            ]  # fmt: skip
            terminalreporter.write_line("| " + " | ".join(cells) + " |")
