"""The open-loop generator's arithmetic (bench/openloop.py): its percentiles and where in a
run its slow answers were due."""

import math

from bench.openloop import OpenLoopRun


def test_nearest_rank_percentiles() -> None:
    run = OpenLoopRun(rate=100, sent=100, latencies=[i / 1000 for i in range(1, 101)])
    assert run.percentile(50) == 0.050
    assert run.percentile(99) == 0.099
    assert run.percentile(100) == 0.100
    assert math.isnan(OpenLoopRun(rate=1, sent=1).percentile(99))


def test_slow_answers_are_counted_by_when_they_were_due() -> None:
    run = OpenLoopRun(
        rate=10,
        sent=5,
        latencies=[0.001, 0.030, 0.025, 0.002, 0.040],
        due=[0.00, 1.82, 1.87, 5.00, 6.81],
    )
    assert run.slow_by_time(0.020) == {1.8: 2, 6.8: 1}
    assert run.slow_by_time(0.050) == {}
