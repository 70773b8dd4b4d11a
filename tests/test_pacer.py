"""The refresh pacing: database time stays within budget, and one slow reading moves nothing."""

from __future__ import annotations

import pytest

from pgq_console.core.overview.pacing import DEPTH_SHARE, MAX_DEPTH_GAP_S, MIN_EVENT_GAP_S, Pacer

BUDGET = 0.04


def steady(pacer: Pacer, depth_s: float, seconds: float, start: float = 0.0) -> float:
    """Refresh back to back at the pacer's gap (or the event minimum) for `seconds`."""
    now = start
    while now < start + seconds:
        pacer.depth_took(depth_s)
        pacer.book(now + depth_s, depth_s)
        now += depth_s + max(MIN_EVENT_GAP_S, pacer.depth_gap())
    return now


def test_one_slow_reading_does_not_stretch_the_gap() -> None:
    pacer = Pacer(BUDGET, started=0.0)
    for _ in range(9):
        pacer.depth_took(0.0002)
    pacer.depth_took(0.080)  # a cold backend's first statement, a scheduler wait
    assert pacer.depth_gap() < MIN_EVENT_GAP_S
    # Pacing on the last reading alone would have waited 0.080 / 0.024 = 3.3 s.
    assert 0.080 / (BUDGET * DEPTH_SHARE) > 3


def test_readings_that_waited_for_a_cpu_do_not_stretch_the_gap() -> None:
    # Two busy cores (workers at 2,500 jobs/s): the count executes in 0.6 ms, but most readings
    # also waited for a core, some for many ms. Paced on their mean, refreshes were 0.3-1 s
    # apart; the cheapest reading is what the query itself costs.
    pacer = Pacer(0.02, started=0.0)
    for _ in range(3):
        pacer.depth_took(0.0006)
        pacer.depth_took(0.006)
        pacer.depth_took(0.025)
    pacer.depth_took(0.004)
    assert pacer.depth_gap() < MIN_EVENT_GAP_S
    # A query slow in every reading still backs off.
    for _ in range(10):
        pacer.depth_took(0.006)
    assert abs(pacer.depth_gap() - 0.006 / (0.02 * DEPTH_SHARE)) < 1e-9


def test_a_query_that_stays_slow_backs_off_and_keeps_to_the_budget() -> None:
    pacer = Pacer(BUDGET, started=0.0)
    now = steady(pacer, 0.0002, 10.0)
    fast_gap = pacer.depth_gap()
    now = steady(pacer, 0.015, 120.0, start=now)  # the depth query got slow and stays slow
    assert MAX_DEPTH_GAP_S > pacer.depth_gap() > 0.5 > fast_gap
    assert pacer.depth_gap() == 0.015 / (BUDGET * DEPTH_SHARE)
    # Over the last minute the event tier spent its slice of the budget, no more.
    assert BUDGET * DEPTH_SHARE * 0.8 < pacer.cost(now) <= BUDGET * DEPTH_SHARE * 1.05


def test_over_budget_follows_the_last_minute() -> None:
    pacer = Pacer(BUDGET, started=0.0)
    pacer.book(1.0, 0.5)  # half a second in the database in the first second
    assert pacer.over_budget(2.0)
    assert pacer.over_budget(10.0)  # 0.5 s in 10 s: 5 %
    assert not pacer.over_budget(13.0)  # 0.5 s in 13 s: 3.8 %
    pacer.book(62.0, 0.001)  # more than a minute later: the old half second is forgotten
    assert pacer.cost(62.0) == 0.001 / 60


def test_a_read_that_costs_more_the_longer_it_waits_does_not_run_away() -> None:
    # Following the log: a fixed 50 ms plus 30 ms per second of log since the last read (a
    # starved machine). Each stretch made the next read dearer; the gap grew without end.
    pacer = Pacer(0.02, started=0.0)
    now, gap, gaps = 0.0, 0.5, []
    for _ in range(60):
        cost = 0.050 + 0.030 * gap
        pacer.depth_took(cost)
        pacer.book(now + cost, cost)
        gap = max(MIN_EVENT_GAP_S, pacer.depth_gap())
        gaps.append(gap)
        now += cost + gap
    assert max(gaps) <= MAX_DEPTH_GAP_S
    assert gaps[-1] == MAX_DEPTH_GAP_S  # still paced: stretched as far as it may go


def test_the_windows_first_readings_do_not_hold_the_rates_back() -> None:
    """A cold first reading of 40 ms at 2 % (the windows' fifth of it) asked 10 s before the
    next: the demo's rates read 0/s that long. Until three readings, at most 2 s past the
    interval; then the cheapest recent reading paces them, as far as it asks."""
    from pgq_console.core.overview.pacing import windows_gap

    assert windows_gap([], 2.0, 0.02) == 2.0
    assert windows_gap([0.04], 2.0, 0.02) == pytest.approx(4.0)
    assert windows_gap([0.04, 0.001], 2.0, 0.02) == pytest.approx(2.0)
    assert windows_gap([0.04, 0.03, 0.02], 2.0, 0.02) == pytest.approx(5.0)
    assert windows_gap([0.001, 0.001, 0.001], 2.0, 0.02) == 2.0
    assert windows_gap([0.5, 0.6, 0.4], 2.0, 0.02) == pytest.approx(100.0)
