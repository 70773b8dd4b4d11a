"""The base of every table the console refreshes while it is on screen."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable


class LiveDataTable(DataTable[Text]):
    """A DataTable whose render caches hold about a screenful.

    Live tables change cells on every refresh, so DataTable's caches (sized for large static
    tables: 10,000 cells) fill with stale renders and the console's memory creeps up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # About two screenfuls of a 150-column terminal: rows * columns cells.
        self._cell_render_cache = LRUCache(1000)
        self._row_render_cache = LRUCache(120)
        self._row_renderable_cache = LRUCache(120)
        self._line_cache = LRUCache(120)

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
        """Free the renders: a hidden screen's are stale by the time it is shown again."""
        self._clear_caches()
