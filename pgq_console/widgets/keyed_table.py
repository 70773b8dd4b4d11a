"""A DataTable reconciled by row key: changed cells updated in place, never cleared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text

from pgq_console.widgets.fitted_table import FittedTable


class KeyedTable(FittedTable):
    """Columns given up front; `apply` adds, updates and removes rows by key, keeping the cursor.

    Columns are dropped whole on a narrow terminal, the last declared first, unless
    `priorities` ranks them otherwise (FittedTable).
    """

    def __init__(self, columns: tuple[tuple[str, str], ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns = columns
        self._order: list[str] = []

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label in self._columns:
            self.add_column(label, key=key)

    def apply(self, rows: Mapping[str, Mapping[str, Text]]) -> None:
        """Make the table show `rows` (in this order), touching only what changed."""
        existing = {str(key.value) for key in self.rows}
        order = list(rows)
        with self.app.batch_update():
            for key in existing - rows.keys():
                self.remove_row(key)
            for key, cells in rows.items():
                if key not in existing:
                    self.add_row(*(cells[c] for c, _ in self._columns), key=key)
                    continue
                for column, cell in cells.items():
                    if self.get_cell(key, column) != cell:
                        self.update_cell(key, column, cell, update_width=True)
            if order != self._order:
                self._order_by(order)
        self._order = order

    def _order_by(self, order: list[str]) -> None:
        # DataTable.sort only sees cell values; the order here is the caller's, by row key.
        from textual._two_way_dict import TwoWayDict

        position = {key: i for i, key in enumerate(order)}
        ordered = sorted(self._data, key=lambda key: position.get(str(key.value), 1 << 30))
        self._row_locations = TwoWayDict({key: index for index, key in enumerate(ordered)})
        self._update_count += 1
        self.refresh()
