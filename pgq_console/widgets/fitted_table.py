"""A live table whose columns are shown whole or not at all.

A column cut at the right edge reads as a real value ("130" for 1295, "Deferr"). Here every
column has a priority; when the columns do not fit the table's width, the least important are
dropped (never cut) and a last header cell says how many: "→ 3 more". `→` and `←` page through
the dropped columns (the pinned ones, priority 0, stay), so each is reachable, whole.

The table keeps every cell, shown or not, so `get_cell` answers for any column and a column that
comes back has its current values. Built on the public DataTable API (`add_column`, `add_row`,
`update_cell`, `clear`); the rows are re-added only when the set of shown columns changes.
"""

from __future__ import annotations

from typing import Any, Self

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets.data_table import ColumnKey, RowKey

from pgq_console.widgets.live_table import LiveDataTable

MORE_KEY = "more-columns"
PINNED = 0


def _width(value: object) -> int:
    if isinstance(value, Text):
        return max((cell_len(line) for line in value.plain.splitlines()), default=0)
    return cell_len(str(value))


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


class FittedTable(LiveDataTable):
    """`priorities`: column key -> rank (0 = always shown, then 1, 2, ... dropped last-first).

    Columns without a rank keep their declared order after the ranked ones.
    """

    BINDINGS = [
        Binding("right", "next_columns", "More columns", show=False),
        Binding("left", "previous_columns", "Previous columns", show=False),
    ]

    def __init__(self, *args: Any, priorities: dict[str, int] | None = None, **kwargs: Any) -> None:
        self.priorities: dict[str, int] = dict(priorities or {})
        self.declared: list[tuple[str, Text | str]] = []  # every column, in display order
        self.all_cells: dict[str, dict[str, Any]] = {}  # row key -> column key -> value
        self.shown_columns: list[str] = []
        self.hidden_count = 0
        self.column_page = 0
        self._fit_pending = False
        self._painted_widths: tuple[int, ...] = ()
        super().__init__(*args, **kwargs)

    # -- the DataTable API, over every column --------------------------------------------------

    def add_column(
        self,
        label: Any,
        *,
        width: int | None = None,
        key: str | None = None,
        default: Any = None,
    ) -> ColumnKey:
        name = key if key is not None else f"column-{len(self.declared)}"
        self.priorities.setdefault(name, 1000 + len(self.declared))
        self.declared.append((name, label))
        for cells in self.all_cells.values():
            cells[name] = default
        self.shown_columns.append(name)
        self._schedule_fit()
        return super().add_column(label, width=width, key=name, default=default)

    def add_row(
        self,
        *cells: Any,
        height: int | None = 1,
        key: str | None = None,
        label: Any = None,
    ) -> RowKey:
        names = [name for name, _ in self.declared]
        values = dict(zip(names, cells, strict=False))
        row_key = super().add_row(*self._shown_values(values), height=height, key=key, label=label)
        self.all_cells[str(row_key.value)] = values
        self._schedule_fit()
        return row_key

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Text,
        *,
        update_width: bool = False,
    ) -> None:
        row = str(row_key.value if isinstance(row_key, RowKey) else row_key)
        column = str(column_key.value if isinstance(column_key, ColumnKey) else column_key)
        cells = self.all_cells.get(row)
        if cells is not None and column in cells:
            if _width(cells[column]) != _width(value):
                self._schedule_fit()
            cells[column] = value
            if column not in self.shown_columns:
                return
        super().update_cell(row_key, column_key, value, update_width=update_width)

    def get_cell(self, row_key: RowKey | str, column_key: ColumnKey | str) -> Any:
        row = str(row_key.value if isinstance(row_key, RowKey) else row_key)
        column = str(column_key.value if isinstance(column_key, ColumnKey) else column_key)
        cells = self.all_cells.get(row)
        if cells is not None and column in cells and column not in self.shown_columns:
            return cells[column]
        return super().get_cell(row_key, column_key)

    def remove_row(self, row_key: RowKey | str) -> None:
        super().remove_row(row_key)
        self.all_cells.pop(str(row_key.value if isinstance(row_key, RowKey) else row_key), None)
        self._schedule_fit()

    def clear(self, columns: bool = False) -> Self:
        super().clear(columns=columns)
        self.all_cells.clear()
        if columns:
            self.declared.clear()
            self.shown_columns.clear()
        return self

    # -- fitting -------------------------------------------------------------------------------

    def _shown_values(self, values: dict[str, Any]) -> list[Any]:
        shown = [values.get(name) for name in self.shown_columns]
        if self.hidden_count:
            shown.append(Text(""))
        return shown

    def _schedule_fit(self) -> None:
        if not self._fit_pending and self.is_mounted:
            self._fit_pending = True
            self.call_after_refresh(self.fit_columns)

    def on_resize(self, event: events.Resize) -> None:
        self._schedule_fit()

    def on_idle(self, event: events.Idle) -> None:
        # DataTable measures new rows when idle, after rows may already have been painted (and
        # cached) at their labels' widths; its row caches do not know widths changed since.
        widths = tuple(column.content_width for column in self.columns.values())
        if widths != self._painted_widths:
            self._painted_widths = widths
            self.notify_style_update()  # public: drops the render caches and repaints

    def on_mount(self) -> None:
        self._schedule_fit()

    def column_widths(self) -> dict[str, int]:
        """Each column's rendered width: its widest cell or label, plus the cell padding."""
        padding = 2 * self.cell_padding
        widths = {name: _width(label) for name, label in self.declared}
        for cells in self.all_cells.values():
            for name, value in cells.items():
                if name in widths:
                    widths[name] = max(widths[name], _width(value))
        return {name: width + padding for name, width in widths.items()}

    @property
    def settled(self) -> bool:
        """Whether every shown column is laid out as wide as its widest cell (DataTable measures
        new rows when idle: until then a column may still have its label's width)."""
        if self._fit_pending:
            return False
        padding = 2 * self.cell_padding
        widths = self.column_widths()
        for name in self.shown_columns:
            column = self.columns.get(ColumnKey(name))
            if column is None or column.content_width < widths[name] - padding:
                return False
        return True

    def hint(self, hidden: int) -> str:
        arrows = ("← " if self.column_page else "") + ("→ " if hidden else "")
        return f"{arrows}{hidden} more" if hidden else arrows.strip()

    def fit_columns(self) -> None:
        """Show the current page of columns that fit whole; rebuild only when the set changed."""
        self._fit_pending = False
        if not self.declared or not self.is_mounted:
            return
        available = self.scrollable_content_region.width
        if available <= 0:
            return
        widths = self.column_widths()
        total = len(self.declared)
        hint_width = cell_len(self.hint(total)) + 2 * self.cell_padding + 2  # "← → 12 more"
        pages = column_pages(widths, self.priorities, available, hint_width)
        self.column_page = min(self.column_page, len(pages) - 1)
        chosen = set(pages[self.column_page])
        shown = [name for name, _ in self.declared if name in chosen]
        hidden = total - len(shown)
        if shown == self.shown_columns and hidden == self.hidden_count:
            return
        self._rebuild(shown, hidden)

    def _rebuild(self, shown: list[str], hidden: int) -> None:
        cursor_key = self.selected_key
        order = [str(row.key.value) for row in self.ordered_rows]
        heights = {str(row.key.value): row.height for row in self.ordered_rows}
        labels = {str(row.key.value): row.label for row in self.ordered_rows}
        declared, cells = list(self.declared), self.all_cells
        with self.app.batch_update():
            LiveDataTable.clear(self, columns=True)
            self.shown_columns, self.hidden_count = shown, hidden
            for name, label in declared:
                if name in shown:
                    LiveDataTable.add_column(self, label, key=name)
            if hidden or self.column_page:
                LiveDataTable.add_column(self, Text(self.hint(hidden), style="bold"), key=MORE_KEY)
            for key in order:
                LiveDataTable.add_row(
                    self,
                    *self._shown_values(cells[key]),
                    height=heights[key],
                    key=key,
                    label=labels[key],
                )
            if cursor_key in cells:
                self.move_cursor(row=self.get_row_index(cursor_key), animate=False)

    def action_next_columns(self) -> None:
        if self.hidden_count:
            self.column_page += 1
            self.fit_columns_now()

    def action_previous_columns(self) -> None:
        if self.column_page:
            self.column_page -= 1
            self.fit_columns_now()

    def fit_columns_now(self) -> None:
        self.shown_columns = []  # force: the page changed even if the count did not
        self.fit_columns()
