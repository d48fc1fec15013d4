"""Rows of the operations the stack tier runs under load (backup, restore), recorded as one
table in the reliability results file at the end of the run (tests/stack/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

TITLE = "Backup and restore under load through nginx"
HEADER = ["operation", "requests", "failed", "lost", "double-counted", "took (s)"]


@dataclass(frozen=True)
class Operation:
    name: str
    requests: int
    failed: int
    lost: int
    double_counted: int
    seconds: float

    def cells(self) -> list[str]:
        return [
            self.name, str(self.requests), str(self.failed), str(self.lost),
            str(self.double_counted), f"{self.seconds:.1f}",
        ]  # fmt: skip


OPERATIONS: list[Operation] = []
