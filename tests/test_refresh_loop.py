"""The refresh loop every screen uses, on a clock the test moves: no test here waits."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgq_console.core.backend.base import Capabilities
from pgq_console.core.clock import FixedClock
from pgq_console.core.refresh_loop import (
    HIDDEN_RECHECK_S,
    MAX_RETRY_S,
    RefreshLoop,
    backoff_delay,
    wait_for_event,
)
from tests.helpers import ManualClock

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_loop(clock: ManualClock, **kwargs: object) -> RefreshLoop:
    return RefreshLoop(
        clock,
        interval_s=2.0,
        wait=clock.wait,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_first_read_is_due_at_once_and_the_next_one_interval_later() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    assert await loop.wait_until_due() is True  # the first read counts as asked for
    assert clock.waits == []
    loop.succeeded()
    assert loop.last_ok_at == START
    assert await loop.wait_until_due() is False  # due by the interval alone
    assert clock.waits == [2.0]
    assert clock.seconds == 102.0


async def test_a_request_cuts_the_wait_short() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    loop.succeeded()
    loop.request_refresh()
    assert await loop.wait_until_due() is True
    assert clock.waits == []  # no time passed


async def test_failures_back_off_with_jitter_up_to_the_cap_and_a_success_resets() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    delays = []
    for _ in range(8):
        delays.append(loop.failed(lost=False))
        await loop.wait_until_due()
    assert clock.waits == pytest.approx(delays)
    for attempt, delay in enumerate(delays, start=1):
        step = min(MAX_RETRY_S, 2.0 * 2 ** (attempt - 1))
        assert step / 2 <= delay <= step  # equal jitter: never less than half the step
    assert delays[-1] <= MAX_RETRY_S
    assert loop.failures == 8
    loop.succeeded()
    assert loop.failures == 0 and loop.retry_delay == 0.0
    await loop.wait_until_due()
    assert clock.waits[-1] == pytest.approx(2.0)


async def test_the_outage_line_says_since_when_from_when_and_the_next_try() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    loop.succeeded()  # data read at 12:00:00
    clock.seconds += 65
    loop.failed(lost=True)
    first = loop.lost_since
    clock.seconds += 10
    delay = loop.failed(lost=True)
    assert loop.lost_since == first == START + timedelta(seconds=65)  # the first loss stays
    text = loop.outage(ConnectionError("server closed\nthe connection"), "db1")
    next_try = START + timedelta(seconds=75 + delay)
    assert text == (
        "lost the connection to db1 at 12:01:05 (server closed the connection): numbers below "
        f"are from 12:00:00, live events missed; retry 2 at {next_try:%H:%M:%S}"
    )
    loop.failed(lost=False)  # the server answers again, with an error: not an outage
    assert loop.lost_since is None


async def test_a_long_outage_error_keeps_its_reason_and_a_loop_without_events_says_none() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    loop.failed(lost=True)
    socket = "/tmp/pgq-demo-abcdefgh/pgdata/a-long-directory-name/.s.PGSQL.5432"
    error = OSError(f'connection to server on socket "{socket}" failed: No such file or directory')
    text = loop.outage(error, "db1", listens=False)
    assert "…" in text and "failed: No such file or directory)" in text  # libpq's reason
    assert "connection to server on socket" in text
    assert "live events" not in text
    assert "live events missed" in loop.outage(error, "db1")


async def test_a_hidden_screen_does_not_read_until_it_is_seen_again() -> None:
    clock = ManualClock()
    seen = False
    loop = make_loop(clock, visible=lambda: seen)
    task = asyncio.create_task(loop.wait_until_due())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert set(clock.waits) == {HIDDEN_RECHECK_S}  # only looking, never due
    seen = True
    loop.wake()
    assert await task is True


async def test_a_screen_built_ahead_reads_once_while_hidden() -> None:
    clock = ManualClock()
    loop = make_loop(clock, visible=lambda: False, read_ahead=True)
    assert await loop.wait_until_due() is True  # the first read, hidden
    loop.succeeded()
    task = asyncio.create_task(loop.wait_until_due())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # then nothing until it is seen
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rows_read_ahead_postpone_a_visit_refresh_but_not_an_explicit_one() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    loop.succeeded()
    loop.mark_fresh(1.0)  # the screen read its rows just before it was shown
    loop.request_refresh(unless_fresh=True)  # the visit
    await loop.wait_until_due()
    assert clock.waits == [1.0]
    loop.succeeded()
    loop.mark_fresh(1.0)
    loop.request_refresh()  # an action: read now
    await loop.wait_until_due()
    assert clock.waits == [1.0]


async def test_a_new_interval_moves_the_due_time() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    loop.succeeded()
    loop.set_interval(5.0)
    await loop.wait_until_due()
    assert clock.waits == [5.0]


async def test_a_clock_that_never_moves_still_reads_every_interval() -> None:
    """Snapshots run on a FixedClock: the wait running out is what makes the read due."""
    waits: list[float] = []

    async def wait(event: asyncio.Event, seconds: float) -> bool:
        waits.append(seconds)
        return False

    loop = RefreshLoop(FixedClock(START), interval_s=2.0, wait=wait)
    rounds = 0

    async def round_() -> None:
        nonlocal rounds
        rounds += 1
        loop.succeeded()
        if rounds == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await loop.run(round_)
    assert rounds == 3 and waits == [2.0, 2.0]


async def test_the_default_wait_tells_a_wake_up_from_a_timeout() -> None:
    event = asyncio.Event()
    event.set()
    assert await wait_for_event(event, 60) is True
    assert await wait_for_event(asyncio.Event(), 0) is False


def test_backoff_never_drops_below_half_a_step_nor_passes_the_cap() -> None:
    rng = random.Random(1)
    for failures in range(1, 20):
        delay = backoff_delay(failures, 1.0, rng)
        ceiling = min(MAX_RETRY_S, 2.0 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling


async def test_the_pace_stretches_the_interval_and_is_read_when_the_wait_starts() -> None:
    """A screen paying out of a database budget: the least gap its cost allows wins over a
    shorter interval, and follows the cost as it moves between rounds."""
    clock = ManualClock()
    pace = 5.0
    loop = make_loop(clock, pace=lambda: pace)
    await loop.wait_until_due()
    loop.succeeded()
    await loop.wait_until_due()
    pace = 1.0  # the reads got cheaper: the interval is the longer again
    loop.succeeded()
    await loop.wait_until_due()
    assert clock.waits == [5.0, 2.0]


async def test_a_pace_that_grows_during_a_wait_holds_the_read_back() -> None:
    """A wait that runs out on a moving clock is checked against the due time again: the cost
    booked meanwhile (an exact count aside) moved it on."""
    clock = ManualClock()
    pace = 0.0
    loop = make_loop(clock, pace=lambda: pace)
    await loop.wait_until_due()
    loop.succeeded()
    task = asyncio.create_task(loop.wait_until_due())
    await asyncio.sleep(0)  # the loop waits its 2 s
    pace = 5.0  # booked without a wake-up
    await task
    assert clock.waits == [2.0, 3.0]


async def test_a_burst_of_events_is_one_read_after_the_debounce_and_the_least_gap() -> None:
    clock = ManualClock()
    loop = make_loop(clock, event_debounce_s=0.05, event_gap=lambda: 0.2)
    await loop.wait_until_due()
    loop.succeeded()
    for _ in range(100):
        loop.notify()
    assert await loop.wait_until_due() is False  # an event is not an explicit request
    assert clock.waits == pytest.approx([0.2])  # the least gap after the read, not 2 s
    loop.succeeded()
    clock.seconds += 1.0  # long after that read: the debounce alone holds the event
    loop.notify()
    clock.seconds += 0.01
    loop.notify()  # the same burst: the due time stays where the first event put it
    await loop.wait_until_due()
    assert clock.waits == pytest.approx([0.2, 0.04])
    loop.succeeded()
    await loop.wait_until_due()  # answered: the next read is the interval's
    assert clock.waits[-1] == pytest.approx(2.0)


async def test_events_do_not_cut_a_backoff_short_but_a_request_does() -> None:
    clock = ManualClock()
    loop = make_loop(clock, event_debounce_s=0.05)
    await loop.wait_until_due()
    delay = loop.failed(lost=True)
    loop.notify()
    await loop.wait_until_due()
    assert clock.waits == pytest.approx([delay])
    loop.failed(lost=True)
    loop.request_refresh()  # the operator asked
    await loop.wait_until_due()
    assert clock.waits == pytest.approx([delay])


@dataclass
class FakeErrors:
    """A driver's classification: ConnectionError is a lost connection."""

    def connection_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def statement_cancelled(self, exc: BaseException) -> bool:
        return False

    def permission_denied(self, exc: BaseException) -> bool:
        return isinstance(exc, PermissionError)

    def connection_failed(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


@dataclass
class FakeBackend:
    label: str = "db1"
    errors: FakeErrors = field(default_factory=FakeErrors)
    statement_timeout: timedelta = timedelta(seconds=5)
    capabilities: Capabilities = field(default_factory=Capabilities)


async def test_a_failed_read_is_classified_backed_off_and_worded_as_every_screen_words_it() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    backend: Any = FakeBackend()
    await loop.wait_until_due()
    loop.succeeded()  # data read at 12:00:00
    clock.seconds += 5
    text = loop.read_failed(ConnectionResetError("server closed\nthe connection"), backend)
    assert loop.lost and loop.failures == 1 and loop.retry_delay > 0
    assert text == loop.outage(ConnectionResetError("server closed the connection"), "db1")
    assert text.startswith("lost the connection to db1 at 12:00:05 (server closed the connection)")
    assert f"retry 1 at {loop.next_try_at:%H:%M:%S}" in text
    # The server answers again, with an error: no outage, still backing off.
    text = loop.read_failed(PermissionError("no\x1b[2J access"), backend)
    assert not loop.lost and loop.failures == 2
    assert text == "permission denied reading the queue tables: no\x1b[2J access"
    assert loop.read_failed(ValueError(), backend) == "refresh failed: ValueError: ValueError"
    loop.succeeded()
    assert not loop.lost and loop.failures == 0


async def test_run_says_whether_the_round_was_asked_for() -> None:
    clock = ManualClock()
    loop = make_loop(clock)
    asked: list[bool] = []

    async def round_() -> None:
        asked.append(loop.asked)
        loop.succeeded()
        if len(asked) == 2:
            loop.request_refresh()
        if len(asked) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await loop.run(round_)
    assert asked == [True, False, True]  # the first read, the interval's, the one asked for


async def test_a_poll_loop_with_a_budget_waits_out_a_costly_read_and_says_so() -> None:
    """A read of 0.5 s at a 5 % budget: the next one 10 s after it, not the 3 s interval; the
    status says how far apart they are; a read asked for is not held back."""
    from typing import cast

    from pgq_console.core.backend import Backend
    from pgq_console.core.poll_loop import PollLoop, PollStatus

    clock = ManualClock()
    statuses: list[PollStatus] = []

    async def costly_read() -> int:
        clock.seconds += 0.5  # the read took half a second
        return 1

    def poll_loop(budget: float) -> PollLoop[int]:
        return PollLoop(
            cast(Backend, None),  # only a failed read consults the backend
            clock,
            costly_read,
            on_result=lambda _: None,
            on_status=statuses.append,
            interval_s=3.0,
            wait=clock.wait,
            budget=budget,
        )

    loop = poll_loop(0.05)
    await loop.timing.wait_until_due()
    await loop.poll_once()
    assert statuses[-1].slowed_to_s == pytest.approx(10.0)
    await loop.timing.wait_until_due()
    assert clock.waits == [pytest.approx(10.0)]
    await loop.poll_once()
    loop.request_refresh()
    await loop.timing.wait_until_due()
    assert len(clock.waits) == 1  # asked for: at once

    cheap = poll_loop(0.5)  # 0.5 s of reading per second: every 3 s is within it
    await cheap.timing.wait_until_due()
    await cheap.poll_once()
    assert statuses[-1].slowed_to_s is None
    await cheap.timing.wait_until_due()
    assert clock.waits[-1] == pytest.approx(3.0)


async def test_a_poll_loop_paces_by_what_the_result_says_the_read_cost() -> None:
    """A read that waited 5 s for a lock but cost the server 0.1 s keeps the 3 s interval at a
    5 % budget (not 100 s); the status keeps both figures; the cost is never above the time."""
    from typing import cast

    from pgq_console.core.backend import Backend
    from pgq_console.core.poll_loop import PollLoop, PollStatus

    clock = ManualClock()
    statuses: list[PollStatus] = []
    costs = [0.1, 9.0, None]

    async def waiting_read() -> float | None:
        clock.seconds += 5.0
        return costs.pop(0)

    loop: PollLoop[float | None] = PollLoop(
        cast(Backend, None),
        clock,
        waiting_read,
        on_result=lambda _: None,
        on_status=statuses.append,
        interval_s=3.0,
        wait=clock.wait,
        budget=0.05,
        cost=lambda said: said,
    )
    await loop.timing.wait_until_due()
    await loop.poll_once()
    assert (statuses[-1].took_s, statuses[-1].cost_s) == (5.0, 0.1)
    assert statuses[-1].slowed_to_s is None
    await loop.timing.wait_until_due()
    assert clock.waits == [pytest.approx(3.0)]
    await loop.poll_once()  # said more than it took: the time it took
    assert statuses[-1].cost_s == 5.0 and statuses[-1].slowed_to_s == pytest.approx(100.0)
    await loop.timing.wait_until_due()
    await loop.poll_once()  # said nothing: the time it took
    assert statuses[-1].cost_s == 5.0


async def test_a_paced_read_is_not_held_back_by_one_reading_that_waited() -> None:
    """Workers read at 0.5 % of a core: cheap readings keep the caller's cadence; one that
    waited 4 s for a lock does not push the next 300 s away; a read slow every time is paced
    (from its first reading: there is no cheaper one to go by)."""
    from pgq_console.core.paced import PacedRead

    clock = ManualClock()

    async def reading(seconds: float) -> float:
        clock.seconds += seconds
        return seconds

    pace = PacedRead(clock, budget=0.005, every_s=2.0, max_gap_s=300.0)
    for seconds in (0.004, 0.004, 4.0):
        await pace.read(reading(seconds))
    assert pace.took_s == 4.0
    assert not pace.slowed and pace.due
    slow = PacedRead(clock, budget=0.005, every_s=2.0, max_gap_s=300.0)
    await slow.read(reading(0.5))
    assert slow.slowed and slow.gap_s == pytest.approx(100.0) and not slow.due
    clock.seconds += 100.0
    assert slow.due


async def test_a_request_made_while_a_read_is_under_way_is_read_at_once_after_it() -> None:
    """`r` (or a write's own refresh) during a read: the rows read may predate it, so the next
    read is at once, not one interval later; a read nobody asked for during it waits."""
    clock = ManualClock()
    loop = make_loop(clock)
    await loop.wait_until_due()
    loop.request_refresh()  # pressed while the first read is under way
    loop.succeeded()
    assert await loop.wait_until_due() is True
    assert clock.waits == []  # no time passed
    loop.succeeded()
    assert await loop.wait_until_due() is False  # nothing asked for: the interval
    assert clock.waits == [2.0]
