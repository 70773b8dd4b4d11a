"""The live overview: one row per entrypoint, pushed by LISTEN/NOTIFY, polled for UPDATEs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer

from pgq_console.context import context_of
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview import Refresher
from pgq_console.core.poll_loop import PollLoop, PollStatus
from pgq_console.core.pulse import (
    PULSE_POLL_S,
    EventFeed,
    PulseReader,
    PulseReading,
    ThroughputHistory,
)
from pgq_console.core.text import printable
from pgq_console.core.why import span
from pgq_console.messages import AuditHeard, OpenJobs, PulseRead, SnapshotReady, StatusChanged
from pgq_console.screens.quiet_resume import QuietResume
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.overview_table import OLD_READY_S, OverviewTable
from pgq_console.widgets.pacing import RepaintPacer
from pgq_console.widgets.pulse import EventFeedView, PulseTiles, RateChart
from pgq_console.widgets.status_line import ConnectionLine, LiveLine, TotalsLine

if TYPE_CHECKING:
    from pgq_console.core.overview.early import EarlyRefresher

AUTOCOMMIT_HELP = (
    "Fix it in your code with `conn.autocommit = True` (or connect with autocommit=True), "
    "or press `a` to switch this connection to autocommit now."
)
# From this size on the overview shows its headline tiles, rate chart and event feed; below it
# the table has the screen to itself.
ROOMY_WIDTH = 100
ROOMY_HEIGHT = 30


class OverviewScreen(QuietResume):
    BINDINGS = [
        Binding("r", "refresh_now", "Refresh", id="refresh"),
        Binding("p", "toggle_pause", "Pause", id="overview.toggle-pause"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+", id="overview.faster"),
        Binding("minus", "slower", "Slower", key_display="-", id="overview.slower"),
        Binding("a", "enable_autocommit", "Autocommit", show=False, id="autocommit"),
        Binding("enter", "open_jobs", "Jobs", id="overview.open-jobs"),
        Binding("w", "why", "Why not draining?", show=False, id="overview.why"),
    ]
    GLOSSARY = (
        ("Ready", "queued jobs whose execute_after has come: waiting for a worker now"),
        ("Picked", "jobs a worker holds (running, or its worker died: see 4 Workers)"),
        ("Held", "jobs that failed with on_failure=hold (status failed): see 3 Failures"),
        ("Oldest", "how long the oldest ready job has waited (⚠ over 5 minutes)"),
        ("In/s Out/s", "jobs enqueued / finished per second over the last refreshes"),
        ("Err/1m Done/1m", "exceptions / completions logged in the last minute"),
        ("Deferred", "queued jobs whose execute_after is still in the future"),
        ("Err/1h Done/1h", "exceptions / completions logged in the last hour"),
        ("p50 p95", "median and 95th percentile of the time from enqueue to done, last hour"),
        ("Trend 30m", "completions per minute, the last 30 minutes"),
        ("→ N more", "columns left out for width: → and ← page through them"),
        ("Tiles", f"on a terminal of {ROOMY_WIDTH}x{ROOMY_HEIGHT} or more: the totals drawn large"),
        ("Throughput", "in/out/errors per second, one column per 5 s, from the refreshes"),
        (
            "Events",
            f"new failure kinds, workers joining or dying (read every {PULSE_POLL_S:g}s), "
            "writes by any console",
        ),
        ("enter", "open this entrypoint's jobs (the Jobs screen, filtered ep:NAME)"),
        ("w", "why this entrypoint's jobs are not running: every reason that applies"),
    )

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        *,
        interval_s: float,
        listen: bool = True,
        early: EarlyRefresher | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.interval_s = interval_s
        self.listen = listen
        self.refresher: Refresher | None = None
        # A refresher started before this screen (the command line's): adopted, not started.
        self._early = early
        self._early_task: asyncio.Task[None] | None = None
        self.snapshot: OverviewSnapshot | None = None
        self.status: RefreshStatus | None = None
        self.history = ThroughputHistory()
        self.feed = EventFeed()
        self.pulse: PollLoop[PulseReading] | None = None
        self._pulse_error = ""  # the pulse's failed read, or ""
        self._pulse_note = ""  # why its workers are read less often than every poll, or ""
        # The numbers above and below the table (totals, tiles, chart, event ages) and the live
        # line change on every refresh: painted at most once a second of the injected clock,
        # at once when their state changes (`_headline_state`, `_status_state`).
        self._headline_pacer = RepaintPacer()
        self._headline_state: tuple[object, ...] | None = None
        self._status_pacer = RepaintPacer()
        self._status_state: tuple[object, ...] | None = None
        self._repaint_timer: Timer | None = None
        self._rates: tuple[float, float] | None = None  # the totals' rates shown (in, out)

    def compose(self) -> ComposeResult:
        yield Banner(id="autocommit-banner")
        yield ConnectionLine(id="connection-line")
        yield LiveLine(id="live-line")
        yield Banner(id="error-banner")
        yield TotalsLine(id="totals-line")
        yield PulseTiles(id="pulse-tiles")
        yield OverviewTable(id="overview-table")
        with Horizontal(id="pulse-lower"):
            yield RateChart(id="rate-chart")
            yield EventFeedView(id="event-feed")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#error-banner", Banner).hide()
        self.query_one(ConnectionLine).show(
            self.backend.label,
            self.backend.kind.value,
            self.backend.installation.label,
            read_only=self.backend.read_only,
        )
        self.query_one(OverviewTable).focus()
        problem = self.backend.autocommit_problem
        if problem:
            self.query_one("#autocommit-banner", Banner).show(f"⚠ {problem}. {AUTOCOMMIT_HELP}")
            self.query_one(LiveLine).update(" waiting for autocommit: nothing runs until then")
            self.query_one(TotalsLine).update("")
            return
        self.query_one("#autocommit-banner", Banner).hide()
        self.start_refresher()

    def start_refresher(self) -> None:
        early, self._early = self._early, None
        if early is not None and early.fits(
            self.backend, interval_s=self.interval_s, listen=self.listen
        ):
            self.refresher = early.adopt(
                on_snapshot=self._post_snapshot, on_status=self._post_status, active=self._in_view
            )
            self._early_task = early.task
        else:
            if early is not None:
                early.task.cancel()
            self.refresher = Refresher(
                self.backend,
                self.clock,
                on_snapshot=self._post_snapshot,
                on_status=self._post_status,
                interval_s=self.interval_s,
                listen=self.listen,
                active=self._in_view,
            )
        self.refresher.pacer.consumers_busy = self._consumers_busy
        self.run_refresher()
        self.pulse = PollLoop(
            self.backend,
            self.clock,
            PulseReader(self.backend, self.clock).read,
            on_result=self._post_pulse,
            on_status=self._pulse_status,
            interval_s=PULSE_POLL_S,
            active=lambda: self._in_view() and self.roomy,
        )
        self.run_pulse()

    def _post_pulse(self, reading: PulseReading) -> None:
        self.post_message(PulseRead(reading))

    @property
    def roomy(self) -> bool:
        """Whether the tiles, chart and feed are shown (the terminal is large enough)."""
        return self.has_class("-roomy")

    def on_resize(self, event: events.Resize) -> None:
        roomy = event.size.width >= ROOMY_WIDTH and event.size.height >= ROOMY_HEIGHT
        self.set_class(roomy, "-roomy")
        if roomy and self.pulse is not None:
            self.pulse.request_refresh()

    def _pulse_status(self, status: PollStatus) -> None:
        self._pulse_error = printable(status.error, limit=120) if status.error else ""
        self._show_pulse_reason()

    def _show_pulse_reason(self) -> None:
        # The feed is a courtesy: say why it is quiet or slow, nothing more. Set only when it
        # changes (setting a border subtitle repaints the whole feed).
        subtitle = self._pulse_error or self._pulse_note
        view = self.query_one(EventFeedView)
        if subtitle != view.quiet_reason:
            view.quiet_reason = subtitle
            view.border_subtitle = Text(subtitle) if subtitle else ""

    @work(group="pulse", exclusive=True, exit_on_error=False)
    async def run_pulse(self) -> None:
        assert self.pulse is not None
        # Not before the overview's first snapshot: its reads would take connections first.
        await self.backend.first_reading.wait()
        # Nor before the screen's next refresh, which shows it: the pulse's first read (its
        # modules imported, its rows decoded) is CPU the first paint would wait for. (A
        # refresher started early had its reading in before this screen mounted.)
        painted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def refreshed() -> None:
            if not painted.done():
                painted.set_result(None)

        self.call_after_refresh(refreshed)
        await painted
        await self.pulse.run()

    @on(PulseRead)
    def show_pulse(self, message: PulseRead) -> None:
        reading = message.reading
        assert isinstance(reading, PulseReading)
        now = self.clock.now()
        if reading.workers is not None:
            self.feed.note_workers(reading.workers, now)
        self.feed.note_failures(reading.failures, now)
        every = reading.workers_every_s
        self._pulse_note = (
            ""
            if every is None
            else f"workers every {span(every)}: a read takes {reading.workers_took_s:.1f}s"
        )
        self._show_pulse_reason()
        self.query_one(EventFeedView).show(self.feed.events, now)

    @on(AuditHeard)
    def show_audit(self, message: AuditHeard) -> None:
        from pgq_console.core.audit import AuditAnnouncement

        announcement = message.announcement
        assert isinstance(announcement, AuditAnnouncement)
        now = self.clock.now()
        self.feed.note_action(announcement.describe(), now, verified=announcement.verified)
        self.query_one(EventFeedView).show(self.feed.events, now)

    def _consumers_busy(self) -> bool:
        """The console's own consumers work now: their events refresh the overview less often
        (overview/pacing.py, `BUSY_EVENT_GAP_S`)."""
        context = context_of(self.app)
        return context is not None and context.has_consumers and context.consumers.busy()

    def _in_view(self) -> bool:
        # On the current mode's stack: shown, or under a dialog that leaves it visible.
        return self in self.app.screen_stack

    def on_screen_resume(self) -> None:
        if self.refresher is not None:
            self.refresher.wake()  # it idled while another screen was shown

    def _post_snapshot(self, snapshot: OverviewSnapshot) -> None:
        self.post_message(SnapshotReady(snapshot))

    def _post_status(self, status: RefreshStatus) -> None:
        self.post_message(StatusChanged(status))

    @work(group="refresh", exclusive=True, exit_on_error=False)
    async def run_refresher(self) -> None:
        assert self.refresher is not None
        if self._early_task is not None:
            await self._early_task  # adopted: cancelling this worker cancels it
            return
        await self.refresher.run()

    @on(SnapshotReady)
    def show_snapshot(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.history.add(message.snapshot)
        self._paint_snapshot()

    def _paint_snapshot(self) -> None:
        """Paint the latest snapshot: state changes at once, moving numbers when their pacer
        is due; whatever was held back is painted by a later call (`_repaint_later`)."""
        snapshot = self.snapshot
        if snapshot is None:
            return
        now = self.clock.now()
        wait = self.query_one(OverviewTable).apply_snapshot(snapshot, now)
        total = snapshot.totals
        oldest_s = (
            (now - total.oldest_ready_since).total_seconds() if total.oldest_ready_since else None
        )
        state = (
            len(snapshot.rows),
            total.held,
            total.exceptions_1m > 0,
            (oldest_s or 0) > OLD_READY_S,
            self.feed.events,
        )
        if state != self._headline_state or self._headline_pacer.due(now):
            changed = state != self._headline_state
            self._headline_state = state
            self._headline_pacer.painted(now)
            shown = self._rates
            self._rates = rates = (
                fmt.steady_rate(shown[0] if shown else None, total.rate_in),
                fmt.steady_rate(shown[1] if shown else None, total.rate_out),
            )
            self.query_one(TotalsLine).show(snapshot, now, rates)
            self.query_one(PulseTiles).show(
                ready=total.ready,
                deferred=total.deferred,
                picked=total.picked,
                held=total.held,
                oldest_ready_s=oldest_s,
                rate_in=rates[0],
                rate_out=rates[1],
            )
            self.query_one(RateChart).show(self.history.samples, force=changed)
            self.query_one(EventFeedView).show(self.feed.events, now)  # the ages tick
        else:
            left = self._headline_pacer.wait_s(now)
            wait = left if wait is None else min(wait, left)
        if wait is not None:
            self._repaint_later(wait)

    def _repaint_later(self, wait_s: float) -> None:
        """Paint what was held back once its pacer is due, even if no reading comes meanwhile.
        (Nothing is held back under a clock that does not move: `pacing.paced`.)"""
        if self._repaint_timer is None:
            self._repaint_timer = self.set_timer(max(wait_s, 0.01), self._repaint_held)

    def _repaint_held(self) -> None:
        self._repaint_timer = None
        self._paint_snapshot()
        if self.status is not None:
            self._paint_status(self.status)

    @on(StatusChanged)
    def show_status(self, message: StatusChanged) -> None:
        self.status = message.status
        banner = self.query_one("#error-banner", Banner)
        if message.status.error:
            banner.show(f"⚠ {message.status.error}", variant="error")
        else:
            banner.hide()
        self._paint_status(message.status)

    def _paint_status(self, status: RefreshStatus) -> None:
        now = self.clock.now()
        state = (
            status.paused,
            status.listening,
            status.channel,
            status.polling_reason,
            status.live_problem,
            status.error,
            status.depth_note,
            status.windows_note,
            status.replica,
            status.replica_in_use,
            status.interval_s,
            status.last_event_at is None,
            status.effective_interval_s > status.interval_s + 0.05,
        )
        if state != self._status_state or self._status_pacer.due(now):
            self._status_state = state
            self._status_pacer.painted(now)
            self.query_one(LiveLine).show(status, now)
        else:
            self._repaint_later(self._status_pacer.wait_s(now))

    def action_refresh_now(self) -> None:
        if self.refresher:
            self.refresher.request_exact()  # and the depths counted exactly, aside

    def action_toggle_pause(self) -> None:
        if self.refresher:
            self.refresher.set_paused(not self.refresher.status.paused)

    def action_faster(self) -> None:
        if self.refresher:
            self.refresher.set_interval(_step(self.refresher.status.interval_s, faster=True))

    def action_slower(self) -> None:
        if self.refresher:
            self.refresher.set_interval(_step(self.refresher.status.interval_s, faster=False))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # `a` exists only while the autocommit banner shows: no "a Autocommit" in help else.
        if action == "enable_autocommit":
            return bool(self.backend.autocommit_problem)
        return True

    def action_enable_autocommit(self) -> None:
        if self.backend.autocommit_problem:
            self.switch_to_autocommit()

    @work(group="actions", exclusive=True, exit_on_error=False)
    async def switch_to_autocommit(self) -> None:
        reason = await self.backend.enable_autocommit()
        if reason:
            self.notify(f"Not switched to autocommit: {reason}", severity="warning", markup=False)
            return
        self.query_one("#autocommit-banner", Banner).hide()
        self.notify("Connection switched to autocommit; live statistics started.", markup=False)
        self.start_refresher()

    @on(OverviewTable.RowSelected, "#overview-table")
    async def open_entrypoint_jobs(self, event: OverviewTable.RowSelected) -> None:
        """Enter on a row (the table reports it): that entrypoint's jobs."""
        await self.open_jobs_of(event.row_key)

    def action_why(self) -> None:
        """Why the highlighted entrypoint's ready jobs are not running."""
        from pgq_console.screens.why import WhyScreen

        name = self.query_one(OverviewTable).selected_key
        if name is None:
            self.notify("no entrypoint yet", severity="warning", markup=False)
            return
        self.app.push_screen(WhyScreen(self.backend, entrypoint=name))

    async def action_open_jobs(self) -> None:
        """Enter while the table is not focused: the highlighted entrypoint's jobs."""
        name = self.query_one(OverviewTable).selected_key
        if name is None:
            self.notify("no entrypoint yet", severity="warning", markup=False)
            return
        await self.open_jobs_of(name)

    async def open_jobs_of(self, name: str) -> None:
        """The Jobs screen, filtered to exactly this entrypoint (the app shows it)."""
        self.post_message(OpenJobs(name))


INTERVAL_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def _step(current: float, *, faster: bool) -> float:
    if faster:
        return max((s for s in INTERVAL_STEPS if s < current - 1e-9), default=INTERVAL_STEPS[0])
    return min((s for s in INTERVAL_STEPS if s > current + 1e-9), default=INTERVAL_STEPS[-1])
