"""Injected time sources, so screens and snapshots never read the wall clock directly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware wall-clock time."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring durations."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.perf_counter()


@dataclass(frozen=True)
class FixedClock:
    """A clock that never moves: snapshots render the same ages and costs every run."""

    at: datetime

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 0.0
