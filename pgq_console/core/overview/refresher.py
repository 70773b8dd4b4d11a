"""The live model: LISTEN for PgQueuer events, coalesce them into refreshes, poll for UPDATEs.

PgQueuer's trigger is statement-level, so UPDATEs (picks, requeues, holds) never notify: a timer
refresh complements the events. Every refresh is timed; the pacing stretches so the console's
own database time stays under its budget (overview/pacing.py), and each tier reads when its
slice allows (overview/tiers.py). The waiting is the shared `RefreshLoop`'s
(core/refresh_loop.py): the interval stretched by the pace, events after a debounce and a
least gap, visibility, backoff and the outage line.

When the database goes away the loop backs off (exponential, capped, jittered so many consoles do
not reconnect in lock-step), says what is lost and when it retries, LISTENs again once the
connection is back, and reconciles with a full refresh.

Listening is never claimed without proof: when the queue grows (jobs were inserted, so PgQueuer's
trigger sent NOTIFYs) and no event arrives within `LIVE_PROOF_PERIODS` timer periods, the status
says the live path is broken. Behind a transaction pooler the loop does not LISTEN at all and
says it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from pgqueuer.domain import models as pgq_models

from pgq_console.core.backend import CONNECT_TIMEOUT_S, Backend
from pgq_console.core.clock import Clock
from pgq_console.core.depth import DepthTracker
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview.pacing import EVENT_DEBOUNCE_S, Pacer
from pgq_console.core.overview.tiers import OverviewTiers
from pgq_console.core.refresh_loop import RefreshLoop, Wait, describe_refresh_error, wait_for_event
from pgq_console.core.text import error_line

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # at most this often an event alone repaints the header (refreshes do too)
MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0
# Timer periods (at least LIVE_PROOF_MIN_S) an insert may go without its NOTIFY before the
# live path is called broken: delivery normally takes milliseconds.
LIVE_PROOF_PERIODS = 3
LIVE_PROOF_MIN_S = 5.0
LOG_RETRY_S = 5.0  # windows that failed (not a lost connection) are read again after this


# A NOTIFY older than this when it arrives says nothing of the live path (its `sent_at` is
# forged, or clocks are apart): not shown as the latency.
MAX_PLAUSIBLE_LATENCY_S = 3600.0


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
        wait: Wait = wait_for_event,
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
        self.pacer = Pacer(budget, clock.monotonic())
        self.tiers = OverviewTiers(
            backend,
            clock,
            self.pacer,
            interval_s=lambda: self.status.interval_s,
            on_exact=self.request_refresh,  # show the exact numbers
        )
        # The first read happens even while hidden: the screen appears with its rows.
        self.timing = RefreshLoop(
            clock,
            interval_s=interval_s,
            visible=lambda: self._active() and not self.status.paused,
            read_ahead=True,
            wait=wait,
            pace=self.pacer.depth_gap,
            event_debounce_s=EVENT_DEBOUNCE_S,
            event_gap=lambda: self.pacer.event_gap(clock.monotonic()),
        )
        # What the last refresh cost: the depth read, and everything it booked.
        self.last_depth_s = 0.0
        self.last_spent_s = 0.0
        self._status_published_at = -1.0
        # The live-path proof: the queue's size at the last refresh, when that depth read
        # started, the last event, and since when growth has waited for its NOTIFY.
        self._last_queued: int | None = None
        self._proof_generation = -1
        self._last_depth_started = 0.0
        self._last_event_mono: float | None = None
        self._unnotified_since: float | None = None
        # The windows and durations being read aside (`_read_log_tiers_aside`).
        self._log_read: asyncio.Task[None] | None = None
        self._log_error: str | None = None  # why the last one failed, shown until one succeeds
        # The depth's last read failed: log tiers read aside are not shown (`_show_log_tiers`).
        self._depth_failed = False
        # The pulse and the screens built ahead read after this refresher's first snapshot.
        backend.first_reading.expect()

    @property
    def tracker(self) -> DepthTracker:
        return self.tiers.tracker

    def attach(
        self,
        *,
        on_snapshot: Callable[[OverviewSnapshot], None],
        on_status: Callable[[RefreshStatus], None],
        active: Callable[[], bool],
    ) -> None:
        """Send snapshots and status to a screen from now on (a refresher started before its
        screen existed: overview/early.py)."""
        self._on_snapshot = on_snapshot
        self._on_status = on_status
        self._active = active

    # -- controls (called from the UI thread's event loop, never block) --------------------

    def request_refresh(self) -> None:
        """Refresh as soon as the budget allows (an event, or the operator pressed a key)."""
        self.timing.notify()

    def request_exact(self) -> None:
        """Count the depths exactly now (a key, the console's own write, a TRUNCATE)."""
        self.tiers.request_exact()
        self.request_refresh()

    def wake(self) -> None:
        """Look at the due time again (the screen came back into view)."""
        self.timing.wake()

    def set_interval(self, seconds: float) -> None:
        seconds = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, seconds))
        self._publish(replace(self.status, interval_s=seconds))
        self.timing.set_interval(seconds)

    def set_paused(self, paused: bool) -> None:
        self._publish(replace(self.status, paused=paused))
        if paused:
            self.timing.wake()
        else:
            self.timing.request_refresh()  # the numbers of now, not at the next due time

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.timing.run(self._round)
        finally:
            self.backend.first_reading.arrived()
            await self._stop_log_read()
            await self.tiers.close()

    async def _round(self) -> None:
        try:
            if self._listen and self.status.listening and not self.backend.listener_alive():
                await self._listener_lost()
            if self._listen and not self.status.listening:
                if self.status.refreshes == 0 and self.tiers.first_paint:
                    await self._listen_alongside_first_read()
                    return
                await self._start_listening()
            await self._refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not stop the live model for good
            log.exception("refresh loop")
            self.timing.failed(lost=False)
            self._publish(replace(self.status, error=f"refresh failed: {error_line(exc)}"))
        finally:
            self.backend.first_reading.arrived()  # read or failed: the others go

    async def _refresh(self) -> None:
        """Depth first and shown at once; the log-reading tiers aside, when they are due (on a
        pool read alongside the depth, shown after it).

        The first refresh (and the first after a reconnect) reads the windows before it shows
        anything, so the screen never shows depth with empty windows; the durations (p50/p95)
        follow right after that first paint.
        """
        tiers = self.tiers
        started = self.clock.monotonic()
        shown: asyncio.Future[None] | None = None  # the log tiers read alongside wait for it
        try:
            # The windows before the first paint; the durations (a percentile over the log:
            # seconds at 10M rows) right after it.
            # The first windows are read alongside the depths: on a pool they take another
            # connection (at 50 ms RTT, 0.1 s sooner); one connection reads them in turn.
            windows = (
                asyncio.ensure_future(tiers.read_log_tiers(started, durations=False))
                if tiers.first_paint
                else None
            )
            if windows is None and self.backend.PARALLEL_READS:
                # Later, the windows and durations due are read aside from the start, on
                # another connection: the overview's return from another screen (a key) has
                # its fresh rows after one round trip, not after the depth's and then theirs.
                # Shown after the depth (never fresh windows beside the depths of before).
                shown = asyncio.get_running_loop().create_future()
                self._read_log_tiers_if_due(after=shown)
            depth_started = self.clock.monotonic()
            try:
                server_s_or_none = await tiers.follow_depth()
                self._depth_failed = False
            except BaseException:
                if windows is not None:
                    windows.cancel()
                    with contextlib.suppress(BaseException):
                        await windows
                raise
            log_spent = await windows if windows is not None else 0.0
            self._prove_live_path(depth_started)
            if self.backend.replica is not None:  # lag for the header, measured aside
                self.backend.replica.check_soon()
            client_s = self.clock.monotonic() - depth_started
            # Pace on the database's own time when it told us; the client's includes CPU waits.
            # It cannot exceed the round trip the clock saw (with a FixedClock: nothing).
            server_s = server_s_or_none if server_s_or_none is not None else client_s
            self.last_depth_s = min(server_s, client_s)
            if tiers.depth_paces:
                self.pacer.depth_took(max(0.0, self.last_depth_s - tiers.picked_held_s))
            deferred_spent = await tiers.read_deferred()
            self._show(started, spent=self.last_depth_s + log_spent + deferred_spent)
            if shown is not None:
                shown.set_result(None)
            self._read_log_tiers_if_due()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._depth_failed = True
            ended = self.clock.monotonic()
            self._book(ended, ended - started)
            await self._failed(exc)
        finally:
            if shown is not None and not shown.done():
                shown.set_result(None)  # the depth failed: the windows are shown all the same

    def _read_log_tiers_if_due(self, after: asyncio.Future[None] | None = None) -> None:
        """Read the windows and durations aside if they are due (shown once `after` is done)."""
        if (
            self._log_read is None
            and not self.status.paused
            and self.tiers.log_tiers_due(self.clock.monotonic())
        ):
            self._log_read = asyncio.ensure_future(self._read_log_tiers_aside(after))

    async def _read_log_tiers_aside(self, after: asyncio.Future[None] | None = None) -> None:
        """Read the windows and durations while the depth goes on refreshing.

        They read the log: 0.1-0.6 s under 2,500 jobs/s, seconds at 10M rows. Read in the
        depth's round, they held the next depth read back that long (refresh gaps of 0.6-0.8 s
        and the commit -> row p95 with them). On a pool they take a connection of their own;
        on one connection they take turns with the depth reads at the driver.
        """
        started = self.clock.monotonic()

        async def show_windows(spent: float) -> None:  # in before the durations: shown at once
            if after is not None:
                await asyncio.shield(after)
            self._show_log_tiers(started, spent)

        try:
            spent = await self.tiers.read_log_tiers(started, on_windows=show_windows)
            if after is not None:
                await asyncio.shield(after)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = self.clock.monotonic()
            self._book(ended, ended - started)
            if self.backend.errors.connection_lost(exc):
                # The depth loop meets the lost connection too and reconnects; after that the
                # windows are read anew (`_failed` forgets them).
                self.tiers.forget_log_tiers()
                return
            log.warning("reading the windows failed: %s", error_line(exc))
            self.tiers.retry_log_tiers_after(ended + max(LOG_RETRY_S, self.status.interval_s))
            self._log_error = describe_refresh_error(exc, self.backend)
            self._publish(replace(self.status, error=self._log_error))
        else:
            self._log_error = None
            self._show_log_tiers(started, spent)
        finally:
            self._log_read = None

    def _show_log_tiers(self, started: float, spent: float) -> None:
        """Show the windows and durations just read, unless the depth's last read failed: then
        they wait for its next good read (shown with it). Shown, they would mark the round read
        and clear the failure: while a lock held the queue table, the windows (read from the
        log) cleared the overview's "statement timeout" banner after each failed depth read
        and its stale depths looked fresh."""
        if self._depth_failed:
            self._book(self.clock.monotonic(), spent)
            return
        self._show(started, spent=spent)

    async def _stop_log_read(self) -> None:
        task, self._log_read = self._log_read, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _show(self, started: float, spent: float) -> None:
        ended = self.clock.monotonic()
        recovered = self.status.lost_since is not None
        self._book(ended, spent)
        self.timing.succeeded()
        # The first snapshot is read: the pulse and the screens built ahead may read now (the
        # durations after it are not waited for).
        self.backend.first_reading.arrived()
        if self.status.paused:
            return  # read before `p`, back after it: paused, the screen holds what it showed
        replica = self.backend.replica
        self._on_snapshot(
            OverviewSnapshot(
                taken_at=self.clock.now(), rows=self.tiers.rows(), refresh_s=ended - started
            )
        )
        self._publish(
            replace(
                self.status,
                error=self._log_error,
                refreshes=self.status.refreshes + 1,
                effective_interval_s=max(self.status.interval_s, self.pacer.depth_gap()),
                db_cost=self.pacer.cost(ended),
                lost_since=None,
                next_try_at=None,
                failures=0,
                reconnects=self.status.reconnects + (1 if recovered else 0),
                replica=replica.status.describe() if replica else None,
                replica_in_use=bool(replica and replica.status.in_use),
                depth_note=self.tiers.depth_note(),
                windows_note=self.tiers.windows_note(),
            )
        )

    async def _failed(self, exc: BaseException) -> None:
        message = self.timing.read_failed(exc, self.backend)
        if not self.timing.lost:
            self._publish(
                replace(
                    self.status,
                    error=message,
                    failures=self.timing.failures,
                    next_try_at=self.timing.next_try_at,
                )
            )
            return
        # Events sent while the connection is down are gone for good: LISTEN again once back,
        # and take the durations anew too, so the first refresh reconciles everything.
        if self.status.listening or not self.backend.listener_alive():
            await self._listener_lost()
        await self._stop_log_read()
        self.tiers.forget_log_tiers()
        self._publish(
            replace(
                self.status,
                error=message,
                lost_since=self.timing.lost_since,
                next_try_at=self.timing.next_try_at,
                failures=self.timing.failures,
                listening=False,
            )
        )

    def _book(self, ended: float, spent: float) -> None:
        """`spent`: seconds in the database for what ended at `ended`."""
        self.last_spent_s = spent
        self.pacer.book(ended, spent)

    # -- listening and its proof ---------------------------------------------------------------

    def _prove_live_path(self, depth_started: float) -> None:
        """Growth of the queue without any NOTIFY since the previous read: the live path is
        broken once that lasts `LIVE_PROOF_PERIODS` timer periods."""
        queued = self.tiers.queued()
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

    async def _listen_alongside_first_read(self) -> None:
        """The first LISTEN and the first reading at once (over a remote link the LISTEN's
        round trip no longer comes before the first numbers). What was committed between the
        reading's snapshot and the LISTEN taking effect sent no NOTIFY to us: once listening,
        one more refresh reads it."""
        listening = asyncio.ensure_future(self._start_listening())
        try:
            await self._refresh()
        except BaseException:
            listening.cancel()
            with contextlib.suppress(BaseException):
                await listening
            raise
        await listening
        if self.status.listening:
            self.request_refresh()

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
            if latency > MAX_PLAUSIBLE_LATENCY_S:
                # Any role may NOTIFY this channel: a forged `sent_at` ("latency 334d") is not
                # a measurement. The last plausible one stays.
                latency = None
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
