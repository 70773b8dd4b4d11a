"""The per-entrypoint table, reconciled by row key so the cursor never jumps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.fitted_table import FittedTable
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


class OverviewTable(FittedTable):
    """One row per entrypoint; `apply` updates changed cells in place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # entrypoint -> the row and the age text last shown: most rows of a refresh are
        # unchanged, and building their cells again was most of a refresh's CPU.
        self._shown: dict[str, tuple[EntrypointRow, str]] = {}
        # Most urgent first (the columns' order): a narrow terminal drops from the right.
        kwargs.setdefault("priorities", {key: i for i, (key, _) in enumerate(COLUMNS)})
        super().__init__(*args, **kwargs)

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.fixed_columns = 1
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def apply(self, snapshot: OverviewSnapshot, now: datetime) -> None:
        existing = {str(key.value) for key in self.rows}
        wanted = {row.entrypoint for row in snapshot.rows}
        added = False
        with self.app.batch_update():
            for key in existing - wanted:
                self.remove_row(key)
                self._shown.pop(key, None)
            for row in snapshot.rows:
                oldest_s = _oldest_s(row, now)
                shown = (row, fmt.seconds(oldest_s))
                # A row the table lost (or never had) is built afresh, whatever was shown.
                previous = self._shown.get(row.entrypoint) if row.entrypoint in existing else None
                if previous == shown:
                    continue
                self._shown[row.entrypoint] = shown
                if previous is not None and previous[0] == row:  # only the age moved on
                    cell = self._oldest_cell(oldest_s)
                    if self.get_cell(row.entrypoint, "oldest") != cell:
                        self.update_cell(row.entrypoint, "oldest", cell, update_width=True)
                    continue
                cells = self._cells(row, now)
                if row.entrypoint not in existing:
                    self.add_row(*(cells[key] for key, _ in COLUMNS), key=row.entrypoint)
                    added = True
                    continue
                for column, cell in cells.items():
                    if self.get_cell(row.entrypoint, column) != cell:
                        self.update_cell(row.entrypoint, column, cell, update_width=True)
            if added:
                self.sort("entrypoint", key=lambda cell: cell.plain)

    def _oldest_cell(self, oldest_s: float | None) -> Text:
        if (oldest_s or 0) > OLD_READY_S:
            return marked_count(self.app, "stale", fmt.seconds(oldest_s))
        return Text(fmt.seconds(oldest_s), justify="right")

    def _style(self, name: str) -> str:
        return self.app.theme_variables.get(name, "")

    def _cells(self, row: EntrypointRow, now: datetime) -> dict[str, Text]:
        def number(value: int, status: str | None = None) -> Text:
            style = self._style(status_style(status).variable) if status and value else ""
            return Text(fmt.count(value), style=style, justify="right")

        def alarm(value: int, status: str) -> Text:
            # States that need action carry their glyph too: readable without colour.
            return marked_count(self.app, status, fmt.count(value)) if value else number(0)

        oldest_s = _oldest_s(row, now)
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
            "oldest": self._oldest_cell(oldest_s),
            "p50": Text(fmt.seconds(row.p50_s), justify="right"),
            "p95": Text(fmt.seconds(row.p95_s), justify="right"),
            "trend": Text(
                fmt.sparkline(row.sparkline, TREND_WIDTH),
                style=self._style(status_style("picked").variable),
            ),
        }


def _oldest_s(row: EntrypointRow, now: datetime) -> float | None:
    """How long the oldest ready job has waited, or None when nothing is ready."""
    return (now - row.oldest_ready_since).total_seconds() if row.oldest_ready_since else None
