"""An operation (a deploy, a reload, a rotation) under two loads through nginx at once,
and its accounting: a client that never retries (every non-200 or dropped connection is a
failed request, as a browser or plain curl would show it) and the harness's keyed client
that retries with its Idempotency-Key, for the exact count."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from stack_client import read_count
from tests.faults.harness import MIN_ATTEMPTS, READ_RETRY, Load


@dataclass
class OperationRow:
    operation: str
    requests: int
    failed: int  # non-200 answers and dropped connections the non-retrying client saw
    retried: int  # attempts the keyed client retried (its non-200s)
    lost: int
    double_counted: int
    seconds: float  # how long the operation itself took

    def cells(self) -> list[str]:
        return [
            self.operation, str(self.requests), str(self.failed), str(self.retried),
            str(self.lost), str(self.double_counted), f"{self.seconds:.1f}",
        ]  # fmt: skip


HEADER = ["operation", "requests", "failed", "retried", "lost", "double-counted", "took (s)"]
ROWS: list[OperationRow] = []


def table(rows: list[OperationRow]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Loads:
    url: str
    strict: Load = field(init=False)
    keyed: Load = field(init=False)
    operation_s: float = 0.0

    def __post_init__(self) -> None:
        self.strict = Load(self.url, concurrency=4, retry=False)
        self.keyed = Load(self.url, concurrency=4)

    def failures(self) -> list[str]:
        return self.strict.failures(self.strict.started)

    def row(self, operation: str) -> OperationRow:
        """Every answered request's value once, and the counter moved by exactly them from
        the strict load's first read (the keyed load's first read and the final read are
        one increment each)."""
        end = read_count(self.url, retry_for=READ_RETRY)
        values = [*self.strict.acked.values(), *self.keyed.acked.values()]
        expected = self.strict.start_count + len(values) + 2
        duplicates = sum(n - 1 for n in Counter(values).values() if n > 1)
        failed = [a for a in self.strict.attempts if a.status != 200]
        return OperationRow(
            operation=operation,
            requests=len(values) + self.strict.unresolved + self.keyed.unresolved,
            failed=len(failed),
            retried=sum(1 for a in self.keyed.attempts if a.status != 200),
            lost=max(0, expected - end),
            double_counted=duplicates + max(0, end - expected),
            seconds=self.operation_s,
        )


@contextmanager
def under_load(url: str) -> Iterator[Loads]:
    """Both loads running before the body starts and after it ends (MIN_ATTEMPTS each
    side); the body is the operation, timed."""
    loads = Loads(url)
    with loads.strict, loads.keyed:
        loads.strict.run_past(loads.strict.started, 1)
        began = time.monotonic()
        yield loads
        ended = time.monotonic()
        loads.operation_s = ended - began
        loads.strict.run_past(ended, 1)
        assert loads.strict.attempts_around(began)[0] >= MIN_ATTEMPTS, "load too light before"


def assert_clean(row: OperationRow, loads: Loads) -> None:
    ROWS.append(row)
    assert row.failed == 0, loads.failures()
    assert loads.strict.unresolved == 0
    assert loads.keyed.unresolved == 0
    assert row.lost == 0
    assert row.double_counted == 0
