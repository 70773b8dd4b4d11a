"""The sync psycopg driver's mode: PgQueuer can only enqueue through it, and the screen says so."""

from __future__ import annotations

import asyncio
import contextlib

from pgqueuer.domain.models import QueueStatistics
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from pgq_console.core.backend import Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import printable
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.overview_table import ENTRYPOINT_WIDTH
from pgq_console.widgets.status_line import ConnectionLine

ENQUEUE_ONLY_TEXT = (
    "Enqueue-only mode: the sync psycopg driver can only enqueue jobs (PgQueuer's SyncQueries). "
    "Live statistics, LISTEN/NOTIFY, consumers and job actions need an async driver: "
    "restart with --driver asyncpg-pool, asyncpg or psycopg."
)
POLL_S = 5.0


class EnqueueOnlyScreen(Screen[None]):
    BINDINGS = [
        Binding("e", "app.enqueue", "Enqueue"),  # the form: the one thing this mode can write
        Binding("r", "refresh_now", "Refresh"),
        Binding("a", "enable_autocommit", "Autocommit", show=False),
    ]

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self._wake = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Banner(id="autocommit-banner")
        yield ConnectionLine(id="connection-line")
        yield Static(Text(ENQUEUE_ONLY_TEXT), id="mode-banner")
        yield Static(" Queue depth (SyncQueries.queue_size, polled)", id="depth-title")
        yield DataTable(id="depth-table", cursor_type="row")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one(ConnectionLine).show(
            self.backend.label, self.backend.kind.value, self.backend.installation.label
        )
        table: DataTable[Text] = self.query_one("#depth-table", DataTable)
        # Fixed widths: rows arrive a few at a time and must not be cut at the first one's width.
        for key, label, width in (
            ("entrypoint", "Entrypoint", ENTRYPOINT_WIDTH),
            ("status", "Status", 8),
            ("priority", "Priority", 8),
            ("count", "Count", 10),
        ):
            table.add_column(label, key=key, width=width)
        self._show_autocommit_banner()
        self.poll_depth()

    def _show_autocommit_banner(self) -> None:
        banner = self.query_one("#autocommit-banner", Banner)
        if self.backend.autocommit_problem:
            banner.show(
                f"⚠ {self.backend.autocommit_problem}: enqueueing is off. "
                "Set `conn.autocommit = True`, or press `a` to switch it now."
            )
        else:
            banner.hide()

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def poll_depth(self) -> None:
        table: DataTable[Text] = self.query_one("#depth-table", DataTable)
        while True:
            if not self.backend.autocommit_problem:
                try:
                    stats = await self.backend.queue_size()
                except ConsoleError as exc:
                    self.notify(str(exc), severity="warning", markup=False)
                    stats = []
                except Exception as exc:  # a dropped connection must not end the poll
                    self.notify(f"queue size failed: {exc}", severity="error", markup=False)
                    stats = []
                self._apply(table, stats)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    @staticmethod
    def _apply(table: DataTable[Text], stats: list[QueueStatistics]) -> None:
        wanted = {}
        for stat in stats:
            entrypoint, status, priority = stat.entrypoint, str(stat.status), stat.priority
            key = f"{entrypoint}\x00{status}\x00{priority}"
            wanted[key] = (
                Text(printable(entrypoint, limit=ENTRYPOINT_WIDTH)),
                Text(status),
                Text(str(priority), justify="right"),
                Text(str(stat.count), justify="right"),
            )
        existing = {str(key.value) for key in table.rows}
        for key in existing - wanted.keys():
            table.remove_row(key)
        for key, cells in sorted(wanted.items()):
            if key in existing:
                table.update_cell(key, "count", cells[3])
            else:
                table.add_row(*cells, key=key)

    def action_refresh_now(self) -> None:
        self._wake.set()

    async def action_enable_autocommit(self) -> None:
        reason = await self.backend.enable_autocommit()
        if reason:
            self.notify(f"Not switched to autocommit: {reason}", severity="warning", markup=False)
        self._show_autocommit_banner()
        self._wake.set()
