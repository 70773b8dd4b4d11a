"""LiveDataTable's own cell renders: the same segments as DataTable's, reused only while valid."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from pgq_console.widgets.live_table import LiveDataTable

CELLS = [
    Text("send_email"),
    Text("12345", justify="right"),
    Text("queued", style="bold"),
    Text("a very long entrypoint name that cannot fit", overflow="ellipsis"),
    Text("a very long entrypoint name that is cropped"),
    Text("日本語のテキストです", justify="right"),
    Text(""),
    Text("", style="bold red"),
    Text("   ", style="italic", justify="right"),
    Text.assemble(("a", "red"), ("bc", "bold"), justify="right", style="italic"),
    Text("x\ty"),
    Text("trailing  ", justify="right"),
    Text("mid", justify="center"),
    Text("line one\nline two"),
    Text("[bold]not markup[/]"),
    Text("full", justify="full"),
]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveDataTable(zebra_stripes=True, cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(LiveDataTable)
        table.fixed_columns = 1
        for index in range(len(CELLS)):
            table.add_column(f"c{index}", key=f"c{index}", width=12)
        for row in range(4):
            table.add_row(*CELLS[row:], *CELLS[:row], key=f"r{row}")


async def test_text_cells_render_exactly_as_datatable_does() -> None:
    app = TableApp()
    async with app.run_test(size=(200, 12)) as pilot:
        await pilot.pause()
        table = app.query_one(LiveDataTable)
        table.cursor_coordinate = Coordinate(1, 0)
        base = table.rich_style
        compared = 0
        for row in range(table.row_count):
            for column in range(len(table.columns)):
                for cursor, hover in ((False, False), (True, False), (False, True)):
                    for width in (12, 4, 3, 1):
                        table._clear_caches()
                        ours = table._render_cell(row, column, base, width, cursor, hover)
                        table._clear_caches()
                        theirs = DataTable._render_cell(
                            table, row, column, base, width, cursor, hover
                        )
                        assert ours == theirs, (row, column, cursor, hover, width)
                        compared += 1
        assert compared == 4 * len(CELLS) * 3 * 4


async def test_a_cell_render_is_reused_until_its_value_changes() -> None:
    app = TableApp()
    async with app.run_test(size=(200, 12)) as pilot:
        await pilot.pause()
        table = app.query_one(LiveDataTable)
        base = table.rich_style
        first = table._render_cell(0, 0, base, 12)
        table.update_cell("r1", "c1", Text("changed"))  # another cell: the table's count moves
        assert table._render_cell(0, 0, base, 12) is first
        table.update_cell("r0", "c0", Text("changed"))
        again = table._render_cell(0, 0, base, 12)
        assert again is not first
        assert "changed" in "".join(segment.text for segment in again[0])
        table.notify_style_update()  # a theme change: cursor colours in renders are stale
        assert table._render_cell(0, 0, base, 12) is not again
