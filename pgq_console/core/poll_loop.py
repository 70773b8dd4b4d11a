"""`PollLoop`: the refresh loop of a screen that shows one query's result, without LISTEN.

It waits through the shared `RefreshLoop` (core/refresh_loop.py: wake-ups, visibility,
backoff, outage text), which also words a failed read the way every live screen does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.refresh_loop import RefreshLoop, Wait, wait_for_event

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
    # Seconds between reads when their cost stretched them past `interval_s` (the loop's
    # budget), else None.
    slowed_to_s: float | None = None
    # What the last read cost the server, as the budget counts it (`took_s` unless the result
    # says otherwise: see PollLoop's `cost`).
    cost_s: float = 0.0


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
        budget: float | None = None,
        cost: Callable[[T], float | None] = lambda _result: None,
    ) -> None:
        """`budget`: the share of a core the reads may take (a read of 0.5 s at 5 % waits 10 s
        for the next); None: every `interval_s` whatever they cost. A read asked for (`r`)
        is never held back. `cost`: what a result's read cost the server when it knows better
        than the time it took (a wait for a lock costs the server nothing), else None."""
        self.backend = backend
        self.clock = clock
        self._fetch = fetch
        self._on_result = on_result
        self._on_status = on_status
        self._cost = cost
        self.budget = budget
        self.status = PollStatus(interval_s=interval_s)
        self.timing = RefreshLoop(
            clock, interval_s=interval_s, visible=active, wait=wait, pace=self._paced_gap
        )

    def _paced_gap(self) -> float:
        """The least time between the end of a read and the next that keeps to the budget."""
        if self.budget is None:
            return 0.0
        return self.status.cost_s / self.budget

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
            message = self.timing.read_failed(exc, self.backend)
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
        took = ended - started
        cost = self._cost(result)
        cost = took if cost is None else min(cost, took)
        gap = cost / self.budget if self.budget is not None else 0.0
        self._publish(
            replace(
                self.status,
                ok_at=self.timing.last_ok_at,
                took_s=took,
                cost_s=cost,
                slowed_to_s=gap if gap > self.status.interval_s else None,
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
