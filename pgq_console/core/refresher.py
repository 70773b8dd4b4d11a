"""The live model: LISTEN for PgQueuer events, coalesce them into refreshes, poll for UPDATEs.

PgQueuer's trigger is statement-level, so UPDATEs (picks, requeues, holds) never notify: a timer
refresh complements the events. Every refresh is timed; the pacing stretches so the console's
own database time stays under its budget (5 % of wall-clock time by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from pgqueuer.domain import models as pgq_models

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.models import Durations, OverviewSnapshot, RefreshStatus
from pgq_console.core.stats import fetch_durations, fetch_overview

log = logging.getLogger(__name__)

EVENT_DEBOUNCE_S = 0.05  # merge a burst of NOTIFYs into one refresh
MIN_EVENT_GAP_S = 0.1
DURATIONS_EVERY_S = 15.0
DURATIONS_WINDOW = timedelta(minutes=5)
COST_WINDOW_S = 60.0
MIN_COST_WINDOW_S = 2.0
MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0
MAX_RETRY_S = 30.0


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
        budget: float = 0.04,  # aim below the 5 % ceiling: the cost window lags
        listen: bool = True,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._on_snapshot = on_snapshot
        self._on_status = on_status
        self.budget = budget
        self._listen = listen
        self.status = RefreshStatus(
            channel=backend.installation.channel,
            interval_s=interval_s,
            effective_interval_s=interval_s,
        )
        self._wake = asyncio.Event()
        self._event_due: float | None = None
        self._last_end = 0.0
        self._last_duration = 0.0
        self._last_overview_s = 0.0  # the overview query alone paces refreshes
        self._failures = 0
        self._costs: deque[tuple[float, float]] = deque()  # (ended at, seconds in database)
        self._started = clock.monotonic()
        self._durations: dict[str, Durations] = {}
        self._durations_due = 0.0

    # -- controls (called from the UI thread's event loop, never block) --------------------

    def request_refresh(self) -> None:
        """Refresh as soon as the budget allows (an event, or the operator pressed a key)."""
        now = self.clock.monotonic()
        if self._event_due is None:
            self._event_due = now + EVENT_DEBOUNCE_S
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
            if self._listen and not self.status.listening:
                await self._start_listening()
            await self._refresh()

    def _gap(self) -> float:
        """The least time between refreshes that keeps database time within the budget."""
        return float(self._last_overview_s / self.budget)

    def _next_due(self) -> float:
        if self.status.paused:
            return self.clock.monotonic() + 3600
        if self._failures:
            backoff = min(MAX_RETRY_S, self.status.interval_s * 2.0 ** (self._failures - 1))
            return self._last_end + backoff
        timer_due = self._last_end + max(self.status.interval_s, self._gap())
        if self._event_due is None:
            return timer_due
        # Within budget, an event refreshes at once (after the debounce); over it, the gap holds.
        gap = self._gap() if self._over_budget() else 0.0
        event_due = max(self._event_due, self._last_end + max(MIN_EVENT_GAP_S, gap))
        return min(timer_due, event_due)

    def _over_budget(self) -> bool:
        now = self.clock.monotonic()
        window = min(COST_WINDOW_S, max(now - self._started, MIN_COST_WINDOW_S))
        return sum(spent for _, spent in self._costs) / window > self.budget

    async def _refresh(self) -> None:
        self._event_due = None
        started = self.clock.monotonic()
        try:
            if started >= self._durations_due:
                self._durations = await fetch_durations(self.backend, DURATIONS_WINDOW)
                spent = self.clock.monotonic() - started
                # The percentile query reads the log's window: give it a fifth of the budget.
                self._durations_due = started + max(DURATIONS_EVERY_S, spent / (self.budget / 5))
            overview_started = self.clock.monotonic()
            rows = await fetch_overview(self.backend, self._durations)
            self._last_overview_s = self.clock.monotonic() - overview_started
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = self.clock.monotonic()
            self._account(started, ended)
            self._failures += 1
            self._publish(replace(self.status, error=_describe_refresh_error(exc, self.backend)))
            return
        ended = self.clock.monotonic()
        self._failures = 0
        self._account(started, ended)
        snapshot = OverviewSnapshot(
            taken_at=self.clock.now(), rows=rows, refresh_s=self._last_duration
        )
        self._on_snapshot(snapshot)
        self._publish(
            replace(
                self.status,
                error=None,
                refreshes=self.status.refreshes + 1,
                effective_interval_s=max(self.status.interval_s, self._gap()),
                db_cost=self._cost(ended),
            )
        )

    def _account(self, started: float, ended: float) -> None:
        self._last_end = ended
        self._last_duration = ended - started
        self._costs.append((ended, ended - started))
        while self._costs and self._costs[0][0] < ended - COST_WINDOW_S:
            self._costs.popleft()

    def _cost(self, now: float) -> float:
        window = min(COST_WINDOW_S, max(now - self._started, 1.0))
        return sum(spent for _, spent in self._costs) / window

    async def _start_listening(self) -> None:
        try:
            await self.backend.listen(self._on_event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN failed: %s", exc)
            self._publish(
                replace(
                    self.status,
                    listening=False,
                    error=f"not listening on {self.status.channel}: {_one_line(exc)}",
                )
            )
            return
        self._publish(replace(self.status, listening=True))

    def _on_event(self, envelope: pgq_models.AnyEvent) -> None:
        event = envelope.root
        received = self.clock.now()
        latency = None
        if isinstance(event, pgq_models.TableChangedEvent):
            latency = max(0.0, (received - event.sent_at).total_seconds())
            self.request_refresh()
        self._publish(
            replace(
                self.status,
                last_event_at=received,
                last_event_latency_s=latency
                if latency is not None
                else self.status.last_event_latency_s,
                events_seen=self.status.events_seen + 1,
            )
        )

    def _publish(self, status: RefreshStatus) -> None:
        self.status = status
        self._on_status(status)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe_refresh_error(exc: BaseException, backend: Backend) -> str:
    import asyncpg
    import psycopg

    if isinstance(exc, ConsoleError):
        return str(exc)
    if isinstance(exc, asyncpg.QueryCanceledError | psycopg.errors.QueryCanceled):
        seconds = backend.statement_timeout.total_seconds()
        return f"refresh took longer than the {seconds:g}s statement timeout; retrying"
    if isinstance(exc, asyncpg.InsufficientPrivilegeError | psycopg.errors.InsufficientPrivilege):
        return f"permission denied reading the queue tables: {_one_line(exc)}"
    if isinstance(exc, OSError | asyncpg.InterfaceError | psycopg.OperationalError):
        return f"lost the connection to {backend.label}: {_one_line(exc)}; retrying"
    return f"refresh failed: {type(exc).__name__}: {_one_line(exc)}"
