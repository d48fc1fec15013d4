"""The load test's verdicts, on observations made up to pass and to fail."""

from __future__ import annotations

from collections import Counter

from checks import Observations, atomicity, balancing, errors_and_latency


def test_atomicity_passes_for_distinct_values_that_account_for_the_counter() -> None:
    seen = Observations(values=[11, 12, 13], increments=3)
    assert atomicity(seen, initial=10, final=14).passed


def test_atomicity_fails_on_a_duplicate_value() -> None:
    verdict = atomicity(Observations(values=[11, 11, 12], increments=3), initial=10, final=14)
    assert not verdict.passed
    assert "seen more than once" in verdict.detail


def test_atomicity_fails_when_the_counter_moved_more_than_the_increments() -> None:
    verdict = atomicity(Observations(values=[11, 12], increments=2), initial=10, final=15)
    assert not verdict.passed
    assert "counter moved 5, expected 3" in verdict.detail


def test_balancing_passes_within_tolerance_and_fails_outside() -> None:
    assert balancing(Counter(a=100, b=105, c=95), replicas=3, tolerance=0.1).passed
    skewed = balancing(Counter(a=300, b=100, c=100), replicas=3, tolerance=0.1)
    assert not skewed.passed
    assert "a" in skewed.detail


def test_balancing_fails_when_a_replica_never_serves() -> None:
    verdict = balancing(Counter(a=150, b=150), replicas=3, tolerance=0.1)
    assert not verdict.passed
    assert "2 replicas served, expected 3" in verdict.detail


def test_errors_and_latency_thresholds() -> None:
    assert errors_and_latency(1000, 0, 120, 0.0, 500).passed
    assert not errors_and_latency(1000, 1, 120, 0.0, 500).passed
    assert not errors_and_latency(1000, 0, 501, 0.0, 500).passed
    assert not errors_and_latency(0, 0, 0, 0.0, 500).passed


def test_observations_survive_the_trip_from_worker_to_master() -> None:
    seen = Observations(values=[1, 2], served_by=Counter(a=2), increments=2)
    merged = Observations()
    merged.merge(Observations.from_message(seen.to_message()))
    merged.merge(Observations.from_message(seen.to_message()))
    assert merged.values == [1, 2, 1, 2]
    assert merged.served_by == Counter(a=4)
    assert merged.increments == 4
