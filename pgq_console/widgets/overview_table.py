"""The per-entrypoint table, reconciled by row key so the cursor never jumps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from rich.console import JustifyMethod
from rich.text import Text

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.pacing import REPAINT_GAP_S, paced
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
# Cells kept for reuse (`OverviewTable._text`): a few screenfuls of distinct numbers.
TEXT_MEMO = 4096
# A change in these columns is news whatever its size: painted at once, never paced.
STATE_COLUMNS = frozenset({"entrypoint", "held"})
# In these a change of colour or glyph is news (errors appear, an age turns stale); their other
# changes, and every change of the other columns (counts, rates, ages), are numbers moving on.
ALARM_COLUMNS = frozenset({"err_1m", "err_1h", "oldest"})


class OverviewTable(LiveTable):
    """One row per entrypoint, by name; `apply` updates changed cells in place."""

    SAME_MAPPING_UNCHANGED = True  # a row's cells are a new mapping whenever one changed

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # entrypoint -> the row, the age text last shown and its cells: most rows of a refresh
        # are unchanged, and building their cells again was most of a refresh's CPU.
        self._shown: dict[str, tuple[EntrypointRow, str, dict[str, Text]]] = {}
        # entrypoint -> the cells on screen and when they were painted (injected clock).
        self._painted: dict[str, tuple[dict[str, Text], datetime]] = {}
        self.repaint_gap_s = REPAINT_GAP_S
        # entrypoint -> the rates (in, out) and durations (p50, p95) its row shows
        # (`fmt.steady_rate`, `fmt.steady_duration`).
        self._rates: dict[str, tuple[float, float, float | None, float | None]] = {}
        # The snapshot last applied and, while rows of it are held back, when the first of them
        # may be painted. The screen repaints its header and status line on timers of their
        # own and applies the same snapshot again each time: at 2,500 jobs/s, 859 applies for
        # 185 readings, a tenth of a core, nearly all of them changing nothing.
        self._held: tuple[OverviewSnapshot, datetime] | None = None
        # The row keys last applied and their order (by name as shown).
        self._sorted: tuple[set[str], list[str]] | None = None
        # (text, style, glyph, justify) -> the cell: the same object for the same look.
        self._texts: dict[tuple[str, str, str | None, JustifyMethod | None], Text] = {}
        self._theme: str | None = None  # the theme those cells were built in
        # Most urgent first (the columns' order): a narrow terminal drops from the right.
        super().__init__(
            COLUMNS,
            priorities={key: i for i, (key, _) in enumerate(COLUMNS)},
            fixed_columns=1,
            id=id,
            classes=classes,
        )

    def apply_snapshot(self, snapshot: OverviewSnapshot, now: datetime) -> float | None:
        """Show the snapshot's rows. A row whose numbers only moved on (rates, ages, counts)
        keeps what it shows until its last paint is `REPAINT_GAP_S` old on the injected clock;
        a new row or a state change (`is_state_change`) is painted at once.

        Returns None when every row shows the snapshot, else the seconds until the first row
        held back may be painted (apply the latest snapshot again then). When one row is due,
        the rows held back for at least half the gap are painted with it: rows first painted
        at different moments (a new entrypoint, a state change) fall into step, instead of each
        asking for a repaint of its own every second."""
        if self.app.theme != self._theme:
            # The cells carry the theme's colours: built again, repainted by `LiveTable.apply`
            # (a colour is a change there), paced like any other number.
            self._theme = self.app.theme
            self._texts.clear()
            self._shown = {}
            self._held = None
        held = self._held
        if held is not None and held[0] is snapshot and now < held[1]:
            return (held[1] - now).total_seconds()  # nothing held back is due yet
        gap = self.repaint_gap_s
        due_now = any(
            not paced((now - on_screen[1]).total_seconds(), gap)
            for on_screen in self._painted.values()
        )
        hold_gap = gap / 2 if due_now else gap
        rows: dict[str, dict[str, Text]] = {}
        shown: dict[str, tuple[EntrypointRow, str, dict[str, Text]]] = {}
        painted: dict[str, tuple[dict[str, Text], datetime]] = {}
        wait: float | None = None
        rates: dict[str, tuple[float, float, float | None, float | None]] = {}
        known = self.row_key_set
        for row in snapshot.rows:
            name = row.entrypoint
            oldest_s = _oldest_s(row, now)
            age = fmt.seconds(oldest_s)
            # A row the table lost (or never had) is built afresh, whatever was shown.
            previous = self._shown.get(name) if name in known else None
            if previous is not None and (previous[0] is row or previous[0] == row):
                # The same numbers: the same rates shown (`fmt.steady_rate` keeps them).
                rates[name] = self._rates[name]
                cells = previous[2]
                if previous[1] != age:  # only the age moved on
                    cells = {**cells, "oldest": self._oldest_cell(oldest_s)}
            else:
                was = self._rates.get(name)
                rates[name] = steady = (
                    fmt.steady_rate(was[0] if was else None, row.rate_in),
                    fmt.steady_rate(was[1] if was else None, row.rate_out),
                    fmt.steady_duration(was[2] if was else None, row.p50_s),
                    fmt.steady_duration(was[3] if was else None, row.p95_s),
                )
                if previous is None or was is None:
                    cells = self._cells(row, oldest_s, steady)
                else:
                    cells = self._changed_cells(row, oldest_s, steady, previous, was)
            shown[name] = (row, age, cells)
            on_screen = self._painted.get(name) if name in known else None
            if on_screen is not None and on_screen[0] is not cells:
                elapsed = (now - on_screen[1]).total_seconds()
                if paced(elapsed, hold_gap) and not is_state_change(on_screen[0], cells):
                    rows[name] = on_screen[0]
                    painted[name] = on_screen
                    left = gap - elapsed
                    wait = left if wait is None else min(wait, left)
                    continue
            rows[name] = cells
            painted[name] = (
                (cells, on_screen[1]) if on_screen is not None and on_screen[0] is cells
                else (cells, now)
            )  # fmt: skip
        self._shown = shown
        self._painted = painted
        self._rates = rates
        # The order is the names' (as shown), so it changes only when the set of rows does.
        if self._sorted is None or self._sorted[0] != rows.keys():
            order = sorted(rows, key=lambda key: rows[key]["entrypoint"].plain)
            self._sorted = (set(rows), order)
        self.apply(rows, self._sorted[1])
        self._held = (snapshot, now + timedelta(seconds=wait)) if wait is not None else None
        return wait

    def _text(
        self,
        plain: str,
        style: str = "",
        *,
        marked: str | None = None,
        justify: JustifyMethod | None = "right",
    ) -> Text:
        """A cell, the same object for the same look: a cell that did not change is then
        matched by identity, here (`is_state_change`) and in `LiveTable.apply`."""
        if marked is not None:
            style = self._style(status_style(marked).variable)  # the theme's, as it is now
        key = (plain, style, marked, justify)
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) >= TEXT_MEMO:
                self._texts.clear()
            if marked is None:
                text = Text(plain, style=style, justify=justify)
            else:
                text = marked_count(self.app, marked, plain)
            self._texts[key] = text
        return text

    def _changed_cells(
        self,
        row: EntrypointRow,
        oldest_s: float | None,
        rates: tuple[float, float, float | None, float | None],
        previous: tuple[EntrypointRow, str, dict[str, Text]],
        was: tuple[float, float, float | None, float | None],
    ) -> dict[str, Text]:
        """The cells of a row some of whose numbers changed: the others keep their cell (the
        same object), the changed ones are built as `_cells` builds them. Under load most rows
        change a number or two per refresh, and building all 15 cells was most of a refresh's
        CPU in the overview."""
        before, cells = previous[0], dict(previous[2])
        text, number, alarm = self._text, self._number, self._alarm
        if row.ready != before.ready:
            cells["ready"] = number(row.ready, "ready")
        if row.deferred != before.deferred:
            cells["deferred"] = number(row.deferred, "deferred")
        if row.picked != before.picked:
            cells["picked"] = number(row.picked, "picked")
        if row.held != before.held:
            cells["held"] = alarm(row.held, "held")
        if row.completed_1m != before.completed_1m:
            cells["done_1m"] = number(row.completed_1m)
        if row.exceptions_1m != before.exceptions_1m:
            cells["err_1m"] = alarm(row.exceptions_1m, "exception")
        if row.completed_1h != before.completed_1h:
            cells["done_1h"] = number(row.completed_1h)
        if row.exceptions_1h != before.exceptions_1h:
            cells["err_1h"] = alarm(row.exceptions_1h, "exception")
        if rates[0] != was[0]:
            cells["in"] = text(fmt.rate(rates[0]))
        if rates[1] != was[1]:
            cells["out"] = text(fmt.rate(rates[1]))
        if rates[2] != was[2]:
            cells["p50"] = text(fmt.seconds(rates[2]))
        if rates[3] != was[3]:
            cells["p95"] = text(fmt.seconds(rates[3]))
        cells["oldest"] = self._oldest_cell(oldest_s)  # memoized: the same object when alike
        if row.sparkline != before.sparkline:
            cells["trend"] = self._trend_cell(row)
        return cells

    def _number(self, value: int, status: str | None = None) -> Text:
        style = self._style(status_style(status).variable) if status and value else ""
        return self._text(fmt.count(value), style)

    def _alarm(self, value: int, status: str) -> Text:
        # States that need action carry their glyph too: readable without colour.
        return self._text(fmt.count(value), marked=status) if value else self._number(0)

    def _trend_cell(self, row: EntrypointRow) -> Text:
        return self._text(
            fmt.sparkline(row.sparkline, TREND_WIDTH),
            self._style(status_style("picked").variable),
            justify=None,
        )

    def _oldest_cell(self, oldest_s: float | None) -> Text:
        if (oldest_s or 0) > OLD_READY_S:
            return self._text(fmt.seconds(oldest_s), marked="stale")
        return self._text(fmt.seconds(oldest_s))

    def _style(self, name: str) -> str:
        return self.app.theme_variables.get(name, "")

    def _cells(
        self,
        row: EntrypointRow,
        oldest_s: float | None,
        rates: tuple[float, float, float | None, float | None],
    ) -> dict[str, Text]:
        text, number, alarm = self._text, self._number, self._alarm
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
            "in": text(fmt.rate(rates[0])),
            "out": text(fmt.rate(rates[1])),
            "oldest": self._oldest_cell(oldest_s),
            "p50": text(fmt.seconds(rates[2])),
            "p95": text(fmt.seconds(rates[3])),
            "trend": self._trend_cell(row),
        }


def _oldest_s(row: EntrypointRow, now: datetime) -> float | None:
    """How long the oldest ready job has waited, or None when nothing is ready."""
    return (now - row.oldest_ready_since).total_seconds() if row.oldest_ready_since else None


def is_state_change(before: Mapping[str, Text], after: Mapping[str, Text]) -> bool:
    """Whether `after` says something `before` did not: a new row, a held count moved, errors
    appeared or went, an age turned stale. Otherwise the numbers only moved on (rates, counts,
    ages: under load on every refresh), which can wait for the next paint."""
    for column, cell in after.items():
        old = before.get(column)
        if old is None:
            return True
        if old is cell or old == cell:
            continue
        if column in STATE_COLUMNS:
            return True
        if column in ALARM_COLUMNS and old.style != cell.style:
            return True
    return False
