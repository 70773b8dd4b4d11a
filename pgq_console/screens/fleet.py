"""The fleet (key 0): one row per installation, the ones in trouble on top.

The rows come from `core.fleet.Fleet`, which this screen runs for as long as it exists (it stays
alive while an installation's own console is on view; its reads rest then, and `0` wakes them, so
it comes back to current numbers).
Enter opens the selected installation's full console; esc there comes back here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from pgq_console.core.clock import Clock
from pgq_console.core.fleet import Fleet, FleetRow, LinkState
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.status_line import QuietStatic

FLEET_COLUMNS = (
    ("installation", "Installation"),
    ("env", "Env"),
    ("state", "State"),
    ("ready", "Ready"),
    ("oldest", "Oldest"),
    ("held", "Held"),
    ("errors", "Err/min"),
    ("workers", "Workers"),
    ("stale", "Stale"),
    ("db", "DB time"),
)
CLOSE_WAIT_S = 10.0
# On a narrow terminal the columns go last-ranked first: who is in trouble, and why, stay.
FLEET_PRIORITIES = {
    "installation": 0,
    "state": 0,
    "ready": 1,
    "oldest": 1,
    "held": 2,
    "env": 3,
    "errors": 4,
    "workers": 5,
    "stale": 6,
    "db": 7,
}


@dataclass
class FleetChanged(Message):
    """Some installation's row changed; the handler reads them all (coalesced)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetChanged)


def describe_state(row: FleetRow) -> str:
    since = f" since {row.since:%H:%M}" if row.since else ""
    if row.state is LinkState.DOWN:
        return f"down{since}"
    if row.state is LinkState.ERROR:
        return f"error{since}"
    if row.state is LinkState.CONNECTING:
        return "connecting…"
    return "up · live" if row.listening else "up · polling"


