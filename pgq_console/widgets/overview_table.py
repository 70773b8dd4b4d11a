"""The per-entrypoint table, reconciled by row key so the cursor never jumps."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveDataTable
from pgq_console.widgets.status import marked_count, status_style

COLUMNS: tuple[tuple[str, str], ...] = (
    # Most urgent first, so 80 columns still show backlog, stuck and failing work.
    ("entrypoint", "Entrypoint"),
    ("ready", "Ready"),
    ("picked", "Picked"),
    ("held", "Held"),
    ("oldest", "Oldest"),
    ("in", "In/s"),
    ("out", "Out/s"),
    ("err_1m", "Err/1m"),
    ("done_1m", "Done/1m"),
    ("deferred", "Deferred"),
    ("err_1h", "Err/1h"),
    ("done_1h", "Done/1h"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("trend", "Trend 30m"),
)
TREND_WIDTH = 15
OLD_READY_S = 300.0
ENTRYPOINT_WIDTH = 24


class OverviewTable(LiveDataTable):
    """One row per entrypoint; `apply` updates changed cells in place."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.fixed_columns = 1
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def apply(self, snapshot: OverviewSnapshot, now: datetime) -> None:
        wanted = {row.entrypoint: self._cells(row, now) for row in snapshot.rows}
        existing = {str(key.value) for key in self.rows}
        added = False
        with self.app.batch_update():
            for key in existing - wanted.keys():
                self.remove_row(key)
            for entrypoint, cells in wanted.items():
                if entrypoint not in existing:
                    self.add_row(*(cells[key] for key, _ in COLUMNS), key=entrypoint)
                    added = True
                    continue
                for column, cell in cells.items():
                    if self.get_cell(entrypoint, column) != cell:
                        self.update_cell(entrypoint, column, cell, update_width=True)
            if added:
                self.sort("entrypoint", key=lambda cell: cell.plain)

    def _style(self, name: str) -> str:
        return self.app.theme_variables.get(name, "")

    def _cells(self, row: EntrypointRow, now: datetime) -> dict[str, Text]:
        def number(value: int, status: str | None = None) -> Text:
            style = self._style(status_style(status).variable) if status and value else ""
            return Text(fmt.count(value), style=style, justify="right")

        def alarm(value: int, status: str) -> Text:
            # States that need action carry their glyph too: readable without colour.
            return marked_count(self.app, status, fmt.count(value)) if value else number(0)

        oldest_s = (
            (now - row.oldest_ready_since).total_seconds() if row.oldest_ready_since else None
        )
        return {
            # Entrypoint names come from the database: plain Text, control characters escaped.
            "entrypoint": Text(printable(row.entrypoint, limit=ENTRYPOINT_WIDTH)),
            "ready": number(row.ready, "ready"),
            "deferred": number(row.deferred, "deferred"),
            "picked": number(row.picked, "picked"),
            "held": alarm(row.held, "held"),
            "done_1m": number(row.completed_1m),
            "err_1m": alarm(row.exceptions_1m, "exception"),
            "done_1h": number(row.completed_1h),
            "err_1h": alarm(row.exceptions_1h, "exception"),
            "in": Text(fmt.rate(row.rate_in), justify="right"),
            "out": Text(fmt.rate(row.rate_out), justify="right"),
            "oldest": marked_count(self.app, "stale", fmt.seconds(oldest_s))
            if (oldest_s or 0) > OLD_READY_S
            else Text(fmt.seconds(oldest_s), justify="right"),
            "p50": Text(fmt.seconds(row.p50_s), justify="right"),
            "p95": Text(fmt.seconds(row.p95_s), justify="right"),
            "trend": Text(
                fmt.sparkline(row.sparkline, TREND_WIDTH),
                style=self._style(status_style("picked").variable),
            ),
        }
