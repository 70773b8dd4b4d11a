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


class TwinTablesApp(App[None]):
    """The same cells in a plain DataTable and in a LiveDataTable."""

    def compose(self) -> ComposeResult:
        yield DataTable[Text](id="plain")
        yield LiveDataTable(id="live")

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            for index in range(3):
                table.add_column(f"col{index}", key=f"c{index}")
            for row in range(6):
                table.add_row(*(Text("x" * (row + index)) for index in range(3)), key=f"r{row}")


async def test_column_widths_follow_updates_as_datatable_does() -> None:
    """Cells growing, shrinking (the whole column re-measured), wide and multi-line text,
    several updates of one column per batch: the widths match DataTable's own."""
    values = [
        Text(""),
        Text("a"),
        Text("twelve chars"),
        Text("日本語"),
        Text("two\nlines that are longer"),
        Text("x" * 30),
        Text("  padded  "),
    ]
    batches = [
        [("r0", "c0", 5)],  # grows past the widest cell
        [("r0", "c0", 0)],  # shrinks: the column falls back to its widest other cell
        [("r1", "c1", 4), ("r2", "c1", 3), ("r5", "c1", 1)],
        [("r5", "c2", 0), ("r4", "c2", 0), ("r3", "c2", 0)],
        [("r0", "c2", 6), ("r1", "c2", 2), ("r2", "c2", 0), ("r3", "c2", 4)],
        [(f"r{row}", f"c{column}", 1) for row in range(6) for column in range(3)],
    ]
    app = TwinTablesApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        plain = app.query_one("#plain", DataTable)
        live = app.query_one("#live", LiveDataTable)
        history = []
        for batch in batches:
            for table in (plain, live):
                for row, column, value in batch:
                    table.update_cell(row, column, values[value].copy(), update_width=True)
            await pilot.pause()
            widths = [column.content_width for column in plain.columns.values()]
            assert [column.content_width for column in live.columns.values()] == widths
            history.append(widths)
        # The batches really moved the widths both ways (the comparison is not vacuous).
        assert history[0][0] == 30 and history[1][0] < 30
        assert history[-1] == [4, 4, 4]  # "col0" and friends: the label is the widest
