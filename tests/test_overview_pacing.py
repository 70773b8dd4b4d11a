"""Numbers that change on every refresh repaint at most once a second of the injected clock;
a new entrypoint or a state change (a new held failure, errors appearing) is painted at once.

Over SSH every repaint is bytes on the link (bench/terminal_bench.py measures them); these
tests pin the rule, with a clock the test moves by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from pgq_console.app import PgqConsole
from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.messages import SnapshotReady
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.overview_table import OverviewTable, is_state_change
from pgq_console.widgets.pacing import REPAINT_GAP_S, RepaintPacer, changed_line_regions
from pgq_console.widgets.pulse import PulseTile
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, wait_until

NOW = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)


@dataclass
class HandClock:
    """A clock that moves only when the test says so."""

    at: datetime = NOW

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - NOW).total_seconds()

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OverviewTable()


def reading(*rows: EntrypointRow, at: datetime = NOW) -> OverviewSnapshot:
    return OverviewSnapshot(taken_at=at, rows=rows, refresh_s=0.01)


def test_pacer_waits_the_gap_and_a_fixed_clock_is_not_paced() -> None:
    pacer = RepaintPacer()
    assert pacer.due(NOW)
    pacer.painted(NOW)
    assert pacer.due(NOW)  # a clock that did not move: no pacing (fixed-clock snapshots)
    assert not pacer.due(NOW + timedelta(seconds=0.1))
    assert pacer.wait_s(NOW + timedelta(seconds=0.1)) == pytest.approx(REPAINT_GAP_S - 0.1)
    assert pacer.due(NOW + timedelta(seconds=REPAINT_GAP_S))
    assert pacer.due(NOW - timedelta(seconds=1))  # a clock that went back paints at once


async def test_a_moving_number_repaints_at_most_once_a_second_a_new_row_at_once() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        assert table.apply_snapshot(reading(EntrypointRow("emails", rate_in=1.0)), NOW) is None
        await pilot.pause()
        shown = [table.get_cell("emails", "in").plain]
        # Ten refreshes a second for three seconds, the rate different on every one.
        for step in range(1, 31):
            at = NOW + timedelta(seconds=step / 10)
            table.apply_snapshot(reading(EntrypointRow("emails", rate_in=1.0 + step), at=at), at)
            value = table.get_cell("emails", "in").plain
            if value != shown[-1]:
                shown.append(value)
        assert len(shown) - 1 <= 3 / REPAINT_GAP_S  # at most one repaint a gap of the clock
        assert len(shown) - 1 >= 3 / REPAINT_GAP_S - 1  # and the number still moves on
        await pilot.pause()

        # A new entrypoint appears on the very next refresh, 10 ms after the last paint...
        at = NOW + timedelta(seconds=3.01)
        wait = table.apply_snapshot(
            reading(
                EntrypointRow("emails", rate_in=99.0),
                EntrypointRow("reports", ready=1),
                at=at,
            ),
            at,
        )
        assert "reports" in table.row_keys
        assert table.get_cell("reports", "ready").plain == "1"
        # ...while the moving rate keeps what it showed, until its gap is over.
        assert table.get_cell("emails", "in").plain != "99"
        assert wait is not None and 0 < wait <= REPAINT_GAP_S

        # A new held failure is a state change: painted at once, with the numbers beside it.
        at += timedelta(seconds=0.01)
        table.apply_snapshot(
            reading(
                EntrypointRow("emails", rate_in=99.0, held=1),
                EntrypointRow("reports", ready=1),
                at=at,
            ),
            at,
        )
        assert "1" in table.get_cell("emails", "held").plain
        assert table.get_cell("emails", "in").plain == "99"


async def test_rows_painted_at_different_moments_fall_into_step() -> None:
    """A row painted for a state change half a gap after the others is painted with them when
    they are due, instead of asking for a repaint of its own half a gap later (at 2,500 jobs/s
    with a new entrypoint every half second, that was a repaint of the table several times a
    second, each re-reading every row)."""
    app = TableApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(
            reading(EntrypointRow("emails", rate_in=1.0), EntrypointRow("reports", rate_in=1.0)),
            NOW,
        )
        await pilot.pause()
        half = NOW + timedelta(seconds=REPAINT_GAP_S / 2)
        wait = table.apply_snapshot(
            reading(
                EntrypointRow("emails", rate_in=2.0),
                EntrypointRow("reports", rate_in=2.0),
                EntrypointRow("probe", ready=1),  # a new row: painted at once
                at=half,
            ),
            half,
        )
        assert "probe" in table.row_keys and table.get_cell("emails", "in").plain == "1.0"
        assert wait == pytest.approx(REPAINT_GAP_S / 2)
        due = NOW + timedelta(seconds=REPAINT_GAP_S)
        moved = reading(
            EntrypointRow("emails", rate_in=3.0),
            EntrypointRow("reports", rate_in=3.0),
            EntrypointRow("probe", ready=1, rate_in=5.0),
            at=due,
        )
        assert table.apply_snapshot(moved, due) is None  # every row shows the reading
        assert table.get_cell("probe", "in").plain == "5.0"
        assert table.get_cell("emails", "in").plain == "3.0"


async def test_the_same_reading_applied_again_before_anything_is_due_does_no_work() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(reading(EntrypointRow("emails", rate_in=1.0)), NOW)
        await pilot.pause()
        at = NOW + timedelta(seconds=0.2)
        moved = reading(EntrypointRow("emails", rate_in=2.0), at=at)
        assert table.apply_snapshot(moved, at) == pytest.approx(REPAINT_GAP_S - 0.2)
        applied: list[object] = []
        apply = table.apply

        def counted(*args: Any, **kwargs: Any) -> None:
            applied.append(args)
            apply(*args, **kwargs)

        table.apply = counted  # type: ignore[method-assign]
        later = at + timedelta(seconds=0.3)
        assert table.apply_snapshot(moved, later) == pytest.approx(REPAINT_GAP_S - 0.5)
        assert applied == []  # the header's own repaint timer re-applied it: nothing to do
        due = NOW + timedelta(seconds=REPAINT_GAP_S)
        assert table.apply_snapshot(moved, due) is None
        assert len(applied) == 1 and table.get_cell("emails", "in").plain == "2.0"


def test_state_changes_are_told_from_numbers_moving_on() -> None:
    def cells(**values: str) -> dict[str, Text]:
        return {key: Text(value) for key, value in values.items()}

    before = cells(entrypoint="emails", ready="3", held="0", err_1m="0", **{"in": "2.5"})
    assert not is_state_change(before, cells(entrypoint="emails", ready="0", held="0",
                                              err_1m="0", **{"in": "0"}))  # fmt: skip
    assert is_state_change(before, cells(entrypoint="emails", ready="3", held="1",
                                          err_1m="0", **{"in": "2.5"}))  # fmt: skip
    alarm = {**before, "err_1m": Text("! 1", style="red")}
    assert is_state_change(before, alarm)
    assert is_state_change(before, {**before, "picked": Text("1")})  # a column it did not have


@pytest.fixture(scope="module")
def pacing_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "overview_pacing")
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def test_tiles_are_paced_by_the_injected_clock_and_catch_up_without_a_refresh(
    pacing_dsn: str,
) -> None:
    clock = HandClock()
    backend = await backend_for(pacing_dsn)
    app = PgqConsole(backend, clock=clock, refresh_interval=60.0)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, OverviewScreen) and app.screen.snapshot is not None,
            what="the overview's first reading",
        )
        screen = app.screen
        assert isinstance(screen, OverviewScreen) and screen.refresher is not None
        screen.refresher.set_paused(True)  # only the readings below from now on
        await wait_until(pilot, lambda: screen.status is not None and screen.status.paused,
                         what="the refresher paused")  # fmt: skip

        def show(ready: int, held: int = 0) -> None:
            row = EntrypointRow("emails", ready=ready, held=held)
            screen.post_message(SnapshotReady(reading(row)))

        def tile(name: str) -> str:
            return screen.query_one(f"#tile-{name}", PulseTile).value

        clock.advance(1)
        show(ready=10)
        await wait_until(pilot, lambda: tile("ready") == "10", what="the first reading")
        clock.advance(0.1)
        show(ready=11)
        await pilot.pause()
        assert tile("ready") == "10"  # 0.1 s after the last paint: held back
        clock.advance(0.1)
        show(ready=12, held=1)  # a new held failure: at once, the moving numbers with it
        await wait_until(pilot, lambda: tile("held") == "1", what="the held failure")
        assert tile("ready") == "12"
        clock.advance(0.1)
        show(ready=13, held=1)
        await pilot.pause()
        assert tile("ready") == "12"
        # No further reading comes: once the clock has moved past the gap, the held-back
        # number is painted by itself.
        clock.advance(REPAINT_GAP_S)
        await wait_until(pilot, lambda: tile("ready") == "13", what="the held-back number")


def test_changed_line_regions_reach_only_as_far_as_the_change() -> None:
    before = ["  26s ago worker  w1 joined", "   1m ago failure CardDeclined", "same"]
    after = ["  27s ago worker  w1 joined", "   1m ago failure CardDeclined", "same"]
    # Only the first line changed, and only up to its age: a few cells, not the line.
    assert changed_line_regions(before, after) == [Region(0, 0, 4, 1)]  # "  27"
    assert changed_line_regions(before, before) == []
    assert changed_line_regions(before, after[:2]) is None  # lines came or went: everything
    # A line that got shorter is repainted as far as it used to reach (its old text cleared).
    assert changed_line_regions(["abcdef"], ["abc"]) == [Region(0, 0, 6, 1)]
    # A line that got longer moves its tail: the tail is painted in its new cells (tmux at
    # 80x24 showed "oldest ready 13.9" where the screen had "13.9s").
    grown = changed_line_regions(["oldest ready 7.7s"], ["oldest ready 13.9s"])
    assert grown == [Region(0, 0, len("oldest ready 13.9s"), 1)]


def test_event_gap_stretches_while_the_consoles_consumers_work() -> None:
    """Events the console's own consumers set off refresh the overview at most once a
    `BUSY_EVENT_GAP_S`; otherwise (within budget) after `MIN_EVENT_GAP_S`."""
    from pgq_console.core.overview.pacing import BUSY_EVENT_GAP_S, MIN_EVENT_GAP_S, Pacer

    pacer = Pacer(0.02, 0.0)
    for _ in range(3):
        pacer.depth_took(0.0001)
    assert pacer.event_gap(10.0) == MIN_EVENT_GAP_S
    busy = [True]
    pacer.consumers_busy = lambda: busy[0]
    assert pacer.event_gap(10.0) == BUSY_EVENT_GAP_S > MIN_EVENT_GAP_S
    busy[0] = False
    assert pacer.event_gap(10.0) == MIN_EVENT_GAP_S
