"""Collects each fault's row; at the end of the run prints each test module's table and
records it in the reliability results file (tests/results.py; make reliability)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults import operations
from tests.faults.harness import HEADER, Row
from tests.results import record_table

# The table each test module's rows go to, by module; a module not named here gets a
# table named after itself.
TITLES = {
    "test_faults": "Faults under load through nginx",
    "test_failover": "Redis failover under load (compose.ha.yaml)",
}
ROWS: dict[str, list[Row]] = {}


@pytest.fixture
def report(request: pytest.FixtureRequest) -> list[Row]:
    """The rows of the calling test's module: a test appends its own."""
    module = request.module.__name__.rpartition(".")[2]
    return ROWS.setdefault(TITLES.get(module, module), [])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, rows in ROWS.items():
        record_table(title, HEADER, [row.cells() for row in rows], terminal=terminalreporter)
    if operations.ROWS:
        record_table(
            "Operations under load through nginx",
            operations.HEADER,
            [row.cells() for row in operations.ROWS],
            terminal=terminalreporter,
        )
