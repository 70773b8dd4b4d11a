"""The table every live screen shows: rows keyed by a stable key, updated in place, on the Line API.

`LiveTable.apply(rows, order)` makes the table show exactly `rows` (row key -> column key ->
rich `Text`) in `order`: new rows are inserted, vanished ones removed, changed cells replaced;
nothing is rebuilt, and the cursor stays on its row key whatever moved around it.

Rendering (Textual's Line API: `render_line` returns a `Strip` per visible line):

- only visible lines are rendered; a row's strip is cached until one of its cells, its place
  (zebra parity, cursor, hover), the column layout or the styles change;
- a cell's segments are cached by the cell's value object, so a changed row re-renders only its
  changed cells;
- column widths are measured once per `apply` (a column is re-measured only when its widest cell
  shrank or went away), never per paint.

Columns are shown whole or not at all (a value cut at the right edge reads as a real value:
"130" for 1295). Every column has a priority; when the columns do not fit, the least important
are dropped and a last header cell says how many ("→ 3 more"); `→` and `←` page through the
dropped ones (the pinned ones, priority 0, stay on every page).

Cells are rich `Text`, never markup; control and invisible characters still in a cell are shown
as escapes (`core.text.printable`), so untrusted text cannot act on the terminal.

Styles come from component classes (`live-table--header`, `--even-row`, `--odd-row`, `--fixed`,
`--cursor`, `--fixed-cursor`, `--hover`), themed with Textual's variables like DataTable's.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Mapping, Sequence
from typing import ClassVar, NamedTuple

from rich.cells import cell_len
from rich.console import Console
from rich.containers import Lines
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pgq_console.core.text import has_unsafe, printable

PINNED = 0
MORE_KEY = "more-columns"
# Cached cell renders: a few screenfuls of a wide terminal (rows x shown columns x styles).
CELL_RENDERS = 6000
# Cached row strips: a few screenfuls.
ROW_STRIPS = 400
# Up to this many changed visible rows are repainted line by line, more all at once.
REPAINT_ROWS = 8

ColumnSpec = tuple[str, str | Text] | tuple[str, str | Text, int]
Cells = Mapping[str, Text]


class Column(NamedTuple):
    key: str
    label: Text
    width: int | None  # a fixed content width, or None: as wide as the widest cell


def column_pages(
    widths: dict[str, int], priorities: dict[str, int], available: int, hint_width: int
) -> list[list[str]]:
    """The columns of each page, most important first; pinned ones (priority 0) on every page.

    A page holds the pinned columns and then, by priority, as many as fit whole beside them
    (leaving room for the hint when a column is left over). Every column is on some page.
    """
    order = sorted(widths, key=lambda key: priorities.get(key, 1 << 20))
    pinned = [key for key in order if priorities.get(key) == PINNED]
    rest = [key for key in order if key not in pinned]
    base = sum(widths[key] for key in pinned)
    pages: list[list[str]] = []
    while rest or not pages:
        used, page = base, list(pinned)
        for index, key in enumerate(rest):
            left_after = len(rest) - index - 1
            room = available - (hint_width if left_after or pages else 0)
            if used + widths[key] > room and len(page) > len(pinned):
                break
            page.append(key)
            used += widths[key]
        rest = rest[len(page) - len(pinned) :]
        pages.append(page)
    return pages


def text_width(value: Text) -> int:
    """Cells a cell takes on its one line."""
    plain = value.plain
    if has_unsafe(plain):  # shown escaped: see `safe`
        return cell_len(printable(plain))
    return cell_len(plain)


def same_cell(before: Text, after: Text) -> bool:
    """Whether two cells show the same: text, spans and the whole cell's style and layout
    (Text's own `==` compares only the text and spans)."""
    return (
        before == after
        and before.style == after.style
        and before.justify == after.justify
        and before.overflow == after.overflow
    )


def safe(value: Text) -> Text:
    """The cell as shown: control and invisible characters as visible escapes (styles kept for
    the whole cell, spans dropped: a cell holding such characters came from the database)."""
    if not has_unsafe(value.plain):
        return value
    return Text(
        printable(value.plain),
        style=value.style,
        justify=value.justify,
        overflow=value.overflow,
    )


def one_line(text: Text, width: int, console: Console) -> list[Segment]:
    """The segments of a one-line `text` in `width` cells: justified, cut by its overflow
    (crop, fold: cut; ellipsis: …), padded to `width` with unstyled spaces."""
    overflow = text.overflow or "fold"
    if overflow == "fold" or overflow == "ignore":
        overflow = "crop"
    line = text.copy()
    if text.justify and text.justify not in ("default", "left"):
        Lines([line]).justify(console, width, justify=text.justify, overflow=overflow)
    line.truncate(width, overflow=overflow)
    if line.spans:
        segments = list(line.render(console))
    else:
        # Text.render drops the base style of a span-less text; keep it (not for empty text).
        style = console.get_style(line.style) if line.style and line.plain else None
        segments = [Segment(line.plain, style)]
    used = sum(cell_len(segment.text) for segment in segments)
    if used < width:
        segments.append(Segment(" " * (width - used)))
    return segments


class LiveTable(ScrollView, can_focus=True):
    """Rows by key, `apply`-ed in place; see the module docstring.

    `columns`: (key, label) or (key, label, fixed width) in display order. `priorities`: column
    key -> rank (0: always shown, then dropped from the highest); columns without a rank keep
    their declared order after the ranked ones. `fixed_columns`: how many leading columns take
    the `live-table--fixed` style.
    """

    ALLOW_MAXIMIZE = True
    # True when the caller never changes a cells mapping after passing it to `apply`: the same
    # mapping passed again for a row is then known unchanged, not compared cell by cell (the
    # overview passes each of 200 rows on every refresh, most of them the same mapping).
    SAME_MAPPING_UNCHANGED: ClassVar[bool] = False
    _rows_above = 0  # what the last `RowsAbove` said
    # True for a list whose new rows arrive at the top (newest first): while the cursor is on
    # the first row, `apply` keeps it there (the view follows the newest, as k9s and htop do)
    # instead of following that row down as rows are put above it. Anywhere else, the cursor
    # stays on its row and `rows_above` says how many rows are above the view.
    FOLLOW_TOP: ClassVar[bool] = False

    # The cursor keys go without a description: help's table hint covers them (and j/k/g/G).
    BINDINGS: ClassVar[list[BindingType]] = [
        # each screen says what enter does
        Binding("enter", "select_cursor", show=False, id="live-table.select"),
        Binding("up", "cursor_up", show=False, id="live-table.cursor-up"),
        Binding("down", "cursor_down", show=False, id="live-table.cursor-down"),
        Binding("pageup", "page_up", show=False, id="live-table.page-up"),
        Binding("pagedown", "page_down", show=False, id="live-table.page-down"),
        Binding("home,ctrl+home", "scroll_top", show=False, id="live-table.top"),
        Binding("end,ctrl+end", "scroll_bottom", show=False, id="live-table.bottom"),
        Binding("right", "next_columns", "More columns", show=False, id="live-table.next-columns"),
        Binding(
            "left",
            "previous_columns",
            "Previous columns",
            show=False,
            id="live-table.previous-columns",
        ),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header",
        "live-table--fixed",
        "live-table--even-row",
        "live-table--odd-row",
        "live-table--cursor",
        "live-table--fixed-cursor",
        "live-table--hover",
    }

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        overflow-x: hidden;
        &:focus {
            background-tint: $foreground 5%;
            & > .live-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .live-table--header {
                background-tint: $foreground 5%;
            }
            & > .live-table--fixed-cursor {
                color: $block-cursor-foreground;
                background: $block-cursor-background;
            }
        }
        &:dark > .live-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .live-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .live-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .live-table--fixed {
            background: $secondary-muted;
            color: $foreground;
        }
        & > .live-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .live-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .live-table--fixed-cursor {
            background: $block-cursor-blurred-background;
            color: $foreground;
        }
        & > .live-table--hover {
            background: $block-hover-background;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor is on a (new) row: moved there, or its row moved under it."""

        def __init__(self, table: LiveTable, cursor_row: int, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.row_key = row_key

        @property
        def control(self) -> LiveTable:
            return self.table

    class RowsAbove(Message):
        """The number of rows above the visible ones (scrolled out of view) changed."""

        def __init__(self, table: LiveTable, count: int) -> None:
            super().__init__()
            self.table = table
            self.count = count

        @property
        def control(self) -> LiveTable:
            return self.table

    class RowSelected(Message):
        """Enter (or a click on the cursor's row) on a row."""

        def __init__(self, table: LiveTable, cursor_row: int, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.row_key = row_key

        @property
        def control(self) -> LiveTable:
            return self.table

    cursor_row: reactive[int] = reactive(0, repaint=False, init=False)
    """The index of the row under the cursor (0 in an empty table)."""
    zebra_stripes: reactive[bool] = reactive(True)
    show_header: reactive[bool] = reactive(True)
    show_cursor: reactive[bool] = reactive(True)
    cell_padding = 1

    def __init__(
        self,
        columns: Sequence[ColumnSpec] = (),
        *,
        priorities: Mapping[str, int] | None = None,
        fixed_columns: int = 0,
        zebra_stripes: bool = True,
        show_cursor: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.set_reactive(LiveTable.zebra_stripes, zebra_stripes)
        self.set_reactive(LiveTable.show_cursor, show_cursor)
        self.fixed_columns = fixed_columns
        self.priorities: dict[str, int] = dict(priorities or {})
        self.declared: list[Column] = []
        self._by_key: dict[str, Column] = {}
        self._row_cells: dict[str, dict[str, Text]] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._version: dict[str, int] = {}
        self._given: dict[str, Cells] = {}  # row key -> the mapping `apply` got for it last
        # row key -> the columns changed since its line was last asked to repaint: the line is
        # repainted only up to the last of them (`_refresh_rows`).
        self._changed_columns: dict[str, set[str]] = {}
        self._counter = 0
        self._content_widths: dict[str, int] = {}  # column key -> widest cell or label
        self.shown_columns: list[str] = []
        self.hidden_count = 0
        self.column_page = 0
        self._layout: tuple[tuple[str, int], ...] = ()  # (column key, rendered width) shown
        self._layout_generation = 0
        self._fitted_for: tuple[int, int] | None = None  # (available width, layout generation)
        self._highlighted: tuple[int, str] | None = None
        self.hover_row = -1
        self._palette_key: object = None
        self._palette_generation = 0
        self._styles: dict[tuple[str, bool, bool, bool], tuple[Style, Style]] = {}
        self._header_strip: tuple[object, Strip] | None = None
        self._row_strips: LRUCache[str, tuple[tuple[object, ...], Strip]] = LRUCache(ROW_STRIPS)
        self._cell_renders: LRUCache[tuple[object, ...], tuple[Text, list[Segment]]] = LRUCache(
            CELL_RENDERS
        )
        self.rows_rendered = 0
        """Row strips rendered (cache misses) so far: a test's measure of the work done."""
        self.set_columns(columns)

    # -- columns -------------------------------------------------------------------------------

    def set_columns(self, columns: Iterable[ColumnSpec]) -> None:
        """Declare the columns (display order); existing rows keep the cells of kept keys."""
        self.declared = []
        for index, spec in enumerate(columns):
            key, label = spec[0], spec[1]
            width = spec[2] if len(spec) == 3 else None
            self.declared.append(
                Column(key, label if isinstance(label, Text) else Text(label), width)
            )
            self.priorities.setdefault(key, 1000 + index)
        self._by_key = {column.key: column for column in self.declared}
        self._content_widths = {}
        for column in self.declared:
            self._measure(column.key)
        self._relayout()

    @property
    def column_keys(self) -> list[str]:
        """Every declared column key, in display order (shown or not)."""
        return [column.key for column in self.declared]

    def _column(self, key: str) -> Column | None:
        return self._by_key.get(key)

    def _measure(self, key: str) -> None:
        column = self._column(key)
        if column is None:
            return
        if column.width is not None:
            self._content_widths[key] = column.width
            return
        widest = text_width(column.label)
        for cells in self._row_cells.values():
            cell = cells.get(key)
            if cell is not None:
                widest = max(widest, text_width(cell))
        self._content_widths[key] = widest

    def column_widths(self) -> dict[str, int]:
        """Each column's rendered width: its widest cell or label (or its fixed width), plus
        the cell padding."""
        padding = 2 * self.cell_padding
        return {column.key: self._content_widths[column.key] + padding for column in self.declared}

    # -- rows ----------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Goes up whenever a row is added, changed, removed or moved."""
        return self._counter

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def row_keys(self) -> list[str]:
        """The row keys in display order."""
        return list(self._order)

    def get_row_index(self, row_key: str) -> int:
        """The display index of the row; KeyError when it is not in the table."""
        return self._index[row_key]

    def get_row(self, row_key: str) -> dict[str, Text]:
        """Every cell of the row (shown columns or not): column key -> Text."""
        return dict(self._row_cells[row_key])

    def get_row_at(self, index: int) -> list[Text]:
        """The cells of the row at `index`, in declared column order."""
        cells = self._row_cells[self._order[index]]
        return [cells.get(column.key, Text("")) for column in self.declared]

    def get_cell(self, row_key: str, column_key: str) -> Text:
        """The cell's value (a hidden column's too); KeyError when there is no such cell."""
        return self._row_cells[row_key][column_key]

    def __contains__(self, row_key: object) -> bool:
        return row_key in self._row_cells

    @property
    def row_key_set(self) -> KeysView[str]:
        """The row keys (a live view, for membership tests in a loop)."""
        return self._row_cells.keys()

    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor, or None for an empty table."""
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def apply(self, rows: Mapping[str, Cells], order: Sequence[str] | None = None) -> None:
        """Show exactly `rows` (row key -> column key -> Text), in `order` (default: the
        mapping's). Only what changed is touched; the cursor stays on its row key."""
        followed = self.selected_key
        # The cursor on the first row of a FOLLOW_TOP table stays on the first row.
        on_top = self.FOLLOW_TOP and followed is not None and self.cursor_row == 0
        order_list = list(rows) if order is None else list(order)
        old_cells = self._row_cells
        changed_rows: list[str] = []
        remeasure: set[str] = set()
        widths = self._content_widths
        fixed = {column.key for column in self.declared if column.width is not None}

        for key in old_cells.keys() - rows.keys():
            for column, cell in old_cells[key].items():
                if column not in fixed and text_width(cell) >= widths.get(column, 0):
                    remeasure.add(column)
            del old_cells[key]
            self._version.pop(key, None)
            self._given.pop(key, None)
            self._counter += 1
        given = self._given if self.SAME_MAPPING_UNCHANGED else None
        for key, cells in rows.items():
            if given is not None:
                if given.get(key) is cells and key in old_cells:
                    continue
                given[key] = cells
            current = old_cells.get(key)
            if current is None:
                stored = {column: cell for column, cell in cells.items()}
                old_cells[key] = stored
                self._counter += 1
                self._version[key] = self._counter
                for column, cell in stored.items():
                    if column in fixed:
                        continue
                    width = text_width(cell)
                    if width > widths.get(column, 0):
                        widths[column] = width
                continue
            if cells is not current and self._merge(key, current, cells, remeasure):
                changed_rows.append(key)
        for column in remeasure:
            self._measure(column)

        moved = order_list != self._order
        if moved:
            seen = set(order_list)
            # Keys missing from `order` keep their relative place at the end.
            order_list += [key for key in self._order if key in old_cells and key not in seen]
            self._order = [key for key in order_list if key in old_cells]
            self._counter += 1
            self._index = {key: index for index, key in enumerate(self._order)}
        layout_changed = self._relayout()
        self._update_virtual_size()
        if on_top:
            self._set_cursor(0, scroll=False)
        elif followed is not None and followed in self._index:
            # Rows came or went above the cursor's row: it moves with its row, kept in view.
            index = self._index[followed]
            self._set_cursor(index, scroll=index != self.cursor_row)
        else:
            self._set_cursor(self.cursor_row, scroll=False)
        if moved or layout_changed:
            self._changed_columns.clear()
            self.refresh()
        else:
            self._refresh_rows(changed_rows)
        self._post_highlighted()
        self._post_rows_above()

    def _merge(self, key: str, current: dict[str, Text], cells: Cells, remeasure: set[str]) -> bool:
        """Put the changed `cells` into the row `current`; True when any changed. Columns whose
        widest cell narrowed are added to `remeasure`."""
        widths = self._content_widths
        row_changed = False
        for column, cell in cells.items():
            before = current.get(column)
            if before is cell:
                continue
            if before is not None and same_cell(before, cell):
                # Kept, but as the caller's object: a caller that passes the same cells again
                # (a row held back, a cell built alike) is then matched by identity, not by
                # comparing Text (at 200 rows, most of a refresh's CPU).
                current[column] = cell
                continue
            current[column] = cell
            row_changed = True
            self._changed_columns.setdefault(key, set()).add(column)
            declared = self._column(column)
            if declared is None or declared.width is not None:
                continue
            new_width = text_width(cell)
            old_width = text_width(before) if before is not None else 0
            if new_width > widths[column]:
                widths[column] = new_width
            elif new_width < old_width and old_width >= widths[column]:
                remeasure.add(column)
        if row_changed:
            self._counter += 1
            self._version[key] = self._counter
        return row_changed

    def update_row(self, row_key: str, cells: Cells) -> None:
        """Replace some cells of one row (KeyError when the row is not in the table)."""
        remeasure: set[str] = set()
        self._given.pop(row_key, None)  # the row no longer shows what `apply` was given
        if not self._merge(row_key, self._row_cells[row_key], cells, remeasure):
            return
        for column in remeasure:
            self._measure(column)
        if self._relayout():
            self._update_virtual_size()
            self._changed_columns.clear()
            self.refresh()
        else:
            self._refresh_rows([row_key])

    def clear(self) -> None:
        """Remove every row (the columns stay)."""
        self.apply({}, [])

    # -- layout --------------------------------------------------------------------------------

    def hint(self, hidden: int) -> str:
        arrows = ("← " if self.column_page else "") + ("→ " if hidden else "")
        return f"{arrows}{hidden} more" if hidden else arrows.strip()

    def _available_width(self) -> int:
        return self.scrollable_content_region.width if self.is_mounted else 0

    def _relayout(self) -> bool:
        """Choose the shown columns for the current width; True when the layout changed."""
        widths = self.column_widths()
        available = self._available_width()
        total = len(self.declared)
        if available <= 0 or not total:
            shown = [column.key for column in self.declared]
            hidden = 0
        else:
            hint_width = cell_len(self.hint(total)) + 2 * self.cell_padding + 2  # "← → 12 more"
            pages = column_pages(widths, self.priorities, available, hint_width)
            self.column_page = min(self.column_page, len(pages) - 1)
            chosen = set(pages[self.column_page])
            shown = [column.key for column in self.declared if column.key in chosen]
            hidden = total - len(shown)
        layout = [(key, widths[key]) for key in shown]
        if hidden or self.column_page:
            hint = self.hint(hidden)
            layout.append((MORE_KEY, cell_len(hint) + 2 * self.cell_padding))
        self.shown_columns, self.hidden_count = shown, hidden
        changed = tuple(layout) != self._layout
        if changed:
            self._layout = tuple(layout)
            self._layout_generation += 1
        self._fitted_for = (available, self._layout_generation)
        return changed

    @property
    def layout_keys(self) -> list[str]:
        """The keys of the columns on screen, left to right (`MORE_KEY` for the hint)."""
        return [key for key, _ in self._layout]

    @property
    def table_width(self) -> int:
        return sum(width for _, width in self._layout)

    @property
    def header_height(self) -> int:
        return 1 if self.show_header else 0

    def _update_virtual_size(self) -> None:
        size = Size(self.table_width, self.header_height + len(self._order))
        if size != self.virtual_size:
            self.virtual_size = size

    @property
    def settled(self) -> bool:
        """Whether the shown columns were chosen for the table's current width (a snapshot
        taken before may show a layout for another width)."""
        return self._fitted_for == (self._available_width(), self._layout_generation)

    def on_resize(self, event: events.Resize) -> None:
        if self._relayout():
            self.refresh()
        self._update_virtual_size()
        self._scroll_to_cursor()

    def on_mount(self) -> None:
        if self._relayout():
            self.refresh()
        self._update_virtual_size()

    def action_next_columns(self) -> None:
        if self.hidden_count:
            self.column_page += 1
            if self._relayout():
                self.refresh()
            self._update_virtual_size()

    def action_previous_columns(self) -> None:
        if self.column_page:
            self.column_page -= 1
            if self._relayout():
                self.refresh()
            self._update_virtual_size()

    # -- cursor --------------------------------------------------------------------------------

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._order) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(self.header_height + old)
        self.refresh_line(self.header_height + new)

    def _set_cursor(self, row: int, *, scroll: bool = True) -> None:
        self.cursor_row = row
        if scroll:
            self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        visible = self.scrollable_content_region.height - self.header_height
        if visible <= 0 or not self._order:
            return
        top = int(self.scroll_y)
        row = self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=False, force=True)

    @property
    def rows_above(self) -> int:
        """How many rows are above the visible ones (0 when the first row is in view)."""
        return min(int(self.scroll_y), len(self._order))

    def _post_rows_above(self) -> None:
        count = self.rows_above
        if count != self._rows_above:
            self._rows_above = count
            self.post_message(self.RowsAbove(self, count))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._post_rows_above()

    def _post_highlighted(self) -> None:
        key = self.selected_key
        if key is None:
            self._highlighted = None
            return
        now = (self.cursor_row, key)
        if now != self._highlighted:
            self._highlighted = now
            self.post_message(self.RowHighlighted(self, self.cursor_row, key))

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on the row at `row` (clamped to the table)."""
        self.hover_row = -1
        self._set_cursor(row, scroll=scroll)
        self._post_highlighted()

    def move_cursor_to_key(self, row_key: str) -> None:
        """Put the cursor on the row with this key (nothing when it is not in the table)."""
        if row_key in self._index:
            self.move_cursor(row=self._index[row_key])

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - self.header_height)

    def action_page_up(self) -> None:
        page = self._page()
        self.scroll_to(y=max(0, int(self.scroll_y) - page), animate=False, force=True)
        self.move_cursor(row=self.cursor_row - page)

    def action_page_down(self) -> None:
        page = self._page()
        self.scroll_to(y=int(self.scroll_y) + page, animate=False, force=True)
        self.move_cursor(row=self.cursor_row + page)

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        key = self.selected_key
        if key is not None and self.show_cursor:
            self.post_message(self.RowSelected(self, self.cursor_row, key))

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < self.header_height:
            return None
        row = offset.y - self.header_height + int(self.scroll_y)
        return row if 0 <= row < len(self._order) else None

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row is None:
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row, scroll=False)
        self._set_hover(row)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        row = self._row_at(event)
        self._set_hover(-1 if row is None else row)

    def on_leave(self, event: events.Leave) -> None:
        self._set_hover(-1)

    def _set_hover(self, row: int) -> None:
        if row != self.hover_row:
            old, self.hover_row = self.hover_row, row
            for index in (old, row):
                if index >= 0:
                    self.refresh_line(self.header_height + index)

    # -- rendering -----------------------------------------------------------------------------

    def _refresh_rows(self, keys: list[str]) -> None:
        """Repaint the visible lines of these rows (all lines when there are many)."""
        top = int(self.scroll_y)
        bottom = top + self.scrollable_content_region.height
        visible = [i for key in keys if top <= (i := self._index[key]) < bottom]
        if len(visible) > REPAINT_ROWS:
            self._changed_columns.clear()
            self.refresh()
            return
        scroll_x = int(self.scroll_x)
        for key in keys:
            index = self._index[key]
            changed = self._changed_columns.pop(key, None)
            if not top <= index < bottom:
                continue
            # A terminal update of part of a line is written from the widget's left edge to
            # the part's right end: up to the last changed column, not the whole line (a
            # count moving in the third column rewrites a third of it).
            end = self._end_of(changed) if changed is not None and not scroll_x else None
            if end is None:
                self.refresh_line(self.header_height + index)
            elif end > 0:  # else only columns not shown changed
                self.refresh(Region(0, self.header_height + index - top, end, 1))

    def _end_of(self, columns: set[str]) -> int | None:
        """Where the last of these columns ends on screen (0: none shown), None when a width
        is not known yet."""
        x = end = 0
        for column, width in self._layout:
            x += width
            if column in columns:
                end = x
        return end if self.size.width > 0 else None

    def release_render_caches(self) -> None:
        """Free the row strips: a hidden screen's are stale by the time it is shown again. The
        cell renders stay (bounded, keyed by value): unchanged cells repaint from them."""
        self._row_strips.clear()
        self._header_strip = None

    def notify_style_update(self) -> None:
        # CSS, theme or pseudo-class (focus) changed: the styles baked into renders are stale.
        super().notify_style_update()
        self._palette_key = None

    def _palette(self) -> None:
        key = (self.get_pseudo_class_state(), self.rich_style)
        if key != self._palette_key:
            self._palette_key = key
            self._palette_generation += 1
            self._styles.clear()

    def _cell_styles(
        self, kind: str, fixed: bool, cursor: bool, hover: bool
    ) -> tuple[Style, Style]:
        """(pre style, post style) of a cell: `kind` is header, even, odd or plain."""
        cache_key = (kind, fixed, cursor, hover)
        styles = self._styles.get(cache_key)
        if styles is not None:
            return styles
        get = self.get_component_rich_style
        if kind == "header":
            row_style = get("live-table--header")
        elif fixed:
            row_style = get("live-table--fixed")
        elif kind == "even":
            row_style = get("live-table--even-row")
        elif kind == "odd":
            row_style = get("live-table--odd-row")
        else:
            row_style = self.rich_style
        component = Style()
        if hover:
            component += get("live-table--hover")
        if cursor:
            component += get("live-table--cursor")
            if fixed:
                component += get("live-table--fixed-cursor")
        post = Style.from_color(component.color) + Style.from_color(bgcolor=component.bgcolor)
        styles = (row_style + component, post)
        self._styles[cache_key] = styles
        return styles

    def render_lines(self, crop: Region) -> list[Strip]:
        self._palette()  # once per paint: the styles of the focus state and theme now
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        if self._palette_key is None:
            self._palette()
        width = self.size.width
        if self.show_header and y == 0:
            return self._render_header(width)
        index = y - self.header_height + int(self.scroll_y)
        if not 0 <= index < len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[index]
        kind = ("odd" if index % 2 else "even") if self.zebra_stripes else "plain"
        cursor = self.show_cursor and index == self.cursor_row
        hover = index == self.hover_row
        signature = (
            self._version.get(key),
            kind,
            cursor,
            hover,
            self._layout_generation,
            self._palette_generation,
            width,
        )
        cached = self._row_strips.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        strip = self._render_row(key, kind, cursor, hover, width)
        self._row_strips[key] = (signature, strip)
        self.rows_rendered += 1
        return strip

    def _render_header(self, width: int) -> Strip:
        signature = (self._layout_generation, self._palette_generation, width)
        if self._header_strip is not None and self._header_strip[0] == signature:
            return self._header_strip[1]
        pre, post = self._cell_styles("header", False, False, False)
        labels = {column.key: column.label for column in self.declared}
        labels[MORE_KEY] = Text(self.hint(self.hidden_count), style="bold")
        segments: list[Segment] = []
        for key, column_width in self._layout:
            segments += self._cell_segments(labels[key], column_width, pre, post)
        strip = self._finish(segments, width, pre)
        self._header_strip = (signature, strip)
        return strip

    def _render_row(self, key: str, kind: str, cursor: bool, hover: bool, width: int) -> Strip:
        cells = self._row_cells[key]
        renders = self._cell_renders
        empty = Text("")
        segments: list[Segment] = []
        for position, (column, column_width) in enumerate(self._layout):
            fixed = position < self.fixed_columns
            value = cells.get(column, empty)
            cache_key = (key, column, column_width, kind, fixed, cursor, hover,
                         self._palette_generation)  # fmt: skip
            cached = renders.get(cache_key)
            if cached is not None and (cached[0] is value or same_cell(cached[0], value)):
                segments += cached[1]
                continue
            pre, post = self._cell_styles(kind, fixed, cursor, hover)
            rendered = self._cell_segments(value, column_width, pre, post)
            renders[cache_key] = (value, rendered)
            segments += rendered
        extend, _ = self._cell_styles(kind, False, cursor, hover)
        return self._finish(segments, width, extend)

    def _cell_segments(self, value: Text, width: int, pre: Style, post: Style) -> list[Segment]:
        padding = self.cell_padding
        inner = width - 2 * padding
        if inner <= 0:
            return [Segment(" " * width, pre)]
        line = [Segment(" " * padding), *one_line(safe(value), inner, self.app.console)]
        line.append(Segment(" " * padding))
        return list(Segment.apply_style(line, pre, post))

    def _finish(self, segments: list[Segment], width: int, extend: Style) -> Strip:
        used = self.table_width
        if used < width:
            segments.append(Segment(" " * (width - used), extend))
        return Strip(segments).crop(0, width).adjust_cell_length(width, self.rich_style).simplify()
