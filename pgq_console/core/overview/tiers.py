"""What the overview reads, tier by tier, each paced by its own slice of the database budget.

The depth tier answers events. A small queue is counted directly on every read (queued jobs
with their ready/deferred split; picked jobs and held failures on their own paced cadence). A
large one gets a capped first look, then PgQueuer's log rows since the last read
(core/depth.py); the exact count of every depth runs aside, on its own connection, so refreshes
go on while it does, and the ready/deferred split follows (time moves jobs from deferred to
ready, unlogged). Between the two, each switch starts from an exact count. The windows and the
durations read the log, less often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pgq_console.core import depth as depth_module
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.depth import (
    DEFERRED_CAP,
    FIRST_LOOK_CAP,
    FIRST_LOOK_PICKED_CAP,
    RESYNC_EVERY_S,
    DepthTracker,
    Split,
    TrackedDepth,
)
from pgq_console.core.index_cache import (
    STATISTICS_LARGE_ROWS,
    index_presence,
    known,
    statistics_index_name,
)
from pgq_console.core.models import Durations, EntrypointRow
from pgq_console.core.overview.pacing import (
    DEFERRED_SHARE,
    DURATIONS_SHARE,
    RESYNC_SHARE,
    WINDOWS_WARM_READINGS,
    Pacer,
    windows_gap,
)
from pgq_console.core.stats import Depth, Windows, fetch_durations, fetch_windows, merge_rows
from pgq_console.core.text import error_line

log = logging.getLogger(__name__)

DURATIONS_EVERY_S = 15.0
DURATIONS_WINDOW = timedelta(minutes=5)
DEFERRED_EVERY_S = 5.0  # the ready/deferred split, when no job was queued since (time moves it)
DEFERRED_SOON_S = 1.0  # ... and when jobs were queued since (some may be deferred)
RESYNC_RETRY_S = 60.0
# Counting directly, picked jobs and held failures (UPDATEs: no NOTIFY, and a scan of the whole
# table for held ones) are read at most this often, or less as their cost asks.
PICKED_HELD_EVERY_S = 1.0
# Rates read this far apart or further (a windows read of 0.12 s and more at the default budget)
# are worth a word on screen when the statistics table is large and has no index on created: its
# hour read then scans the table's whole history, which nothing prunes (core/indexes.py).
SLOW_WINDOWS_S = 30.0


class OverviewTiers:
    """The overview's readings and when each tier is due next (monotonic seconds)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        pacer: Pacer,
        *,
        interval_s: Callable[[], float],
        on_exact: Callable[[], None],
    ) -> None:
        """`interval_s`: the refresh interval now (the windows are read at most that often);
        `on_exact`: an exact count ended (show its numbers)."""
        self.backend = backend
        self.clock = clock
        self.pacer = pacer
        self._interval_s = interval_s
        self._on_exact = on_exact
        self.tracker = DepthTracker(backend.installation)
        self.tracker_resync_every_s = RESYNC_EVERY_S
        self.tracked: TrackedDepth | None = None
        self.depth: dict[str, Depth] = {}
        self._windows: dict[str, Windows] = {}
        self._last_rows: dict[str, EntrypointRow] = {}
        self._durations: dict[str, Durations] = {}
        self._windows_due = 0.0
        # The last windows readings' seconds in the database (`windows_gap`).
        self._windows_readings: deque[float] = deque(maxlen=WINDOWS_WARM_READINGS)
        self._windows_note: str | None = None  # `windows_note`
        self._durations_due = 0.0
        self._deferred_due = 0.0
        self._deferred_last = 0.0
        # The split read with the last log delta: (when, of everyone, of any, seconds it took).
        self._split_read: tuple[float, bool, bool, float] | None = None
        self._resync_due = 0.0
        self._resync_task: asyncio.Task[None] | None = None
        self._picked_held_due = 0.0
        self._resync_retry_at = 0.0  # a failed exact count is not retried before this
        # Whether the last depth read paces the event tier: a first look or an exact count is
        # a one-off, booked but not a measure of what a read costs.
        self.depth_paces = True
        # The part of the last depth read that was the picked/held count: paced on its own
        # cadence, so not a measure of what the next depth read costs (booked all the same).
        self.picked_held_s = 0.0

    @property
    def first_paint(self) -> bool:
        """Nothing read from the log yet (at the start, after a reconnect)."""
        return self._windows_due == 0.0

    def log_tiers_due(self, now: float) -> bool:
        return now >= min(self._windows_due, self._durations_due)

    def retry_log_tiers_after(self, when: float) -> None:
        """Reading the windows or durations failed: not again before `when`."""
        self._durations_due = max(self._durations_due, when)
        self._windows_due = max(self._windows_due, when)

    def forget_log_tiers(self) -> None:
        """The connection was lost: read the windows and durations anew once it is back."""
        self._durations_due = 0.0
        self._windows_due = 0.0
        self._windows_readings.clear()  # a new connection plans them cold again

    def request_exact(self) -> None:
        """Count the depths exactly at the next read (and the ready/deferred split with them)."""
        self.tracker.request_resync()
        self._deferred_due = 0.0

    def queued(self) -> int:
        return sum(d.ready + d.deferred for d in self.depth.values())

    def rows(self) -> tuple[EntrypointRow, ...]:
        # The last rows, so that unchanged ones are the same objects (`merge_rows`).
        rows = merge_rows(
            self.depth, self._with_counts(self._windows), self._durations, self._last_rows
        )
        self._last_rows = {row.entrypoint: row for row in rows}
        return rows

    async def close(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            with contextlib.suppress(BaseException):
                await self._resync_task

    # -- the depth tier ------------------------------------------------------------------------

    async def follow_depth(self) -> float | None:
        """The depths: counted directly while the queue is small; else a capped first look,
        then the log rows since the last read, the exact count starting aside when it is due.
        Returns the server's time, if it said."""
        tracker = self.tracker
        self.picked_held_s = 0.0
        if tracker.direct:
            server_s = await self._count_direct()
        elif tracker.cursor is None:
            server_s = await self._first_look()
        else:
            self.depth_paces = True
            started = self.clock.monotonic()
            split = self._split_due(started)
            server_s = await tracker.advance(self.backend, split=split)
            if split is not None and tracker.split_s is not None:
                # Read with the delta, in its snapshot (one round trip, not two in turn):
                # `read_deferred` paces it as its own read.
                split_any = split == "everyone" or tracker.split_entrypoints > 0
                self._split_read = (started, split == "everyone", split_any, tracker.split_s)
            if (
                tracker.queued_total() < depth_module.FOLLOW_BELOW
                and self.clock.monotonic() >= self._resync_retry_at
            ):
                # Small again: count exactly (aside); its numbers decide the switch.
                tracker.request_resync("small again")
            if tracker.resync_requested or self.clock.monotonic() >= self._resync_due:
                self._start_resync()
        self.tracked = tracker.reading(server_s)
        self.depth = self.tracked.depth
        return server_s

    async def _first_look(self) -> float | None:
        """At the start (and after a jump): a capped first look with the ready/deferred split;
        a small table is counted exactly at once and then directly, a large one exactly aside
        and followed meanwhile.

        The exact count is wanted either way, so on a backend that reads in parallel (a pool)
        it is read alongside the first look, on another connection, and applied after it:
        over a remote link the first numbers no longer wait for one statement after another
        (first look, exact count, split: three round trips and more at 50 ms).
        """
        tracker = self.tracker
        self.depth_paces = False
        started = self.clock.monotonic()
        exact: asyncio.Future[list[dict[str, Any]]] | None = None
        resyncing = self._resync_task is not None and not self._resync_task.done()
        if self.backend.PARALLEL_READS and not resyncing:
            exact = asyncio.ensure_future(tracker.read_exact(self.backend))
        try:
            server_s = await tracker.first_look(self.backend)
        except BaseException:
            await _discard(exact)
            raise
        # The split came with the first look: due again in its own time.
        self._deferred_last = started
        self._deferred_due = started + DEFERRED_EVERY_S
        if tracker.small and not tracker.capped:
            # Milliseconds: count exactly before showing anything (held jobs included).
            if exact is not None:
                exact_s = tracker.take_exact(await exact)
            else:
                started = self.clock.monotonic()
                exact_s = await tracker.resync(self.backend)
            self._resync_due = started + self.tracker_resync_every_s
            if server_s is not None and exact_s is not None:
                server_s += exact_s
            if tracker.queued_total() < depth_module.FOLLOW_ABOVE:
                tracker.enter_direct()
                self._picked_held_due = self.clock.monotonic() + PICKED_HELD_EVERY_S
        else:
            self._start_resync(exact)
        return server_s

    async def _count_direct(self) -> float | None:
        """A direct count; at `FOLLOW_ABOVE` queued jobs, an exact count at once and the log
        followed from it; after a jump of the log, the first look again."""
        tracker = self.tracker
        started = self.clock.monotonic()
        picked_held = tracker.resync_requested or started >= self._picked_held_due
        read = await tracker.count_direct(self.backend, picked_held=picked_held)
        if read.jumped:
            tracker.restart("log jumped")
            return await self._first_look()
        self.depth_paces = True
        server_s = read.server_s
        if read.picked_held_s is not None:
            self.picked_held_s = read.picked_held_s
            self._picked_held_due = started + max(
                PICKED_HELD_EVERY_S, read.picked_held_s / (self.pacer.budget * RESYNC_SHARE)
            )
        if tracker.queued_total() >= depth_module.FOLLOW_ABOVE:
            # Large now: follow the log from an exact count (its cursor), taken at once: under
            # the threshold at the last read, it takes milliseconds.
            self.depth_paces = False
            exact_s = await tracker.resync(self.backend)
            tracker.leave_direct()
            self._resync_due = started + self.tracker_resync_every_s
            self._deferred_due = 0.0  # the split follows from here (its last one is kept)
            if server_s is not None and exact_s is not None:
                server_s += exact_s
        return server_s

    def _split_due(self, now: float) -> Split | None:
        """Whether the ready/deferred split is due with the next log delta: for all entrypoints
        paced by its own cost, for those with newly queued jobs within a second (those queued
        in the delta itself are found by the statement)."""
        if now >= self._deferred_due:
            return "everyone"
        if now >= self._deferred_last + DEFERRED_SOON_S:
            return "touched"
        return None

    async def read_deferred(self) -> float:
        """The ready/deferred split: for all entrypoints paced by its own cost, for those with
        newly queued jobs within a second. Returns the seconds it spent in the database.

        Following the log, it came with the delta (`follow_depth`): only paced here."""
        split_read, self._split_read = self._split_read, None
        if split_read is not None:
            started, everyone, split_any, spent = split_read
            if split_any:
                self._deferred_last = started
            if everyone:
                self._deferred_due = started + max(
                    DEFERRED_EVERY_S, spent / (self.pacer.budget * DEFERRED_SHARE)
                )
            return spent  # `follow_depth`'s reading has it
        if self.tracker.direct and self.tracker.split_by_direct:
            return 0.0  # every direct read splits them (not the exact count before the first)
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
                DEFERRED_EVERY_S, spent / (self.pacer.budget * DEFERRED_SHARE)
            )
        self.tracked = self.tracker.reading(self.tracked.server_s if self.tracked else None)
        self.depth = self.tracked.depth
        return spent

    def _start_resync(self, reading: asyncio.Future[list[dict[str, Any]]] | None = None) -> None:
        """The exact count aside; `reading`: its rows, already being read."""
        if self._resync_task is not None and not self._resync_task.done():
            if reading is not None:
                reading.cancel()
            return
        self._resync_task = asyncio.create_task(self._resync(reading), name="depth exact count")

    async def _resync(self, reading: asyncio.Future[list[dict[str, Any]]] | None = None) -> None:
        """The exact count of every depth, aside from the refreshes, paced by its cost."""
        started = self.clock.monotonic()
        try:
            if reading is not None:
                server_s = self.tracker.take_exact(await reading)
            else:
                server_s = await self.tracker.resync(self.backend)
        except asyncio.CancelledError:
            if reading is not None:
                await _discard(reading)
            raise
        except Exception as exc:
            # The log-followed numbers stay (marked as lower bounds until one succeeds).
            log.warning("exact depth count failed: %s", error_line(exc))
            self.tracker.resync_requested = False
            self._resync_due = self._resync_retry_at = self.clock.monotonic() + RESYNC_RETRY_S
            return
        ended = self.clock.monotonic()
        spent = min(ended - started, server_s) if server_s is not None else ended - started
        self.pacer.book(ended, spent)
        self._resync_due = started + max(
            self.tracker_resync_every_s, spent / (self.pacer.budget * RESYNC_SHARE)
        )
        self._deferred_due = 0.0
        if not self.tracker.direct and self.tracker.queued_total() < depth_module.FOLLOW_BELOW:
            self.tracker.enter_direct()  # from these exact numbers on
            self._picked_held_due = ended + PICKED_HELD_EVERY_S
        self._on_exact()

    # -- the log tiers -------------------------------------------------------------------------

    async def read_log_tiers(
        self,
        started: float,
        *,
        durations: bool = True,
        on_windows: Callable[[float], Awaitable[None]] | None = None,
    ) -> float:
        """Windows and durations read the log: each keeps to its own slice of the budget.

        Returns the seconds they spent in the database (the server's own count where it gave
        one), which is what the budget books. On a backend that reads in parallel (a pool) both
        due are sent at once (they took a round trip each, in turn); with `on_windows` the
        windows are handed over (with their seconds) as soon as they are in, not after the
        durations (a percentile over the log: seconds at 10M rows), and the seconds returned
        are the durations' alone.
        """
        total = 0.0
        durations_due = durations and started >= self._durations_due
        windows_due = started >= self._windows_due
        aside: asyncio.Future[float] | None = None
        if durations_due and windows_due and self.backend.PARALLEL_READS:
            aside = asyncio.ensure_future(self._read_durations(started))
        elif durations_due:
            total += await self._read_durations(started)
        try:
            if windows_due:
                spent = await self._read_windows()
                if aside is not None and on_windows is not None:
                    await on_windows(spent)
                else:
                    total += spent
        except BaseException:
            await _discard(aside)
            raise
        if aside is not None:
            total += await aside
        return total

    async def _read_durations(self, started: float) -> float:
        self._durations = await fetch_durations(self.backend, DURATIONS_WINDOW)
        spent = self.clock.monotonic() - started
        self._durations_due = started + max(
            DURATIONS_EVERY_S, spent / (self.pacer.budget * DURATIONS_SHARE)
        )
        return spent

    async def _read_windows(self) -> float:
        windows_started = self.clock.monotonic()
        reading = await fetch_windows(self.backend, counts=False)
        self._windows = reading.windows
        spent = self.clock.monotonic() - windows_started
        # Paced like the depth tier, on the database's own time when it told us: a stall of
        # the console's loop (startup, a repaint) must not push the next reading far out.
        if reading.server_s is not None:
            spent = min(spent, reading.server_s)
        self._windows_readings.append(spent)
        gap = windows_gap(self._windows_readings, self._interval_s(), self.pacer.budget)
        self._windows_due = windows_started + gap
        self._windows_note = await self._slow_windows_note(gap, spent)
        return spent

    async def _slow_windows_note(self, gap: float, spent: float) -> str | None:
        """Why the rates are read so far apart, when it is the statistics table's missing
        index on created (a catalog read, kept a minute: `index_cache`), else None."""
        if gap < SLOW_WINDOWS_S:
            return None
        table = self.backend.installation.settings.statistics_table
        try:
            state = await index_presence(self.backend, table, statistics_index_name(self.backend))
        except Exception as exc:  # the rates are read all the same; the note can wait
            log.debug("reading whether the statistics table is indexed failed: %s", exc)
            return self._windows_note
        if state.usable or (state.table_rows or 0) < STATISTICS_LARGE_ROWS:
            return None  # a busy last hour costs what it costs: the index would not help
        from pgq_console.core.why import span

        return (
            f"rates every {span(gap)}: a read takes {spent:.1f}s, statistics table not "
            "indexed on created (6, then s)"
        )

    # -- what the screen shows -----------------------------------------------------------------

    def depth_note(self) -> str | None:
        """What the screen must say while depths are not exact (None when they are)."""
        tracked = self.tracked
        if tracked is None:
            return None
        if tracked.exact and not tracked.capped:
            return None
        parts = []
        if not tracked.exact:
            picked = (
                f", picked of the first {FIRST_LOOK_PICKED_CAP:,} picked jobs"
                if tracked.picked_capped
                else ""
            )
            parts.append(
                f"counting exactly: queued ≥ {FIRST_LOOK_CAP:,} per entrypoint shown as "
                f"{FIRST_LOOK_CAP:,}+{picked}, held not counted yet"
            )
        elif tracked.capped:
            parts.append(f"deferred counted up to {DEFERRED_CAP:,}")
        return "; ".join(parts) + " (r: count exactly now)"

    def windows_note(self) -> str | None:
        """Why the rates are slow to follow, when the screen can say what to do about it (not
        once the index is built: `forget_index` left its state unknown, or it is known usable)."""
        state = known(self.backend, statistics_index_name(self.backend))
        return self._windows_note if state is not None and not state[1].usable else None

    def _with_counts(self, windows: dict[str, Windows]) -> dict[str, Windows]:
        """Picked and held jobs come from the depth tracker (no scan of the queue table)."""
        tracked = self.tracked
        if tracked is None:
            return windows
        out = dict(windows)
        for entrypoint in tracked.picked.keys() | tracked.held.keys():
            window = out.get(entrypoint)
            picked = tracked.picked.get(entrypoint, 0)
            held = tracked.held.get(entrypoint, 0)
            # Replaced only when the counts differ: a fresh object per row per refresh was a
            # fifth of a refresh's CPU at 200 entrypoints.
            if window is None or window.picked != picked or window.held != held:
                out[entrypoint] = replace(window or Windows(), picked=picked, held=held)
        return out


async def _discard(reading: asyncio.Future[Any] | None) -> None:
    """Cancel a read started aside and wait for it to end (its connection back in the pool)."""
    if reading is None:
        return
    reading.cancel()
    with contextlib.suppress(BaseException):
        await reading
