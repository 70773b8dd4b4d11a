"""One refresh loop for every screen that re-reads the database.

`RefreshLoop` decides when the next read is due and waits for it: every `interval_s` after a
good read; sooner on `request_refresh()` (an event, an action, the operator); later after a
failure, by a jittered backoff that doubles up to `MAX_RETRY_S`; and not at all while nobody
sees the screen (`visible()` false: the loop rests until it is woken, or looks again every
`HIDDEN_RECHECK_S`). It also keeps what the outage line says: since when the connection is
lost, when the shown data was read, when the next try is.

Time comes from the injected `Clock`; the waiting itself from `wait` (by default an
`asyncio.Event` wait with a timeout). A wait that runs out means the read is due even when the
clock did not move (a `FixedClock` in snapshots), so a frozen clock never stops the loop; a
test passes a `wait` that moves its clock instead of sleeping. The loop never reads the
database itself: `run(round_)` runs the caller's round whenever it is due (or the caller waits
with `wait_until_due()`), and the round reports how it went with `succeeded()`, or with
`read_failed(exc, backend)`: the driver's classification (a lost connection, or a failed read),
the backoff, and the words every screen shows (`outage` or `describe_refresh_error`).

Two additions serve a screen that pays for its reads out of a database budget and hears events
(the overview): `pace()` is the least time between reads its cost allows, which stretches the
interval; `notify()` is an event, read after a short debounce (a burst becomes one read) and no
sooner than `event_gap()` after the last read. Events do not cut a backoff short; an explicit
`request_refresh()` does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pgq_console.core.clock import Clock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.first_reading import FirstReading
from pgq_console.core.text import error_line, middle_cut

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

MAX_RETRY_S = 30.0
MIN_RETRY_S = 0.5
# While the screen is hidden the loop looks again this often (no reads: a wake-up is the
# usual way back, this is the safety net when a screen comes back without one).
HIDDEN_RECHECK_S = 1.0

# wait(event, seconds): True when `event` was set, False when `seconds` passed first.
Wait = Callable[[asyncio.Event, float], Awaitable[bool]]


def backoff_delay(failures: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt `failures + 1`: doubling from `base_s`, capped, with jitter."""
    ceiling = min(MAX_RETRY_S, max(MIN_RETRY_S, base_s) * 2.0 ** max(0, failures - 1))
    # "Equal jitter": never less than half the step, so a dead server is not hammered.
    return ceiling * (rng or random).uniform(0.5, 1.0)


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set (True) or `seconds` passed (False)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def describe_refresh_error(exc: BaseException, backend: Backend) -> str:
    """A failed read that is not a lost connection, in one line (see `RefreshLoop.read_failed`)."""
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


def describe_outage(
    exc: BaseException,
    label: str,
    lost_since: datetime,
    last_ok_at: datetime | None,
    next_try_at: datetime,
    attempt: int,
    *,
    listens: bool = True,
) -> str:
    """One line for the banner: what is lost, since when, and when the console tries again.
    The error keeps its end when cut (libpq puts the reason after the socket's path)."""
    frozen = f"numbers below are from {last_ok_at:%H:%M:%S}" if last_ok_at else "no numbers yet"
    missed = ", live events missed" if listens else ""
    return (
        f"lost the connection to {label} at {lost_since:%H:%M:%S} "
        f"({middle_cut(error_line(exc), 100)}): {frozen}{missed}; "
        f"retry {attempt} at {next_try_at:%H:%M:%S}"
    )


