"""Rows of the operations the stack tier runs under load (backup, restore), printed as one
table at the end of the run (tests/stack/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str
    requests: int
    failed: int
    lost: int
    double_counted: int
    seconds: float


HEADER = ["operation", "requests", "failed", "lost", "double-counted", "took (s)"]
OPERATIONS: list[Operation] = []


def table(rows: list[Operation]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += [
        f"| {o.name} | {o.requests} | {o.failed} | {o.lost} | {o.double_counted}"
        f" | {o.seconds:.1f} |"
        for o in rows
    ]
    return "\n".join(lines)
