"""The drain estimate's arithmetic (pure: no SQL here, the SQL is tested in test_charts_screen)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgq_console.core.charts import DrainEstimate
from pgq_console.screens.charts import drain_text

rates = st.floats(min_value=0, max_value=10_000, allow_nan=False)


@given(backlog=st.integers(1, 1_000_000), rate_in=rates, rate_out=rates)
def test_empties_when_and_only_when_completions_outpace_arrivals(
    backlog: int, rate_in: float, rate_out: float
) -> None:
    drain = DrainEstimate(backlog, rate_in, rate_out, 10.0, 300.0)
    empties = drain.empties_in_s
    if rate_out > rate_in and math.isfinite(backlog / (rate_out - rate_in) * 60):
        assert empties is not None
        # At the current rates the backlog is gone exactly then.
        assert backlog + (rate_in - rate_out) * empties / 60 == pytest.approx(0, abs=1e-6)
    else:  # never, or beyond any float (a net rate of 1e-308 jobs/s)
        assert empties is None


@given(backlog=st.integers(1, 100_000), rate_in=rates, rate_out=rates, age=st.floats(0, 600))
def test_crossing_the_age_limit_is_never_in_the_past(
    backlog: int, rate_in: float, rate_out: float, age: float
) -> None:
    drain = DrainEstimate(backlog, rate_in, rate_out, age, 300.0)
    crosses = drain.crosses_limit_in_s
    if age >= 300:
        assert crosses == 0
    elif crosses is not None:
        assert crosses >= 300 - age - 1e-6
    else:  # only when the wait stays under the limit and the backlog does not grow
        assert drain.wait_s is not None and drain.wait_s < 300 and drain.net_per_min <= 0


def test_words_an_on_call_engineer_reads() -> None:
    assert drain_text(DrainEstimate(0, 0, 0, None, 300)) == "no backlog"
    assert drain_text(DrainEstimate(30, 0, 0, 600, 300)) == "nothing completes, oldest over 5m00s"
    assert drain_text(DrainEstimate(20, 0, 14, 30, 300)) == "empty in 1m25s"
    growing = drain_text(DrainEstimate(100, 60, 30, 10, 300))
    assert growing == "grows 30/min, oldest > 5m00s in 6m40s"  # wait hits 5m in 100 s
    assert drain_text(DrainEstimate(0, 30, 29, None, 300)) == "keeping up"


def test_a_steady_queue_predicts_no_far_crossing() -> None:
    """8 ready jobs, in and out within noise of each other: 'steady', no hours-away guess."""
    steady = DrainEstimate(8, 10.16, 10.0, 10.0, 300.0)
    assert steady.trend == "steady"
    assert steady.crosses_limit_in_s is not None and steady.crosses_limit_in_s > 3600
    assert drain_text(steady) == "steady"
    # Growing, but the crossing is hours away at these rates: not said either.
    slow = DrainEstimate(8, 10.6, 10.0, 10.0, 300.0)
    assert slow.trend == "growing" and (slow.crosses_limit_in_s or 0) > 3600
    assert drain_text(slow) == "grows 0.6/min"
    # An old job in a steady queue is still said: it is a fact, not a forecast.
    assert drain_text(DrainEstimate(8, 10.0, 10.0, 400.0, 300.0)) == "steady, oldest over 5m00s"
