"""Collects each fault's row and prints one table at the end of the run (make reliability)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults import operations
from tests.faults.harness import Row, table

ROWS: list[Row] = []


@pytest.fixture
def report() -> list[Row]:
    return ROWS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ROWS:
        terminalreporter.write_sep("=", "reliability: faults under load through nginx")
        terminalreporter.write_line(table(ROWS))
    if operations.ROWS:
        terminalreporter.write_sep("=", "operations under load through nginx")
        terminalreporter.write_line(operations.table(operations.ROWS))
