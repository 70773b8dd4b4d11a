"""The live model: LISTEN for PgQueuer events, coalesce them into refreshes, poll for UPDATEs.

PgQueuer's trigger is statement-level, so UPDATEs (picks, requeues, holds) never notify: a timer
refresh complements the events. Every refresh is timed; the pacing stretches so the console's
own database time stays under its budget (5 % of wall-clock time by default).

When the database goes away the loop backs off (exponential, capped, jittered so many consoles do
not reconnect in lock-step), says what is lost and when it retries, LISTENs again once the
connection is back, and reconciles with a full refresh. `PollLoop` is the same loop, without
LISTEN, for the screens that poll one query; it waits through the shared `RefreshLoop`
(core/refresh_loop.py: wake-ups, visibility, backoff, outage text). The overview keeps its own
wait, paced on its database budget and the events it heard.

Listening is never claimed without proof: when the queue grows (jobs were inserted, so PgQueuer's
trigger sent NOTIFYs) and no event arrives within `LIVE_PROOF_PERIODS` timer periods, the status
says the live path is broken. Behind a transaction pooler the loop does not LISTEN at all and
says it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from pgqueuer.domain import models as pgq_models

from pgq_console.core.backend import ANY_DRIVER_ERRORS, CONNECT_TIMEOUT_S, Backend
from pgq_console.core.clock import Clock
from pgq_console.core.depth import (
    DEFERRED_CAP,
    FIRST_LOOK_CAP,
    RESYNC_EVERY_S,
    DepthTracker,
    TrackedDepth,
)
from pgq_console.core.errors import ConsoleError
from pgq_console.core.models import Durations, OverviewSnapshot, RefreshStatus
from pgq_console.core.refresh_loop import (
    RefreshLoop,
    Wait,
    backoff_delay,
    wait_for_event,
)
from pgq_console.core.refresh_loop import describe_outage as _describe_outage
from pgq_console.core.stats import (
    Depth,
    Windows,
    fetch_durations,
    fetch_windows,
    merge_rows,
)
from pgq_console.core.text import error_line

log = logging.getLogger(__name__)

EVENT_DEBOUNCE_S = 0.05  # merge a burst of NOTIFYs into one refresh
MIN_EVENT_GAP_S = 0.2  # at most 5 event refreshes a second: a repaint each, over SSH too
DURATIONS_EVERY_S = 15.0
DURATIONS_WINDOW = timedelta(minutes=5)
COST_WINDOW_S = 60.0
MIN_COST_WINDOW_S = 2.0
# Slices of the budget: depth answers events; windows and durations read the log; the exact
# re-count of the depths and the ready/deferred split keep the log-followed depths honest.
DEPTH_SHARE = 0.5
WINDOWS_SHARE = 0.2
DURATIONS_SHARE = 0.15
RESYNC_SHARE = 0.1
DEFERRED_SHARE = 0.05
DEFERRED_EVERY_S = 5.0  # the ready/deferred split, when no job was queued since (time moves it)
DEFERRED_SOON_S = 1.0  # ... and when jobs were queued since (some may be deferred)
RESYNC_RETRY_S = 60.0
STATUS_EVERY_S = 1.0  # at most this often an event alone repaints the header (refreshes do too)
MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0
DEPTH_SAMPLES = 10  # the depth query's recent timings that pace the event tier
# Timer periods (at least LIVE_PROOF_MIN_S) an insert may go without its NOTIFY before the
# live path is called broken: delivery normally takes milliseconds.
LIVE_PROOF_PERIODS = 3
LIVE_PROOF_MIN_S = 5.0


class Pacer:
    """How far apart refreshes must be for the console's database time to stay in budget.

    The event tier's spacing follows the depth query's recent cost, not its last one: on a busy
    box one reading in twenty takes 50x the others (a cold backend, a scheduler wait), and
    pacing on it alone held the next refresh back for seconds. The largest recent reading is
    left out, so one outlier moves nothing, while a query that stays slow stretches the gap
    within a few refreshes.
    """

    def __init__(self, budget: float, started: float) -> None:
        self.budget = budget
        self._started = started
        self._costs: deque[tuple[float, float]] = deque()  # (ended at, seconds in database)
        self._depth: deque[float] = deque(maxlen=DEPTH_SAMPLES)

    def book(self, ended: float, spent: float) -> None:
        """`spent`: seconds in the database for what ended at `ended` (any tier)."""
        self._costs.append((ended, spent))
        while self._costs and self._costs[0][0] < ended - COST_WINDOW_S:
            self._costs.popleft()

    def depth_took(self, seconds: float) -> None:
        self._depth.append(seconds)

    def depth_gap(self) -> float:
        """The least time between depth reads that keeps them within their budget slice."""
        if not self._depth:
            return 0.0
        recent = sorted(self._depth)
        if len(recent) > 2:
            recent.pop()  # one outlier does not set the pace
        else:
            # The first reads of a new connection plan the statement cold (100x a warm one):
            # there is no pace until three readings say what a read costs.
            return 0.0
        return sum(recent) / len(recent) / (self.budget * DEPTH_SHARE)

    def cost(self, now: float) -> float:
        """Database seconds per second over the last minute (or since the start)."""
        window = min(COST_WINDOW_S, max(now - self._started, 1.0))
        return sum(spent for _, spent in self._costs) / window

    def over_budget(self, now: float) -> bool:
        window = min(COST_WINDOW_S, max(now - self._started, MIN_COST_WINDOW_S))
        return sum(spent for _, spent in self._costs) / window > self.budget


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the connection (not the query) failed: retry after reconnecting.
    For an exception of unknown driver; with a backend at hand ask `backend.errors`."""
    return ANY_DRIVER_ERRORS.connection_lost(exc)


