"""80x24 and narrower: columns whole or not at all, headers broken between fields, footer keys
whole."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widget import Widget

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.widgets.footer import ConsoleFooter, key_width
from pgq_console.widgets.live_table import MORE_KEY, column_pages
from pgq_console.widgets.overview_table import COLUMNS, OverviewTable
from pgq_console.widgets.status_line import QuietStatic, pack_fields
from tests.helpers import wait_until
from tests.test_jobs_screens import console, seeded  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def test_column_pages_drop_the_least_important_first() -> None:
    widths = {"a": 10, "b": 10, "c": 10, "d": 10, "e": 10}
    ranks = {"a": 0, "b": 3, "c": 1, "d": 2, "e": 4}
    assert column_pages(widths, ranks, 100, 8) == [["a", "c", "d", "b", "e"]]
    # 45 cells: a (pinned) + c + d + hint; then b + e on the next page, a still pinned.
    assert column_pages(widths, ranks, 45, 8) == [["a", "c", "d"], ["a", "b", "e"]]
    # Too narrow for anything beside the pinned column: one column per page, none lost.
    pages = column_pages(widths, ranks, 15, 8)
    assert [page[1:] for page in pages] == [["c"], ["d"], ["b"], ["e"]]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OverviewTable()


def line(widget: Widget, y: int) -> str:
    return widget.render_line(y).text


async def test_overview_at_80_columns_shows_whole_columns_and_says_how_many_more() -> None:
    row = EntrypointRow(
        "send_email", ready=1295, picked=3, held=7, completed_1h=123456, exceptions_1h=1295
    )
    app = TableApp()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(OverviewTable)
        table.apply_snapshot(OverviewSnapshot(taken_at=NOW, rows=(row,), refresh_s=0.01), NOW)
        await wait_until(pilot, lambda: MORE_KEY in table.layout_keys)
        await pilot.pause()
        shown = table.shown_columns
        hidden = len(COLUMNS) - len(shown)
        assert hidden > 0 and shown[0] == "entrypoint"
        # Least important (last declared) dropped first: what is shown is a prefix.
        assert shown == [key for key, _ in COLUMNS][: len(shown)]
        header = line(table, 0)
        assert f"→ {hidden} more" in header
        # Nothing reaches past the edge: no horizontal scrolling, no cut number.
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert "1295" in line(table, 1) and " 130 " not in line(table, 1)
        # → shows the dropped columns, whole; the hidden ones still answer get_cell.
        assert table.get_cell("send_email", "err_1h").plain == "! 1295"
        table.focus()
        await pilot.press("right")
        await wait_until(pilot, lambda: "err_1h" in table.shown_columns, what="next page")
        await pilot.pause()
        assert table.shown_columns[0] == "entrypoint" and "ready" not in table.shown_columns
        assert "1295" in line(table, 1) and "123k" in line(table, 1)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        await pilot.press("left")
        await wait_until(pilot, lambda: table.shown_columns == shown, what="first page")
        # Wide enough: every column, no hint.
        await pilot.resize_terminal(220, 10)
        await wait_until(pilot, lambda: len(table.shown_columns) == len(COLUMNS), what="all")
        assert MORE_KEY not in table.layout_keys


def test_pack_fields_breaks_between_fields_only() -> None:
    fields = [Text("queued 1249 (ready 1209, deferred 40)"), Text("picked 3"), Text("held 4")]
    packed = pack_fields(fields, 44).plain.split("\n")
    assert packed == [" queued 1249 (ready 1209, deferred 40)", " picked 3  held 4"]
    assert (
        pack_fields(fields, 200).plain == " queued 1249 (ready 1209, deferred 40)  picked 3  held 4"
    )


class HeaderApp(App[None]):
    def compose(self) -> ComposeResult:
        yield QuietStatic(id="line")


async def test_header_fields_repack_on_resize_never_split() -> None:
    fields = [Text(f"field{i} {'x' * i}") for i in range(1, 9)]
    app = HeaderApp()
    async with app.run_test(size=(30, 10)) as pilot:
        widget = app.query_one(QuietStatic)
        widget.show_fields(fields)
        for width in (30, 45, 80):
            await pilot.resize_terminal(width, 10)
            await pilot.pause()
            lines = [line(widget, y).strip() for y in range(widget.size.height)]
            pieces = [piece for text in lines for piece in text.split("  ") if piece]
            assert pieces == [field.plain for field in fields], (width, lines)


async def test_footer_keys_are_whole_at_80_columns(seeded: str) -> None:  # noqa: F811
    app = console(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("2")
        await wait_until(pilot, lambda: bool(app.screen.query(ConsoleFooter).first().children))
        footer = app.screen.query_one(ConsoleFooter)

        # Laid out (a busy machine mounts the keys a while before it places them).
        def laid_out() -> bool:
            keys = list(footer.children)
            return bool(keys) and all(key.region.width > 0 for key in keys)

        await wait_until(pilot, laid_out, what="the footer keys laid out")
        keys = list(footer.children)
        actions = [getattr(key, "action", "") for key in keys]
        assert "help" in actions  # the way to every dropped key stays
        assert sum(key_width(key) for key in keys) <= footer.size.width
        for key in keys:  # each whole: its full width, inside the footer
            assert key.region.right <= footer.region.right, key
            if not key.has_class("-command-palette"):
                assert key.region.width == key_width(key), key


async def test_the_database_footer_offers_every_write_key_and_quit_at_80_columns(
    seeded: str,  # noqa: F811
) -> None:
    """At 80x24 (an SSH session's default) the Database screen's keys fit: both index builds
    and quit, not only the first two write keys (their labels were too long to leave room)."""
    app = console(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("6")
        await wait_until(pilot, lambda: bool(app.screen.query(ConsoleFooter).first().children))
        footer = app.screen.query_one(ConsoleFooter)
        await wait_until(
            pilot,
            lambda: (
                {"upgrade", "held_index", "statistics_index", "quit", "help"}
                <= {str(getattr(key, "action", "")).rsplit(".", 1)[-1] for key in footer.children}
            ),
            what="every write key, quit and help in the footer",
        )
