"""The sync psycopg driver's mode: PgQueuer can only enqueue through it, and the screen says so."""

from __future__ import annotations

from pgqueuer.domain.models import QueueStatistics
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.poll_loop import PollLoop, PollStatus
from pgq_console.core.text import printable
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.live_table import LiveTable
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
        # The form: the one thing this mode can write.
        Binding("e", "app.enqueue", "Enqueue", id="enqueue"),
        Binding("r", "refresh_now", "Refresh", id="refresh"),
        Binding("a", "enable_autocommit", "Autocommit", show=False, id="autocommit"),
    ]

    def __init__(self, backend: Backend, clock: Clock) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        # Polled whether or not the form is open over it; failures back off, and the banner
        # says what every screen says (a lost connection, since when, the next try).
        self.loop: PollLoop[list[QueueStatistics] | None] = PollLoop(
            backend,
            clock,
            self._fetch,
            on_result=self._show_depth,
            on_status=self._show_status,
            interval_s=POLL_S,
        )

    def compose(self) -> ComposeResult:
        yield Banner(id="autocommit-banner")
        yield Banner(id="poll-banner")
        yield ConnectionLine(id="connection-line")
        yield Static(Text(ENQUEUE_ONLY_TEXT), id="mode-banner")
        yield Static(" Queue depth (SyncQueries.queue_size, polled)", id="depth-title")
        # Fixed widths: rows arrive a few at a time and must not be cut at the first one's width.
        yield LiveTable(
            (
                ("entrypoint", "Entrypoint", ENTRYPOINT_WIDTH),
                ("status", "Status", 8),
                ("priority", "Priority", 8),
                ("count", "Count", 10),
            ),
            id="depth-table",
            zebra_stripes=False,
        )
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one(ConnectionLine).show(
            self.backend.label, self.backend.kind.value, self.backend.installation.label
        )
        self._show_autocommit_banner()
        self.query_one("#poll-banner", Banner).hide()
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
        await self.loop.run()

    async def _fetch(self) -> list[QueueStatistics] | None:
        if self.backend.autocommit_problem:
            return None  # nothing to read until it is switched
        return await self.backend.queue_size()

    def _show_depth(self, stats: list[QueueStatistics] | None) -> None:
        if stats is not None:
            self._apply(self.query_one("#depth-table", LiveTable), stats)

    def _show_status(self, status: PollStatus) -> None:
        # Rows stay as last read while a read fails: the banner says since when.
        banner = self.query_one("#poll-banner", Banner)
        if status.error:
            banner.show(f"⚠ {status.error}", variant="error" if status.lost_since else "warning")
        else:
            banner.hide()

    @staticmethod
    def _apply(table: LiveTable, stats: list[QueueStatistics]) -> None:
        wanted = {}
        for stat in stats:
            entrypoint, status, priority = stat.entrypoint, str(stat.status), stat.priority
            key = f"{entrypoint}\x00{status}\x00{priority}"
            wanted[key] = {
                "entrypoint": Text(printable(entrypoint, limit=ENTRYPOINT_WIDTH)),
                "status": Text(status),
                "priority": Text(str(priority), justify="right"),
                "count": Text(str(stat.count), justify="right"),
            }
        table.apply(wanted, sorted(wanted))

    def action_refresh_now(self) -> None:
        self.loop.request_refresh()

    async def action_enable_autocommit(self) -> None:
        reason = await self.backend.enable_autocommit()
        if reason:
            self.notify(f"Not switched to autocommit: {reason}", severity="warning", markup=False)
        self._show_autocommit_banner()
        self.loop.request_refresh()