class Refresher:
    """Long-lived worker: call `run()` in a task; snapshots and status arrive via callbacks."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        *,
        on_snapshot: Callable[[OverviewSnapshot], None],
        on_status: Callable[[RefreshStatus], None],
        interval_s: float = 2.0,
        # 2 % of a core at most, at any queue size: depths follow the log (cheap); the tiers
        # that read more stretch their cadence to stay in their slices.
        budget: float = 0.02,
        listen: bool = True,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._on_snapshot = on_snapshot
        self._on_status = on_status
        self.budget = budget
        # Through transaction pooling a LISTEN never hears anything: poll, and say so.
        why_polling = backend.why_polling if listen else None
        self._listen = listen and why_polling is None
        # Whether anyone sees the numbers: a hidden overview neither queries nor repaints
        # (its LISTEN stays; `wake` when it is shown again).
        self._active = active
        self.status = RefreshStatus(
            channel=backend.installation.channel,
            interval_s=interval_s,
            effective_interval_s=interval_s,
            polling_reason=why_polling,
        )
        self._wake = asyncio.Event()
        self._event_due: float | None = None
        self._last_end = 0.0
        self._last_duration = 0.0
        self._last_overview_s = 0.0
        self._failures = 0
        self.pacer = Pacer(budget, clock.monotonic())
        self._durations: dict[str, Durations] = {}
        self._durations_due = 0.0
        self._windows: dict[str, Windows] = {}
        self._depth: dict[str, Depth] = {}
        self._windows_due = 0.0
        # Depths follow PgQueuer's log after one exact count (core/depth.py); the exact count
        # runs aside, on its own connection, so refreshes go on while it does.
        self.tracker = DepthTracker(backend.installation)
        self._tracked: TrackedDepth | None = None
        self._deferred_due = 0.0
        self._resync_due = 0.0
        self._resync_task: asyncio.Task[None] | None = None
        self._deferred_last = 0.0
        self._depth_paces = True
        self.tracker_resync_every_s = RESYNC_EVERY_S
        self._status_published_at = -1.0
        self._retry_delay = 0.0
        self._last_ok_at: datetime | None = None
        # The live-path proof: the queue's size at the last refresh, when that depth read
        # started, the last event, and since when growth has waited for its NOTIFY.
        self._last_queued: int | None = None
        self._proof_generation = -1
        self._last_depth_started = 0.0
        self._last_event_mono: float | None = None
        self._unnotified_since: float | None = None

    # -- controls (called from the UI thread's event loop, never block) --------------------

    def request_refresh(self) -> None:
        """Refresh as soon as the budget allows (an event, or the operator pressed a key)."""
        # Only the first event of a burst moves the due time; waking the loop for each of
        # hundreds of NOTIFYs a second only to find the same due time costs the console's
        # consumers their turns on the event loop.
        if self._event_due is None:
            self._event_due = self.clock.monotonic() + EVENT_DEBOUNCE_S
            self._wake.set()

    def request_exact(self) -> None:
        """Count the depths exactly now (a key, the console's own write, a TRUNCATE)."""
        self.tracker.request_resync()
        self._deferred_due = 0.0
        self.request_refresh()

    def wake(self) -> None:
        """Look at the due time again (the screen came back into view)."""
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        seconds = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, seconds))
        self._publish(replace(self.status, interval_s=seconds))
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        self._publish(replace(self.status, paused=paused))
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._resync_task is not None:
                self._resync_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._resync_task

    async def _run(self) -> None:
        if self._listen:
            await self._start_listening()
        await self._refresh()
        while True:
            timeout = self._next_due() - self.clock.monotonic()
            if timeout > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue  # re-evaluate: pause, interval or an event may have moved the due time
            if self.status.paused:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self._listen and self.status.listening and not self.backend.listener_alive():
                    await self._listener_lost()
                if self._listen and not self.status.listening:
                    await self._start_listening()
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the live model for good
                log.exception("refresh loop")
                self._failures += 1
                self._retry_delay = backoff_delay(self._failures, self.status.interval_s)
                self._last_end = self.clock.monotonic()
                self._publish(replace(self.status, error=f"refresh failed: {error_line(exc)}"))

    def _next_due(self) -> float:
        if self.status.paused or not self._active():
            return self.clock.monotonic() + 3600
        if self._failures:
            return self._last_end + self._retry_delay
        timer_due = self._last_end + max(self.status.interval_s, self.pacer.depth_gap())
        if self._event_due is None:
            return timer_due
        # Within budget, an event refreshes at once (after the debounce); over it, the gap holds.
        over = self.pacer.over_budget(self.clock.monotonic())
        gap = self.pacer.depth_gap() if over else 0.0
        event_due = max(self._event_due, self._last_end + max(MIN_EVENT_GAP_S, gap))
        return min(timer_due, event_due)

    async def _refresh(self) -> None:
        """Depth first and shown at once; the log-reading tiers after, when they are due.

        The first refresh (and the first after a reconnect) reads the windows before it shows
        anything, so the screen never shows depth with empty windows; the durations (p50/p95)
        follow right after that first paint.
        """
        self._event_due = None
        started = self.clock.monotonic()
        full = self._windows_due == 0.0
        try:
            # The windows before the first paint; the durations (a percentile over the log:
            # seconds at 10M rows) right after it.
            slow_spent = await self._refresh_slow_tiers(started, durations=False) if full else 0.0
            depth_started = self.clock.monotonic()
            server_s_or_none = await self._follow_depth()
            self._prove_live_path(depth_started)
            if self.backend.replica is not None:  # lag for the header, measured aside
                self.backend.replica.check_soon()
            client_s = self.clock.monotonic() - depth_started
            # Pace on the database's own time when it told us; the client's includes CPU waits.
            # It cannot exceed the round trip the clock saw (with a FixedClock: nothing).
            server_s = server_s_or_none if server_s_or_none is not None else client_s
            self._last_overview_s = min(server_s, client_s)
            if self._depth_paces:  # a first look or exact count is a one-off: booked, not pace
                self.pacer.depth_took(self._last_overview_s)
            deferred_spent = await self._refresh_deferred()
            self._show(started, spent=self._last_overview_s + slow_spent + deferred_spent)
            if self.clock.monotonic() >= min(self._windows_due, self._durations_due):
                slow_started = self.clock.monotonic()
                slow_spent = await self._refresh_slow_tiers(slow_started)
                self._show(slow_started, spent=slow_spent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = self.clock.monotonic()
            self._account(ended, ended - started)
            self._failures += 1
            self._retry_delay = backoff_delay(self._failures, self.status.interval_s)
            await self._failed(exc)

    async def _follow_depth(self) -> float | None:
        """The depth tier: a capped first look, then the log rows since the last read; the
        exact count starts aside when it is due. Returns the server's time, if it said."""
        tracker = self.tracker
        self._depth_paces = tracker.cursor is not None
        if tracker.cursor is None:
            server_s = await tracker.first_look(self.backend)
            if tracker.small and not tracker.capped:
                # Milliseconds: count exactly before showing anything (held jobs included).
                started = self.clock.monotonic()
                exact_s = await tracker.resync(self.backend)
                self._resync_due = started + self.tracker_resync_every_s
                if server_s is not None and exact_s is not None:
                    server_s += exact_s
            else:
                self._start_resync()
        else:
            server_s = await tracker.advance(self.backend)
            if tracker.resync_requested or self.clock.monotonic() >= self._resync_due:
                self._start_resync()
        self._tracked = tracker.reading(server_s)
        self._depth = self._tracked.depth
        return server_s

    async def _refresh_deferred(self) -> float:
        """The ready/deferred split (time moves jobs from deferred to ready, unlogged): for all
        entrypoints paced by its own cost, for those with newly queued jobs within a second.
        Returns the seconds it spent in the database."""
        started = self.clock.monotonic()
        everyone = started >= self._deferred_due
        touched = bool(self.tracker.queued_touched) and (
            started >= self._deferred_last + DEFERRED_SOON_S
        )
        if not (everyone or touched):
            return 0.0
        self._deferred_last = started
        server_s = await self.tracker.refresh_deferred(self.backend, touched_only=not everyone)
        client_s = self.clock.monotonic() - started
        spent = min(client_s, server_s) if server_s is not None else client_s
        if everyone:
            self._deferred_due = started + max(
                DEFERRED_EVERY_S, spent / (self.budget * DEFERRED_SHARE)
            )
        self._tracked = self.tracker.reading(self._tracked.server_s if self._tracked else None)
        self._depth = self._tracked.depth
        return spent

    def _start_resync(self) -> None:
        if self._resync_task is not None and not self._resync_task.done():
            return
        self._resync_task = asyncio.create_task(self._resync(), name="depth exact count")

    async def _resync(self) -> None:
        """The exact count of every depth, aside from the refreshes, paced by its cost."""
        started = self.clock.monotonic()
        try:
            server_s = await self.tracker.resync(self.backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The log-followed numbers stay (marked as lower bounds until one succeeds).
            log.warning("exact depth count failed: %s", error_line(exc))
            self.tracker.resync_requested = False
            self._resync_due = self.clock.monotonic() + RESYNC_RETRY_S
            return
        ended = self.clock.monotonic()
        spent = min(ended - started, server_s) if server_s is not None else ended - started
        self.pacer.book(ended, spent)
        self._resync_due = started + max(
            self.tracker_resync_every_s, spent / (self.budget * RESYNC_SHARE)
        )
        self._deferred_due = 0.0
        self.request_refresh()  # show the exact numbers

    async def _refresh_slow_tiers(self, started: float, *, durations: bool = True) -> float:
        """Windows and durations read the log: each keeps to its own slice of the budget.

        Returns the seconds they spent in the database (the server's own count where it gave
        one), which is what the budget books.
        """
        total = 0.0
        if durations and started >= self._durations_due:
            self._durations = await fetch_durations(self.backend, DURATIONS_WINDOW)
            spent = self.clock.monotonic() - started
            total += spent
            self._durations_due = started + max(
                DURATIONS_EVERY_S, spent / (self.budget * DURATIONS_SHARE)
            )
        if started >= self._windows_due:
            windows_started = self.clock.monotonic()
            reading = await fetch_windows(self.backend, counts=False)
            self._windows = reading.windows
            spent = self.clock.monotonic() - windows_started
            # Paced like the depth tier, on the database's own time when it told us: a stall of
            # the console's loop (startup, a repaint) must not push the next reading far out.
            if reading.server_s is not None:
                spent = min(spent, reading.server_s)
            total += spent
            self._windows_due = windows_started + max(
                self.status.interval_s, spent / (self.budget * WINDOWS_SHARE)
            )
        return total

    def _show(self, started: float, spent: float) -> None:
        ended = self.clock.monotonic()
        recovered = self.status.lost_since is not None
        self._failures = 0
        self._account(ended, spent)
        self._last_ok_at = self.clock.now()
        rows = merge_rows(self._depth, self._with_counts(self._windows), self._durations)
        replica = self.backend.replica
        self._on_snapshot(
            OverviewSnapshot(taken_at=self.clock.now(), rows=rows, refresh_s=ended - started)
        )
        self._publish(
            replace(
                self.status,
                error=None,
                refreshes=self.status.refreshes + 1,
                effective_interval_s=max(self.status.interval_s, self.pacer.depth_gap()),
                db_cost=self.pacer.cost(ended),
                lost_since=None,
                next_try_at=None,
                failures=0,
                reconnects=self.status.reconnects + (1 if recovered else 0),
                replica=replica.status.describe() if replica else None,
                replica_in_use=bool(replica and replica.status.in_use),
                depth_note=self._depth_note(),
            )
        )

    def _depth_note(self) -> str | None:
        """What the screen must say while depths are not exact (None when they are)."""
        tracked = self._tracked
        if tracked is None:
            return None
        if tracked.exact and not tracked.capped:
            return None
        parts = []
        if not tracked.exact:
            parts.append(
                f"counting exactly: queued ≥ {FIRST_LOOK_CAP:,} per entrypoint shown as "
                f"{FIRST_LOOK_CAP:,}+, held not counted yet"
            )
        elif tracked.capped:
            parts.append(f"deferred counted up to {DEFERRED_CAP:,}")
        return "; ".join(parts) + " (r: count exactly now)"

    def _with_counts(self, windows: dict[str, Windows]) -> dict[str, Windows]:
        """Picked and held jobs come from the depth tracker (no scan of the queue table)."""
        tracked = self._tracked
        if tracked is None:
            return windows
        out = dict(windows)
        for entrypoint in tracked.picked.keys() | tracked.held.keys():
            out[entrypoint] = replace(
                out.get(entrypoint, Windows()),
                picked=tracked.picked.get(entrypoint, 0),
                held=tracked.held.get(entrypoint, 0),
            )
        return out

    async def _failed(self, exc: BaseException) -> None:
        now = self.clock.now()
        if not self.backend.errors.connection_lost(exc):
            self._publish(
                replace(
                    self.status,
                    error=_describe_refresh_error(exc, self.backend),
                    failures=self._failures,
                    next_try_at=now + timedelta(seconds=self._retry_delay),
                )
            )
            return
        # Events sent while the connection is down are gone for good: LISTEN again once back,
        # and take the durations anew too, so the first refresh reconciles everything.
        if self.status.listening or not self.backend.listener_alive():
            await self._listener_lost()
        self._durations_due = 0.0
        self._windows_due = 0.0
        lost_since = self.status.lost_since or now
        next_try = now + timedelta(seconds=self._retry_delay)
        self._publish(
            replace(
                self.status,
                error=describe_outage(
                    exc, self.backend, lost_since, self._last_ok_at, next_try, self._failures
                ),
                lost_since=lost_since,
                next_try_at=next_try,
                failures=self._failures,
                listening=False,
            )
        )

    def _prove_live_path(self, depth_started: float) -> None:
        """Growth of the queue without any NOTIFY since the previous read: the live path is
        broken once that lasts `LIVE_PROOF_PERIODS` timer periods."""
        queued = sum(d.ready + d.deferred for d in self._depth.values())
        previous, self._last_queued = self._last_queued, queued
        if self.tracker.generation != self._proof_generation:
            # A first look or exact count replaced the numbers: a jump, not inserts.
            self._proof_generation = self.tracker.generation
            previous = None
        previous_started, self._last_depth_started = self._last_depth_started, depth_started
        if not (self._listen and self.status.listening):
            self._unnotified_since = None
            return
        heard = self._last_event_mono is not None and self._last_event_mono >= previous_started
        grew = previous is not None and queued > previous
        if grew and not heard and self._unnotified_since is None:
            self._unnotified_since = depth_started
        if self._unnotified_since is None:
            return
        waited = depth_started - self._unnotified_since
        if waited >= max(LIVE_PROOF_MIN_S, LIVE_PROOF_PERIODS * self.status.interval_s):
            problem = (
                f"no NOTIFY on {self.status.channel} for {waited:.0f}s while jobs were inserted: "
                "the live path is broken (PgBouncer in transaction pooling drops them: set "
                f"pooler = transaction or listen_dsn); polling every {self.status.interval_s:g}s"
            )
            if self.status.live_problem is None:
                log.warning("%s", problem)
            self.status = replace(self.status, live_problem=problem)

    async def _listener_lost(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.backend.stop_listening(), 5)
        self._unnotified_since = None
        self._publish(replace(self.status, listening=False, live_problem=None))

    def _account(self, ended: float, spent: float) -> None:
        """`spent`: seconds in the database for what ended at `ended`."""
        self._last_end = ended
        self._last_duration = spent
        self.pacer.book(ended, spent)

    async def _start_listening(self) -> None:
        try:
            # A LISTEN that never answers (a pooler holding the client) must not stop the loop.
            await asyncio.wait_for(self.backend.listen(self._on_event), CONNECT_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN failed: %s", exc)
            self._publish(
                replace(
                    self.status,
                    listening=False,
                    error=f"not listening on {self.status.channel}: {error_line(exc)}",
                )
            )
            return
        # Jobs inserted while not listening never sent a NOTIFY to us: the live-path proof
        # starts over from the first read after this LISTEN (else a reconnect after inserts
        # says "the live path is broken" until the next insert).
        self._last_queued = None
        self._publish(replace(self.status, listening=True))

    def _on_event(self, envelope: pgq_models.AnyEvent) -> None:
        event = envelope.root
        received = self.clock.now()
        self._last_event_mono = self.clock.monotonic()
        self._unnotified_since = None
        latency = None
        if isinstance(event, pgq_models.TableChangedEvent):
            latency = max(0.0, (received - event.sent_at).total_seconds())
            if event.operation == "truncate":  # no log rows: count again
                self.tracker.request_resync()
            self.request_refresh()
        status = replace(
            self.status,
            last_event_at=received,
            last_event_latency_s=latency
            if latency is not None
            else self.status.last_event_latency_s,
            events_seen=self.status.events_seen + 1,
            live_problem=None,
        )
        # Hundreds of NOTIFYs a second must not each repaint the header (slow SSH links);
        # the refresh they trigger publishes the latest status anyway.
        if self.clock.monotonic() - self._status_published_at >= STATUS_EVERY_S:
            self._publish(status)
        else:
            self.status = status

    def _publish(self, status: RefreshStatus) -> None:
        self.status = status
        self._status_published_at = self.clock.monotonic()
        self._on_status(status)


def describe_outage(
    exc: BaseException,
    backend: Backend,
    lost_since: datetime,
    last_ok_at: datetime | None,
    next_try_at: datetime,
    attempt: int,
) -> str:
    """One line for the banner: what is lost, since when, and when the console tries again."""
    return _describe_outage(exc, backend.label, lost_since, last_ok_at, next_try_at, attempt)


def _describe_refresh_error(exc: BaseException, backend: Backend) -> str:
    errors = backend.errors
    if isinstance(exc, ConsoleError):
        return str(exc)
    if errors.statement_cancelled(exc):
        seconds = backend.statement_timeout.total_seconds()
        return f"refresh took longer than the {seconds:g}s statement timeout; retrying"
    if errors.permission_denied(exc):
        return f"permission denied reading the queue tables: {error_line(exc)}"
    if errors.connection_failed(exc):
        return f"lost the connection to {backend.label}: {error_line(exc)}; retrying"
    return f"refresh failed: {type(exc).__name__}: {error_line(exc)}"


T = TypeVar("T")


@dataclass(frozen=True)
class PollStatus:
    """How one screen's polling is doing."""

    interval_s: float
    ok_at: datetime | None = None  # the console's clock when the shown data was read
    took_s: float = 0.0
    error: str | None = None
    lost_since: datetime | None = None
    next_try_at: datetime | None = None
    failures: int = 0
    polls: int = 0


class PollLoop(Generic[T]):
    """Poll `fetch` every `interval_s` while `active()`; back off and reconnect on failures.

    Used by the screens that show one query's result; nothing here blocks the UI: results and
    status arrive through the callbacks, which must only post messages. The timing is the
    shared `RefreshLoop`'s.
    """

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        fetch: Callable[[], Awaitable[T]],
        *,
        on_result: Callable[[T], None],
        on_status: Callable[[PollStatus], None],
        interval_s: float = 5.0,
        active: Callable[[], bool] = lambda: True,
        wait: Wait = wait_for_event,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._fetch = fetch
        self._on_result = on_result
        self._on_status = on_status
        self.status = PollStatus(interval_s=interval_s)
        self.timing = RefreshLoop(clock, interval_s=interval_s, visible=active, wait=wait)

    def request_refresh(self) -> None:
        self.timing.request_refresh()

    def set_interval(self, seconds: float) -> None:
        self._publish(replace(self.status, interval_s=seconds))
        self.timing.set_interval(seconds)

    async def run(self) -> None:
        await self.timing.run(self.poll_once)

    async def poll_once(self) -> None:
        started = self.clock.monotonic()
        try:
            result = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            lost = self.backend.errors.connection_lost(exc)
            self.timing.failed(lost=lost)
            if lost:
                message = self.timing.outage(exc, self.backend.label)
            else:
                message = _describe_refresh_error(exc, self.backend)
            self._publish(
                replace(
                    self.status,
                    error=message,
                    lost_since=self.timing.lost_since,
                    next_try_at=self.timing.next_try_at,
                    failures=self.timing.failures,
                )
            )
            return
        ended = self.clock.monotonic()
        self.timing.succeeded()
        self._on_result(result)
        self._publish(
            replace(
                self.status,
                ok_at=self.timing.last_ok_at,
                took_s=ended - started,
                error=None,
                lost_since=None,
                next_try_at=None,
                failures=0,
                polls=self.status.polls + 1,
            )
        )

    def _publish(self, status: PollStatus) -> None:
        self.status = status
        self._on_status(status)
