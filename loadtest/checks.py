"""The load test's verdicts: pure functions over what a run saw, so they are tested on their own."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypedDict

# The checks' limits, each a Locust option --<name> and environment variable TALLY_<NAME>:
# type, default, meaning.
CHECK_OPTIONS: dict[str, tuple[type[int] | type[float], float, str]] = {
    "replicas": (int, 3, "replicas expected to serve"),
    "balance_tolerance": (float, 0.10, "allowed deviation from an even share, relative"),
    "max_failure_ratio": (float, 0.0, "allowed share of failed requests"),
    "max_p99_ms": (float, 500.0, "allowed p99 latency in ms"),
}


class Message(TypedDict):
    """Observations as a worker sends them to the master."""

    values: list[int]
    served_by: dict[str, int]
    increments: int


@dataclass
class Observations:
    """What one process (or, merged, the whole run) saw from /count."""

    values: list[int] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    increments: int = 0

    def merge(self, other: Observations) -> None:
        self.values.extend(other.values)
        self.served_by.update(other.served_by)
        self.increments += other.increments

    def to_message(self) -> Message:
        return {
            "values": self.values,
            "served_by": dict(self.served_by),
            "increments": self.increments,
        }

    @classmethod
    def from_message(cls, data: Message) -> Observations:
        return cls(
            values=list(data["values"]),
            served_by=Counter(data["served_by"]),
            increments=data["increments"],
        )


@dataclass(frozen=True)
class Verdict:
    check: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.detail}"


def atomicity(seen: Observations, initial: int, final: int) -> Verdict:
    """Every value distinct, and the counter moved by exactly the increments made.

    `initial` and `final` come from a /count before and after the run; the final
    read is itself an increment, hence the + 1.
    """
    duplicates = [value for value, n in Counter(seen.values).items() if n > 1]
    outside = [value for value in seen.values if not initial < value < final]
    expected = seen.increments + 1
    moved = final - initial
    problems = []
    if duplicates:
        problems.append(f"{len(duplicates)} values seen more than once (e.g. {duplicates[:3]})")
    if outside:
        problems.append(f"{len(outside)} values outside ({initial}, {final})")
    if moved != expected:
        problems.append(f"counter moved {moved}, expected {expected}")
    detail = "; ".join(problems) or f"{seen.increments} increments, all distinct, none lost"
    return Verdict("atomicity", not problems, detail)


def balance_band(total: int, replicas: int, tolerance: float) -> float:
    """How far from an even share one replica's count may be: `tolerance` of it (relative),
    or, when wider, four standard deviations of a fair random split of `total` responses.
    The band follows the run's own size: a short run on a slow machine, with few
    responses, is not held to a spread only a long one can show."""
    share = 1 / replicas
    return max(tolerance * total * share, 4 * math.sqrt(total * share * (1 - share)))


def balancing(served_by: Counter[str], replicas: int, tolerance: float) -> Verdict:
    """Each of `replicas` replicas serves an even share, within balance_band."""
    total = sum(served_by.values())
    if total == 0:
        return Verdict("balancing", False, "no responses")
    even = total / replicas
    band = balance_band(total, replicas, tolerance)
    shares = ", ".join(f"{name} {n / total:.1%}" for name, n in sorted(served_by.items()))
    problems = []
    if len(served_by) != replicas:
        problems.append(f"{len(served_by)} replicas served, expected {replicas}")
    uneven = [name for name, n in served_by.items() if abs(n - even) > band]
    if uneven:
        problems.append(f"outside ±{band / even:.0%} of even: {', '.join(sorted(uneven))}")
    return Verdict("balancing", not problems, "; ".join([*problems, shares]))


def errors_and_latency(
    requests: int, failures: int, p99_ms: float, max_failure_ratio: float, max_p99_ms: float
) -> Verdict:
    ratio = failures / requests if requests else 1.0
    passed = requests > 0 and ratio <= max_failure_ratio and p99_ms <= max_p99_ms
    detail = (
        f"{failures}/{requests} failed ({ratio:.2%}, max {max_failure_ratio:.2%}), "
        f"p99 {p99_ms:.0f} ms (max {max_p99_ms:.0f} ms)"
    )
    return Verdict("errors_and_latency", passed, detail)


def failed(verdicts: Iterable[Verdict]) -> list[str]:
    return [v.check for v in verdicts if not v.passed]