class FleetScreen(Screen[None]):
    """Every installation at once; Enter opens one."""

    BINDINGS = [
        Binding("enter", "open_installation", "Open", id="fleet-open"),
        Binding("r", "refresh_now", "Refresh", id="fleet-refresh"),
    ]

    def __init__(
        self,
        fleet: Fleet,
        clock: Clock,
        open_installation: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.fleet = fleet
        self.clock = clock
        self._open = open_installation
        # The cursor stays on the top row (the most trouble) while the operator leaves it
        # there, as rows re-sort; once moved, it follows its installation.
        self._top_pinned = True
        fleet.on_row = self._row_changed
        fleet.visible = lambda: self.is_current  # no reads while nobody sees the rows

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="fleet-summary")
        yield LiveTable(FLEET_COLUMNS, id="fleet-table", priorities=FLEET_PRIORITIES)
        yield QuietStatic(id="fleet-detail")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#fleet-table", LiveTable).focus()
        self._show()
        self.run_fleet()

    def on_screen_resume(self) -> None:
        self.fleet.wake()  # shown again: reads that fell due while hidden happen now

    @work(group="fleet", exclusive=True, exit_on_error=False)
    async def run_fleet(self) -> None:
        await self.fleet.run()

    async def on_unmount(self) -> None:
        """Close every installation's connection before the loop goes (no read left behind)."""
        running = [w for w in self.app.workers if w.node is self and w.group == "fleet"]
        for worker in running:
            worker.cancel()
        for worker in running:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(worker.wait(), CLOSE_WAIT_S)

    def _row_changed(self, _row: FleetRow) -> None:
        self.post_message(FleetChanged())

    def on_fleet_changed(self, _message: FleetChanged) -> None:
        self._show()

    def on_live_table_row_highlighted(self) -> None:
        self._top_pinned = self.query_one("#fleet-table", LiveTable).cursor_row == 0
        self._show_detail()

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()  # the table keeps `enter` for itself and reports it as a selection
        self._open(event.row_key)

    def _show(self) -> None:
        rows = self.fleet.sorted_rows()
        style = self.app.theme_variables
        down = sum(1 for row in rows if row.state is LinkState.DOWN)
        in_error = sum(1 for row in rows if row.state is LinkState.ERROR)
        late = sum(1 for row in rows if not row.down and row.over_threshold)
        growing = sum(1 for row in rows if not row.down and row.held_growth > 0)
        summary = Text(" ")
        summary.append("Fleet", style="bold")
        summary.append(f"  {len(rows)} installation{'s' if len(rows) != 1 else ''}")
        if down:
            summary.append(f"   {down} down", style=f"bold {style.get('status-held', '')}")
        if in_error:
            # It answers, but cannot be read (no schema, a failing query): not "down".
            summary.append(f"   {in_error} in error", style=f"bold {style.get('status-held', '')}")
        if late:
            # Short enough that the line fits 80 columns with all three (it wrapped mid-phrase).
            summary.append(f"   {late} waiting too long", style=style.get("status-stale", ""))
        if growing:
            summary.append(f"   {growing} held growing", style=style.get("status-exception", ""))
        if not (down or in_error or late or growing):
            summary.append("   all well", style=style.get("status-ready", ""))
        self.query_one("#fleet-summary", QuietStatic).show_text(summary)
        table = self.query_one("#fleet-table", LiveTable)
        table.apply({row.key: self._cells(row) for row in rows}, [row.key for row in rows])
        if self._top_pinned and table.cursor_row != 0:
            table.move_cursor(row=0)
        self._show_detail()

    def _cells(self, row: FleetRow) -> dict[str, Text]:
        style = self.app.theme_variables
        held_style = style.get("status-held", "")
        state_style = {
            LinkState.DOWN: f"bold {held_style}",
            LinkState.ERROR: f"bold {held_style}",
            LinkState.CONNECTING: style.get("muted", ""),
            LinkState.UP: style.get("status-ready", ""),
        }[row.state]

        def number(value: int | None, *, alert: str = "") -> Text:
            shown = "–" if value is None else fmt.count(value)
            return Text(shown, justify="right", style=alert if value else "")

        oldest = "–" if row.oldest_ready_s is None else fmt.seconds(row.oldest_ready_s)
        held = number(row.held)
        if row.held_growth > 0:
            held = Text(
                f"{fmt.count(row.held or 0)} +{row.held_growth}",
                justify="right",
                style=style.get("status-exception", ""),
            )
        env_colour = row.color or style.get("accent", "")
        return {
            "installation": Text(_middle(printable(row.label), 32)),
            "state": Text(describe_state(row), style=state_style),
            "ready": number(row.ready),
            "oldest": Text(
                oldest,
                justify="right",
                style=style.get("status-stale", "") if row.over_threshold else "",
            ),
            "held": held,
            "errors": number(row.errors_per_min, alert=style.get("status-exception", "")),
            "workers": number(row.workers_alive),
            "stale": number(row.stale_jobs, alert=style.get("status-stale", "")),
            "db": Text(
                "–" if row.read_at is None else f"{row.db_cost * 100:.1f}%", justify="right"
            ),
            "env": Text(
                printable(row.environment or "", limit=12),
                style=f"bold {env_colour}" if row.environment else "",
            ),
        }

    def _show_detail(self) -> None:
        key = self.query_one("#fleet-table", LiveTable).selected_key
        rows = self.fleet.rows
        row = rows.get(key) if key else None
        detail = Text(" ")
        if row is None:
            detail.append("no installation selected")
        else:
            detail.append(printable(row.label, limit=60), style="bold")
            if row.error:
                detail.append(": ")
                detail.append(printable(row.error, limit=200), style=self._muted())
            elif row.read_at is not None:
                detail.append(
                    f": read at {row.read_at:%H:%M:%S}; oldest ready alerts over "
                    f"{fmt.seconds(row.max_age_s)}; Enter opens its console",
                    style=self._muted(),
                )
        self.query_one("#fleet-detail", QuietStatic).show_text(detail)

    def _muted(self) -> str:
        return self.app.theme_variables.get("muted", "")

    def selected_key(self) -> str | None:
        return self.query_one("#fleet-table", LiveTable).selected_key

    def action_open_installation(self) -> None:
        key = self.selected_key()
        if key is not None:
            self._open(key)

    def action_refresh_now(self) -> None:
        self.fleet.request_refresh()


def _middle(text: str, limit: int) -> str:
    """`text` cut in the middle: installations often share a start (user@host:port/) and
    differ at the end (the database), so both ends stay visible."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]
