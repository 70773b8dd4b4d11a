"""The base of every table the console refreshes while it is on screen."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.containers import Lines
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region
from textual.render import measure
from textual.widgets import DataTable
from textual.widgets._data_table import (
    CellDoesNotExist,
    CellKey,
    ColumnKey,
    RowKey,
    default_cell_formatter,
)

# About two screenfuls of a 150-column terminal: rows * columns cells.
CELL_RENDERS = 1000
# Up to this many changed rows (or half the table) are repainted row by row, more all at once.
REPAINT_ROWS = 8


class LiveDataTable(DataTable[Text]):
    """A DataTable that re-renders only the cells a refresh changed, with bounded caches.

    DataTable keys its cell renders on a table-wide update counter, so changing one cell makes
    it re-render every visible cell (Rich layout per cell: most of a live screen's CPU). Here a
    cell's render is reused while the cell holds the same value object at the same place and
    style; `update_cell` stores a new object, so only changed cells miss.

    Column widths follow updated cells the way DataTable's do, without its cost: it re-measures
    a whole column for every cell that got narrower, through Rich's console options (a
    terminal-size syscall each), which made 200 live rows cost most of a core.

    Live tables change cells on every refresh, so DataTable's own caches (sized for large static
    tables: 10,000 cells) fill with stale renders and memory creeps up: they hold about a
    screenful here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # key -> (the cell's value object, its render); before DataTable's init, whose
        # watchers already clear caches
        self._stable_cell_renders: LRUCache[tuple[object, ...], tuple[object, Any]] = LRUCache(
            CELL_RENDERS
        )
        self._rows_to_repaint: set[RowKey] = set()
        super().__init__(*args, **kwargs)
        self._cell_render_cache = LRUCache(CELL_RENDERS // 4)
        self._row_render_cache = LRUCache(120)
        self._row_renderable_cache = LRUCache(120)
        self._line_cache = LRUCache(120)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        row_key = self._row_locations.get_key(row_index) if row_index >= 0 else None
        column_key = self._column_locations.get_key(column_index) if column_index >= 0 else None
        if row_key is None or column_key is None:  # header and label cells: few, uncached here
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        value = self._data.get(row_key, {}).get(column_key)
        height = self.rows[row_key].height
        key = (
            row_key,
            column_key,
            row_index,  # the render carries the row index as mouse metadata
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
            height,
        )
        cached = self._stable_cell_renders.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]  # type: ignore[no-any-return]
        lines = None
        if isinstance(value, Text) and height == 1:
            lines = self._render_text_cell(
                value, row_index, column_index, base_style, width, cursor, hover
            )
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._stable_cell_renders[key] = (value, lines)
        return lines

    def _render_text_cell(
        self,
        value: Text,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> list[list[Segment]] | None:
        """DataTable's render of a one-line Text cell, without Rich's nested layout passes.

        The same segments as `DataTable._render_cell` (Styled(Padding(text)) through
        `render_lines`; a test compares the two), at a seventh of the cost. None when the cell
        needs the general path (tabs, newlines, too narrow).
        """
        padding = self.cell_padding
        inner = width - 2 * padding
        console = self.app.console
        if inner <= 0 or (segments := _one_line(value, inner, console)) is None:
            return None
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            row_index < self.fixed_rows or column_index < self.fixed_columns,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pre_style = (
            base_style + Style.from_meta({"row": row_index, "column": column_index})
        ) + component_style
        used = sum(cell_len(segment.text) for segment in segments)
        line = [Segment(" " * padding), *segments]
        if used < inner:
            line.append(Segment(" " * (inner - used)))  # render_lines pads, unstyled
        line.append(Segment(" " * padding))
        return [list(Segment.apply_style(line, pre_style, post_style))]

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Text,
        *,
        update_width: bool = False,
    ) -> None:
        """DataTable's, but only the cell's row is repainted (DataTable repaints every visible
        line, ~0.2 ms each, for one changed cell), once per batch (`_repaint_rows`); a column
        that changes width repaints all (`_update_column_widths`)."""
        row_key = RowKey(row_key) if isinstance(row_key, str) else row_key
        column_key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        if row_key not in self._row_locations or column_key not in self._column_locations:
            raise CellDoesNotExist(
                f"No cell exists for row_key={row_key!r}, column_key={column_key!r}."
            )
        self._data[row_key][column_key] = value
        self._update_count += 1
        if update_width:
            self._updated_cells.add(CellKey(row_key, column_key))
            self._require_update_dimensions = True
        if not self._rows_to_repaint:
            self.call_next(self._repaint_rows)
        self._rows_to_repaint.add(row_key)

    def _repaint_rows(self) -> None:
        """Repaint the rows `update_cell` changed, found in one pass (DataTable's own row
        lookup walks every row above, for each row)."""
        rows, self._rows_to_repaint = self._rows_to_repaint, set()
        if len(rows) > max(REPAINT_ROWS, self.row_count // 2):
            self.refresh()  # most of the table: one repaint, not a region per row
            return
        width = max(
            self.size.width,
            sum(column.get_render_width(self) for column in self.columns.values())
            + self._row_label_column_width,
        )
        y = self.header_height if self.show_header else 0
        for row in self.ordered_rows:
            if row.key in rows:
                self._refresh_region(Region(0, y, width, row.height))
            y += row.height

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        """DataTable's widths (the widest cell or the label), each column re-measured at most
        once per batch, and Text cells measured without Rich's console options."""
        widths_before = [column.content_width for column in self.columns.values()]
        narrowed: set[ColumnKey] = set()
        for row_key, column_key in updated_cells:
            column = self.columns.get(column_key)
            row = self.rows.get(row_key)
            if column is None or row is None:
                continue
            width = self._cell_width(self._data[row_key][column_key], row.height)
            if width < column.content_width:
                narrowed.add(column_key)
            else:
                column.content_width = max(width, self._cell_width(column.label, 1))
        for column_key in narrowed:
            column = self.columns[column_key]
            column.content_width = max(
                self._cell_width(column.label, 1),
                *(
                    self._cell_width(cells[column_key], self.rows[row_key].height)
                    for row_key, cells in self._data.items()
                    if column_key in cells
                ),
            )
        self._require_update_dimensions = True
        if [column.content_width for column in self.columns.values()] != widths_before:
            self.refresh()  # every line moves: `update_cell` repainted only its row

    def _cell_width(self, value: object, height: int) -> int:
        """What `textual.render.measure` says of the cell's formatted value."""
        if isinstance(value, Text):  # the formatter returns Text as it is
            return max((cell_len(line) for line in value.plain.splitlines()), default=0)
        formatted = default_cell_formatter(value, wrap=height != 1, height=height)
        return measure(self.app.console, formatted, 1)

    def _clear_caches(self) -> None:
        # DataTable calls this when cursor, zebra, header or padding settings change.
        super()._clear_caches()
        self._stable_cell_renders.clear()

    def notify_style_update(self) -> None:
        # CSS or theme changed: the cursor and hover colours baked into the renders are stale.
        super().notify_style_update()
        self._stable_cell_renders.clear()

    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # the cursor may point past rows removed by the last refresh
            return None
        return str(key.value)

    def release_render_caches(self) -> None:
        """Free DataTable's renders: a hidden screen's are stale by the time it is shown again.

        The per-cell renders stay (bounded, and keyed so that they never go stale): cells
        unchanged since the last visit repaint from them when the screen comes back.
        """
        DataTable._clear_caches(self)


def _one_line(text: Text, width: int, console: Console) -> list[Segment] | None:
    """What `Text.__rich_console__` yields for one unwrapped line `width` cells wide (before
    padding), or None when the text needs the general path."""
    plain = text.plain
    if "\n" in plain or "\t" in plain or text.overflow == "ignore":
        return None
    overflow = text.overflow or "fold"
    line = text.copy()
    if text.justify and text.justify != "default":
        Lines([line]).justify(console, width, justify=text.justify, overflow=overflow)
    line.truncate(width, overflow=overflow)
    if line.spans:
        return list(line.render(console))
    # Text.render drops the base style of a span-less text; Text.__rich_console__ keeps it
    # (as a span, so not for an empty text).
    style = console.get_style(line.style) if line.style and line.plain else None
    return [Segment(line.plain, style)]
