"""A polled screen's status line says how old the shown data is, counting up between reads (not
"read 2ms ago" until the next read, 5 s or more later)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from pgq_console.screens.health import HealthScreen
from pgq_console.screens.polled import PollLine
from tests.jobs_seed import FIXED_NOW
from tests.screens_support import console, open_screen, until


@dataclass
class MovableClock:
    """The test's wall clock: moved by the test; durations measured for real."""

    at: datetime

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return time.perf_counter()


async def test_the_age_of_the_shown_data_counts_up_between_reads(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HealthScreen, "interval_s", 3600.0)  # no read while the test waits
    clock = MovableClock(FIXED_NOW)
    app = console(fresh_database, clock=clock)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)
        line = screen.query_one(PollLine)

        def said() -> str:
            return " ".join(str(line.render()).split())

        await until(pilot, lambda: "read <1s ago in " in said())
        polls = screen.poll_status.polls
        clock.at = FIXED_NOW + timedelta(seconds=7)
        await until(pilot, lambda: "read 7s ago in " in said())
        clock.at = FIXED_NOW + timedelta(minutes=2, seconds=5)
        await until(pilot, lambda: "read 2m ago in " in said())
        assert screen.poll_status.polls == polls  # no read in between: the age alone moved
        assert "every 3600s" in said()
