"""Repaints that carry no new information are not sent to the terminal (the budget: 5
entrypoints at 50 jobs/s, <= 2 kB/s over SSH): coarse ages and latencies on the live line,
rates that wobble within a few percent, a table row or header line repainted only up to what
changed, a headline tile's border left alone when only its digits change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widget import Widget

from pgq_console.core.models import RefreshStatus
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.pulse import PulseTile
from pgq_console.widgets.status_line import LiveLine

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def test_coarse_ages_and_latencies() -> None:
    assert [fmt.coarse_age(s) for s in (0, 0.99, 1.2, 9.9, 10, 27, 59.9, 61, 3599, 7300)] == [
        "<1s", "<1s", "1s", "9s", "10s", "20s", "50s", "1m", "59m", "2h",
    ]  # fmt: skip
    assert [fmt.coarse_latency(s) for s in (0.001, 0.0099, 0.012, 0.099, 0.25, 1.5)] == [
        "<10ms", "<10ms", "10ms", "90ms", "200ms", "1.5s",
    ]  # fmt: skip


def test_steady_numbers_keep_what_is_shown_while_it_only_wobbles() -> None:
    assert fmt.steady_rate(None, 9.9) == 9.9
    assert fmt.steady_rate(9.9, 10.2) == 9.9  # 3 %: the same reading
    assert fmt.steady_rate(9.9, 11.0) == 11.0  # 11 %: moved
    assert fmt.steady_rate(46.0, 48.0) == 46.0
    assert fmt.steady_rate(46.0, 0.0) == 0.0  # stopping always shows
    assert fmt.steady_rate(0.0, 0.3) == 0.3  # and starting
    assert fmt.steady_latency(0.003, 0.012) == 0.003  # both under 20 ms
    assert fmt.steady_latency(0.050, 0.080) == 0.050  # within a factor of two
    assert fmt.steady_latency(0.003, 0.250) == 0.250
    assert fmt.steady_duration(0.054, 0.055) == 0.054  # a p95 of 54 ms, then 55 ms
    assert fmt.steady_duration(0.054, 0.080) == 0.080
    assert fmt.steady_duration(None, 0.054) == 0.054 and fmt.steady_duration(0.054, None) is None
    assert fmt.steady_share(0.005, 0.006) == 0.005  # 0.1 point
    assert fmt.steady_share(0.005, 0.009) == 0.009
    assert fmt.steady_share(0.0, 0.001) == 0.001


class Spy:
    """The regions each refresh of one widget asked Textual for (() = the whole widget)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, widget: Widget) -> None:
        self.calls: list[tuple[Region, ...]] = []
        original = Widget.refresh

        def refresh(this: Widget, *regions: Region, **options: Any) -> Any:
            if this is widget:
                self.calls.append(regions)
            return original(this, *regions, **options)

        monkeypatch.setattr(Widget, "refresh", refresh)


class WideLine(LiveLine):
    DEFAULT_CSS = "WideLine { height: auto; width: 100; }"


class Tile(PulseTile):
    DEFAULT_CSS = "Tile { border: round white; width: 24; height: 5; }"


class WidgetsApp(App[None]):
    def compose(self) -> ComposeResult:
        yield WideLine()
        yield Tile("picked")
        yield LiveTable([("name", "Name"), ("picked", "Picked"), ("done", "Done/1m")])


def status(latency: float, db_cost: float = 0.005) -> RefreshStatus:
    return RefreshStatus(
        listening=True,
        channel="ch",
        last_event_at=NOW,
        last_event_latency_s=latency,
        db_cost=db_cost,
    )


async def test_the_live_line_does_not_repaint_while_events_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with WidgetsApp().run_test(size=(120, 20)) as pilot:
        line = pilot.app.query_one(WideLine)
        line.show(status(0.004), NOW + timedelta(seconds=0.2))
        await pilot.pause()
        assert "last event <1s ago" in str(line.render())
        spy = Spy(monkeypatch, line)
        # Events every few hundred ms, latencies of a few ms, the db time wobbling by 0.1 %.
        for step, latency in enumerate((0.012, 0.002, 0.009, 0.015, 0.001), start=1):
            line.show(status(latency, 0.005 + 0.001 * (step % 2)), NOW + timedelta(seconds=0.1))
            await pilot.pause()
        assert spy.calls == []
        # The age moves on past a second: repainted, the changed part only.
        line.show(status(0.004), NOW + timedelta(seconds=3.2))
        await pilot.pause()
        assert "last event 3s ago" in str(line.render())
        assert spy.calls and all(regions for regions in spy.calls)


async def test_a_tile_repaints_its_digits_not_its_border(monkeypatch: pytest.MonkeyPatch) -> None:
    async with WidgetsApp().run_test(size=(120, 20)) as pilot:
        tile = pilot.app.query_one(Tile)
        tile.show("0")
        await pilot.pause()
        spy = Spy(monkeypatch, tile)
        tile.show("5")
        await pilot.pause()
        assert tile.value == "5"
        width, height = tile.content_region.size
        assert spy.calls == [(Region(0, 0, width, height),)]


async def test_a_row_repaints_up_to_its_last_changed_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with WidgetsApp().run_test(size=(120, 20)) as pilot:
        table = pilot.app.query_one(LiveTable)
        row = {"name": Text("emails"), "picked": Text("0"), "done": Text("400")}
        table.apply({"emails": row})
        await pilot.pause()
        spy = Spy(monkeypatch, table)
        table.apply({"emails": {**row, "picked": Text("1")}})
        await pilot.pause()
        [[picked]] = spy.calls
        assert 0 < picked.width < table.size.width
        spy.calls.clear()
        table.apply({"emails": {**row, "picked": Text("1"), "done": Text("420")}})
        await pilot.pause()
        [[done]] = spy.calls
        assert picked.width < done.width < table.size.width
        assert (done.x, done.y, done.height) == (picked.x, picked.y, 1) == (0, 1, 1)
        assert "420" in table.get_cell("emails", "done").plain
