"""`PacedRead`: a slow read that keeps to its share of a core.

A read whose cost grows with the data (every picked job, a quarter hour of log rows) is made at
its caller's own cadence while that stays within `budget` (seconds of reading per second);
slower than that, it waits `took / budget` after the last one and the caller shows the last
result, saying so (`slowed`, `gap_s`, `took_s`).

`took` is the least of the last `RECENT_READINGS` readings: one reading that waited (for a
lock on a queue table, for a core on a busy box) costs the server nothing and must not hold
the next read back for minutes, while a read that is slow is slow in every reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

from pgq_console.core.clock import Clock

T = TypeVar("T")

RECENT_READINGS = 3


class PacedRead:
    def __init__(
        self, clock: Clock, *, budget: float, every_s: float, max_gap_s: float | None = None
    ) -> None:
        self.clock = clock
        self.budget = budget
        # The longest wait whatever the cost: one slow reading (a cold cache at startup) must
        # not leave the caller's data that old for long.
        self.max_gap_s = max_gap_s
        self.every_s = every_s  # the caller's cadence: within it, no waiting
        self.gap_s = 0.0
        self.took_s = 0.0  # the last reading
        self._readings: deque[float] = deque(maxlen=RECENT_READINGS)
        self._due = float("-inf")  # monotonic

    @property
    def due(self) -> bool:
        return self.clock.monotonic() >= self._due

    @property
    def slowed(self) -> bool:
        """The last read took too long for the caller's cadence: reads are `gap_s` apart."""
        return self.gap_s > self.every_s

    async def read(self, read: Awaitable[T]) -> T:
        """Await `read`, timed; the next is due `took / budget` later when that is over the
        caller's cadence (else at once); `took`: see the module."""
        started = self.clock.monotonic()
        result = await read
        ended = self.clock.monotonic()
        self.took_s = ended - started
        self._readings.append(self.took_s)
        gap = min(self._readings) / self.budget
        self.gap_s = gap if self.max_gap_s is None else min(gap, self.max_gap_s)
        self._due = ended + self.gap_s if self.slowed else float("-inf")
        return result
