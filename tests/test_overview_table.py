"""OverviewTable.apply: only what changed is rebuilt; ages move on without a new reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.text import Text
from textual.app import App, ComposeResult
from textual.theme import Theme

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.widgets.overview_table import OverviewTable

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OverviewTable()


def snapshot(*rows: EntrypointRow) -> OverviewSnapshot:
    return OverviewSnapshot(taken_at=NOW, rows=rows, refresh_s=0.01)


def cells(table: OverviewTable, key: str) -> dict[str, Text]:
    return table.get_row(key)


async def test_unchanged_rows_keep_their_cells_and_ages_still_move_on() -> None:
    waiting = EntrypointRow("emails", ready=3, oldest_ready_since=NOW - timedelta(seconds=30))
    idle = EntrypointRow("reports", ready=0, completed_1m=7)
    app = TableApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(snapshot(waiting, idle), NOW)
        await pilot.pause()
        before = {key: cells(table, key) for key in ("emails", "reports")}
        assert str(before["emails"]["oldest"]) == "30.0s" and str(before["emails"]["ready"]) == "3"

        # The same reading a minute later: only the waiting row's age is new.
        table.apply_snapshot(snapshot(waiting, idle), NOW + timedelta(minutes=1))
        await pilot.pause()
        after = {key: cells(table, key) for key in ("emails", "reports")}
        assert str(after["emails"]["oldest"]) == "1m30s"
        assert all(after["reports"][c] is before["reports"][c] for c in before["reports"])
        assert all(
            after["emails"][c] is before["emails"][c] for c in before["emails"] if c != "oldest"
        )

        # A new reading for one row rebuilds that row's changed cells.
        table.apply_snapshot(snapshot(waiting, EntrypointRow("reports", ready=4)), NOW)
        await pilot.pause()
        assert str(table.get_cell("reports", "ready")) == "4"
        assert str(table.get_cell("reports", "done_1m")) == "0"
        assert str(table.get_cell("emails", "oldest")) == "30.0s"

        # A row that is gone goes; one that comes back is added afresh.
        table.apply_snapshot(snapshot(idle), NOW)
        await pilot.pause()
        assert table.row_keys == ["reports"]
        table.apply_snapshot(snapshot(waiting, idle), NOW)
        await pilot.pause()
        assert sorted(table.row_keys) == ["emails", "reports"]
        assert str(table.get_cell("emails", "ready")) == "3"


async def test_a_row_the_table_lost_comes_back_with_the_next_reading() -> None:
    waiting = EntrypointRow("emails", ready=3, oldest_ready_since=NOW - timedelta(seconds=30))
    app = TableApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(snapshot(waiting), NOW)
        await pilot.pause()
        table.clear()  # e.g. a reset from elsewhere: the same reading must still show the row
        table.apply_snapshot(snapshot(waiting), NOW)
        await pilot.pause()
        assert table.row_keys == ["emails"]
        assert str(table.get_cell("emails", "ready")) == "3"


async def test_a_changed_row_shows_what_a_row_built_afresh_shows() -> None:
    """A row whose numbers changed keeps the cells of the numbers that did not (the same
    objects) and rebuilds the others: every step reads as a table built from scratch would."""
    stale = NOW - timedelta(minutes=10)
    steps = [
        EntrypointRow("emails", ready=3, oldest_ready_since=NOW - timedelta(seconds=30)),
        EntrypointRow("emails", ready=3, picked=2, held=1, completed_1m=40, rate_in=4.0),
        EntrypointRow(
            "emails",
            ready=12_345,
            deferred=7,
            picked=2,
            held=0,
            completed_1m=41,
            exceptions_1m=2,
            completed_1h=900,
            exceptions_1h=5,
            rate_in=40.0,
            rate_out=0.5,
            oldest_ready_since=stale,
            sparkline=(1,) * 30,
            p50_s=0.2,
            p95_s=1.5,
        ),
        EntrypointRow("emails", ready=0, exceptions_1h=5, p50_s=0.2, sparkline=(0, 3) * 15),
        EntrypointRow("emails"),
    ]
    app = TableApp()
    async with app.run_test(size=(180, 10)) as pilot:
        table = app.query_one(OverviewTable)
        for index, row in enumerate(steps):
            now = NOW + timedelta(seconds=index)  # a second apart: no row held back
            table.apply_snapshot(snapshot(row), now)
            await pilot.pause()
            shown = cells(table, "emails")
            afresh = OverviewTable()
            await app.mount(afresh)
            afresh.apply_snapshot(snapshot(row), now)
            built = cells(afresh, "emails")
            await afresh.remove()
            for column, cell in built.items():
                assert (column, cell.plain, cell.style, cell.justify) == (
                    column,
                    shown[column].plain,
                    shown[column].style,
                    shown[column].justify,
                ), index


class ThemedApp(App[None]):
    """Two themes that colour ready counts differently."""

    def on_mount(self) -> None:
        for name, colour in (("one", "#00ff00"), ("two", "#ff0000")):
            self.register_theme(
                Theme(name=name, primary="#0178d4", variables={"status-ready": colour})
            )
        self.theme = "one"

    def compose(self) -> ComposeResult:
        yield OverviewTable()


async def test_a_new_theme_recolours_rows_that_did_not_change() -> None:
    row = EntrypointRow("emails", ready=3)
    app = ThemedApp()
    async with app.run_test(size=(160, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(snapshot(row), NOW)
        await pilot.pause()
        assert table.get_cell("emails", "ready").style == "#00ff00"
        app.theme = "two"
        await pilot.pause()
        # The same reading a second later (nothing held back by the pacing).
        table.apply_snapshot(snapshot(row), NOW + timedelta(seconds=1))
        await pilot.pause()
        assert table.get_cell("emails", "ready").style == "#ff0000"
        assert table.get_cell("emails", "ready").plain == "3"
