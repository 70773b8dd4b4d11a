"""LiveTable: rows applied by key (the cursor stays on its key), only visible rows rendered,
columns whole or not at all, untrusted text shown literally."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from pgq_console.widgets.live_table import MORE_KEY, LiveTable
from tests.helpers import wait_until

COLUMNS = (("name", "Name"), ("count", "Count"), ("note", "Note"))


def row(name: str, count: int, note: str = "") -> dict[str, Text]:
    return {
        "name": Text(name),
        "count": Text(str(count), justify="right"),
        "note": Text(note),
    }


class TableApp(App[None]):
    def __init__(self, table: LiveTable) -> None:
        super().__init__()
        self.table = table
        self.highlighted: list[str] = []
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.table

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self.highlighted.append(event.row_key)

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.selected.append(event.row_key)


def lines(table: LiveTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_apply_inserts_updates_removes_and_reorders_keeping_the_cursor_on_its_key() -> None:
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        table.focus()
        table.apply({key: row(key, i) for i, key in enumerate(("a", "b", "c", "d"))})
        await pilot.pause()
        assert table.row_keys == ["a", "b", "c", "d"]
        await pilot.press("down", "down")
        assert table.selected_key == "c" and table.cursor_row == 2

        # Insert above, update "c", remove "a": the cursor follows "c".
        table.apply(
            {"z": row("z", 9), "b": row("b", 1), "c": row("c", 42, "changed"), "d": row("d", 3)}
        )
        await pilot.pause()
        assert table.row_keys == ["z", "b", "c", "d"]
        assert table.selected_key == "c" and table.cursor_row == 2
        assert table.get_cell("c", "count").plain == "42"
        assert table.get_row_at(2)[2].plain == "changed"

        # Reorder: "c" moves to the top, and the cursor with it.
        rows = {key: row(key, 1) for key in ("c", "d", "z", "b")}
        table.apply(rows, ["c", "d", "z", "b"])
        await pilot.pause()
        assert table.row_keys == ["c", "d", "z", "b"]
        assert table.selected_key == "c" and table.cursor_row == 0
        assert app.highlighted[-1] == "c"

        # Rows inserted above push the cursor's row down: the table scrolls to keep it shown.
        table.move_cursor(row=0)
        many = {f"new{i:02}": row(f"new{i:02}", i) for i in range(30)}
        table.apply({**many, **rows}, [*many, "c", "d", "z", "b"])
        await pilot.pause()
        assert table.selected_key == "c" and table.cursor_row == 30
        assert "c" in [line.split()[0] for line in lines(table)[1:] if line.strip()]

        # The cursor's row goes: the cursor stays at its place, clamped.
        table.move_cursor(row=3)
        table.apply({key: row(key, 1) for key in ("c", "d")})
        await pilot.pause()
        assert table.selected_key == "d" and table.cursor_row == 1
        assert app.highlighted[-1] == "d"

        # Enter reports the row under the cursor.
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["d"]

        table.clear()
        await pilot.pause()
        assert table.row_count == 0 and table.selected_key is None


async def test_unchanged_cells_are_kept_and_an_update_repaints_only_its_row() -> None:
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        table.apply({key: row(key, 1) for key in ("a", "b", "c")})
        await pilot.pause()
        kept = table.get_cell("a", "name")
        rendered = table.rows_rendered
        again = {"a": row("a", 1), "b": row("b", 2), "c": row("c", 1)}
        table.apply(again)
        await pilot.pause()
        # An equal cell is not a change, but the table keeps the caller's object: the same
        # cells passed again are then matched by identity.
        assert table.get_cell("a", "name") == kept
        assert table.get_cell("a", "name") is again["a"]["name"]
        assert table.rows_rendered == rendered + 1  # only "b" was rendered again


async def test_a_cell_whose_colour_changed_is_repainted() -> None:
    """Text's `==` compares the characters only: a cell that turns red with the same digits
    (a count that became an alarm, a theme's new colour) is still a change."""
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        table.apply({"a": row("a", 5)})
        await pilot.pause()
        rendered = table.rows_rendered
        alarm = Text("5", style="bold red", justify="right")
        table.apply({"a": {**row("a", 5), "count": alarm}})
        await pilot.pause()
        assert table.get_cell("a", "count").style == "bold red"
        assert table.rows_rendered == rendered + 1
        shown = [seg for seg in table.render_line(1) if "5" in seg.text]
        assert shown and all(seg.style is not None and seg.style.bold for seg in shown)


async def test_only_visible_rows_are_rendered() -> None:
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        table.focus()  # (focus restyles what is shown: before counting)
        table.apply({f"r{i:04}": row(f"r{i:04}", i) for i in range(2000)})
        await pilot.pause()
        visible = table.size.height - 1  # the header is a line too
        assert visible < 12
        assert table.rows_rendered <= visible
        first = table.rows_rendered
        assert first > 0
        # Every row changes: still only what is on screen is rendered.
        table.apply({f"r{i:04}": row(f"r{i:04}", i + 1) for i in range(2000)})
        await pilot.pause()
        assert table.rows_rendered - first <= visible
        # The last row is reachable, and rendering there costs a screenful again.
        before_end = table.rows_rendered
        await pilot.press("end")
        await pilot.pause()
        assert table.selected_key == "r1999"
        assert "r1999" in lines(table)[-1]
        assert table.rows_rendered - before_end <= visible


async def test_columns_drop_whole_at_a_narrow_width_with_a_hint() -> None:
    columns = (("name", "Name"), *((f"c{i}", f"Column{i}") for i in range(8)))
    table = LiveTable(columns, priorities={"name": 0})
    app = TableApp(table)
    async with app.run_test(size=(50, 8)) as pilot:
        cells = {"name": Text("send_email"), **{f"c{i}": Text(f"{i}" * 9) for i in range(8)}}
        table.apply({"x": cells})
        await wait_until(pilot, lambda: table.settled and MORE_KEY in table.layout_keys)
        await pilot.pause()
        hidden = table.hidden_count
        assert hidden > 0 and table.shown_columns[0] == "name"
        header, first = lines(table)[:2]
        assert f"→ {hidden} more" in header
        for key in table.shown_columns[1:]:  # shown: whole
            assert table.get_cell("x", key).plain in first
        for key in set(cells) - set(table.shown_columns):  # dropped: not a digit of them
            assert key[1] not in first.replace("send_email", "")
        assert table.get_cell("x", "c7").plain == "7" * 9  # hidden columns still answer
        table.focus()
        first_page = table.shown_columns
        await pilot.press("right")
        await wait_until(pilot, lambda: table.column_page == 1, what="the next page")
        assert table.shown_columns[0] == "name" and "c0" not in table.shown_columns
        assert "← →" in lines(table)[0]
        for _ in range(4):  # every column is on some page
            await pilot.press("right")
        await wait_until(pilot, lambda: "c7" in table.shown_columns, what="the last page")
        for _ in range(table.column_page):
            await pilot.press("left")
        await wait_until(pilot, lambda: table.shown_columns == first_page, what="the first page")
        await pilot.resize_terminal(200, 8)
        await wait_until(pilot, lambda: len(table.shown_columns) == len(columns), what="all")
        assert MORE_KEY not in table.layout_keys and table.settled


async def test_untrusted_text_is_shown_literally() -> None:
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(80, 6)) as pilot:
        evil = "[bold red]x[/] \x1b[31mred\x07\nnext"
        table.apply(
            {
                "cursor": row("cursor", 0),  # the cursor's row, styled by the theme
                "evil": {"name": Text(evil), "count": Text("1"), "note": Text("")},
            }
        )
        await pilot.pause()
        shown = lines(table)[2]
        assert "[bold red]x[/]" in shown
        assert "\\x1b[31mred\\x0anext" in shown  # (Rich's Text drops BEL itself)
        assert "\x1b" not in shown and "\x07" not in shown and "\n" not in shown
        segments = list(table.render_line(2))
        assert not any(segment.style and segment.style.bold for segment in segments)
        assert "\x1b" in table.get_cell("evil", "name").plain  # the value itself is kept