class RefreshLoop:
    """When a screen's next read is due, and the waiting until then (see the module)."""

    def __init__(
        self,
        clock: Clock,
        *,
        interval_s: float,
        visible: Callable[[], bool] = lambda: True,
        read_ahead: bool = False,
        wait: Wait = wait_for_event,
        rng: random.Random | None = None,
        pace: Callable[[], float] = lambda: 0.0,
        event_debounce_s: float = 0.0,
        event_gap: Callable[[], float] = lambda: 0.0,
        read_ahead_after: FirstReading | None = None,
    ) -> None:
        """`read_ahead`: the first read happens even while the screen is hidden (a screen
        built ahead of its first visit then appears with its rows); `read_ahead_after`: that
        hidden first read waits for the overview's first reading (shown, the screen reads at
        once). `pace`, `event_debounce_s` and `event_gap`: see the module."""
        self.clock = clock
        self.interval_s = interval_s
        self._visible = visible
        self._read_ahead = read_ahead
        self._rounds = 0
        self._wait = wait
        self._rng = rng
        self._wake = asyncio.Event()
        self._due = float("-inf")  # monotonic; the first read is due at once
        self._fresh_until = float("-inf")  # rows read ahead (`mark_fresh`) count until then
        self._requested = True  # the next round was asked for (not only the interval's)
        self._pace = pace
        self._event_debounce_s = event_debounce_s
        self._event_gap = event_gap
        self._ended = float("-inf")  # monotonic; when the last round reported its outcome
        self._event_due: float | None = None  # the first unanswered event, plus the debounce
        self._read_ahead_after = read_ahead_after
        if read_ahead_after is not None:
            read_ahead_after.when_arrived(self.wake)
        self.failures = 0
        self.retry_delay = 0.0
        self.asked = False  # the round `run` runs now was asked for (`wait_until_due`'s answer)
        self.last_ok_at: datetime | None = None
        self.lost_since: datetime | None = None
        self.next_try_at: datetime | None = None

    # -- controls (from the UI's event loop; none of them blocks) ---------------------------

    def request_refresh(self, *, unless_fresh: bool = False) -> None:
        """Read as soon as possible. `unless_fresh`: not before rows read ahead expire."""
        if not unless_fresh:
            self._fresh_until = float("-inf")
        self._due = self._fresh_until
        self._requested = True
        self._wake.set()

    def notify(self) -> None:
        """An event: read soon (see the module)."""
        # Only the first event of a burst moves the due time: waking the loop for each of
        # hundreds of NOTIFYs a second only to find the same due time costs the other tasks
        # (the console's own consumers) their turns on the event loop.
        if self._event_due is None:
            self._event_due = self.clock.monotonic() + self._event_debounce_s
            self._wake.set()

    def wake(self) -> None:
        """Look at the due time and the visibility again."""
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        if not self.failures and self._due != float("-inf"):
            self._due += seconds - self.interval_s
        self.interval_s = seconds
        self._wake.set()

    def mark_fresh(self, seconds: float) -> None:
        """Rows were just read outside the loop: the next read is not due for `seconds`."""
        self._fresh_until = self.clock.monotonic() + seconds
        self._due = max(self._due, self._fresh_until)

    # -- outcomes of a round ----------------------------------------------------------------

    def succeeded(self) -> None:
        """The round read what it needed: the next is due one interval from now."""
        self.failures = 0
        self.retry_delay = 0.0
        self.last_ok_at = self.clock.now()
        self.lost_since = None
        self.next_try_at = None
        self._ended = self.clock.monotonic()
        # A read asked for while this one was under way (`r`, a write just made) may not be in
        # what it read: it runs now, not one interval later.
        self._due = self._fresh_until if self._requested else self._ended + self.interval_s

    def failed(self, *, lost: bool) -> float:
        """The round failed (`lost`: the connection, not the query): back off; the delay."""
        self.failures += 1
        self.retry_delay = backoff_delay(self.failures, self.interval_s, self._rng)
        now = self.clock.now()
        self.lost_since = (self.lost_since or now) if lost else None
        self.next_try_at = now + timedelta(seconds=self.retry_delay)
        self._ended = self.clock.monotonic()
        self._due = self._ended + self.retry_delay
        return self.retry_delay

    def read_failed(self, exc: BaseException, backend: Backend) -> str:
        """A read failed: classified by the backend's driver (a lost connection is an outage,
        anything else a failed read), backed off (`failed`); the line to show for it."""
        lost = backend.errors.connection_lost(exc)
        self.failed(lost=lost)
        if not lost:
            return describe_refresh_error(exc, backend)
        return self.outage(exc, backend.label, listens=backend.capabilities.can_listen)

    @property
    def lost(self) -> bool:
        """The last round lost the connection (until a round succeeds)."""
        return self.lost_since is not None

    def outage(self, exc: BaseException, label: str, *, listens: bool = True) -> str:
        """The outage line after `failed(lost=True)`."""
        assert self.lost_since is not None and self.next_try_at is not None
        return describe_outage(
            exc,
            label,
            self.lost_since,
            self.last_ok_at,
            self.next_try_at,
            self.failures,
            listens=listens,
        )

    # -- waiting ----------------------------------------------------------------------------

    def due_in(self) -> float:
        """Seconds until the next read is due (0 or less: due now)."""
        return self._next_due() - self.clock.monotonic()

    def _next_due(self) -> float:
        if self.failures or self._requested:
            return self._due  # the backoff, or what was asked for
        # Computed when looked at: the pace follows the cost, which moves between rounds.
        due = max(self._due, self._ended + self._pace())
        if self._event_due is not None:
            due = min(due, max(self._event_due, self._ended + self._event_gap()))
        return due

    async def wait_until_due(self) -> bool:
        """Return when the next round is due and the screen is seen; whether it was asked for
        (`request_refresh`) rather than only due by the interval."""
        while True:
            self._wake.clear()
            if not self._seen():
                await self._wait(self._wake, HIDDEN_RECHECK_S)
                continue
            remaining = self.due_in()
            if remaining > 0:
                waited_from = self.clock.monotonic()
                if await self._wait(self._wake, remaining):
                    continue  # woken: the due time or the visibility may have changed
                # Run out: due, unless the clock moved and the due time moved further on
                # meanwhile (the pace grew). A clock that stands still never stops the loop.
                if self.clock.monotonic() != waited_from and self.due_in() > 0:
                    continue
            if not self._seen():
                continue
            self._rounds += 1
            self._event_due = None  # this round answers the events heard so far
            requested, self._requested = self._requested, False
            return requested

    def _seen(self) -> bool:
        if self._visible():
            return True
        after = self._read_ahead_after
        return self._read_ahead and self._rounds == 0 and not (after and after.pending)

    async def run(self, round_: Callable[[], Awaitable[None]]) -> None:
        """Run `round_` whenever it is due, forever; it reports through succeeded/failed."""
        while True:
            self.asked = await self.wait_until_due()
            await round_()
