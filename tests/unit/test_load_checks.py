"""The load test's verdicts, on observations made up to pass and to fail."""

from __future__ import annotations

from collections import Counter

import pytest

from checks import Observations, atomicity, balance_band, balancing, errors_and_latency


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


def test_the_balance_band_follows_the_number_of_responses() -> None:
    # 90 responses: a fair split strays by about 4.5 a replica, so ±10% (3) is too tight.
    assert balancing(Counter(a=36, b=27, c=27), replicas=3, tolerance=0.1).passed
    # 30,000: four standard deviations are under 2%, so the tolerance decides.
    assert balance_band(30_000, replicas=3, tolerance=0.1) == pytest.approx(1000)
    assert not balancing(Counter(a=11_500, b=9_250, c=9_250), replicas=3, tolerance=0.1).passed


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