async def test_mouse_click_moves_the_cursor_and_a_second_click_selects() -> None:
    table = LiveTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        table.apply({key: row(key, 1) for key in ("a", "b", "c")})
        await pilot.pause()
        await pilot.click(LiveTable, offset=(2, 2))  # header, a, b: the third line is "b"
        await pilot.pause()
        assert table.selected_key == "b"
        await pilot.click(LiveTable, offset=(2, 2))
        await pilot.pause()
        assert app.selected == ["b"]


class KeptTable(LiveTable):
    SAME_MAPPING_UNCHANGED = True


async def test_a_mapping_passed_again_is_shown_after_update_row() -> None:
    """With SAME_MAPPING_UNCHANGED the same mapping is not compared again, unless the row was
    changed meanwhile by `update_row`: then it is the caller's word again."""
    table = KeptTable(COLUMNS)
    app = TableApp(table)
    async with app.run_test(size=(60, 12)) as pilot:
        given = {"a": row("a", 1), "b": row("b", 2)}
        table.apply(given)
        await pilot.pause()
        table.update_row("a", {"count": Text("9")})
        await pilot.pause()
        assert table.get_cell("a", "count").plain == "9"
        table.apply(given)
        await pilot.pause()
        assert table.get_cell("a", "count").plain == "1"
        assert table.get_cell("b", "count").plain == "2"
