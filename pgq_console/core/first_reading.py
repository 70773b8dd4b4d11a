"""The overview's first reading goes first.

At startup the overview's first snapshot, the pulse (workers, failure groups) and the screens
built ahead of their first visit (Jobs, Failures) all want a connection at once. Over a remote
link each read is a few round trips, and a pool has few connections: the first numbers waited
behind reads nobody looks at yet (at 50 ms RTT, 1.46 s from the app's start to the overview's
first snapshot, most of it behind the pulse and the Jobs screen).

Every backend has one `FirstReading`. The overview's refresher says a first reading is coming
(`expect`) and that it came (`arrived`: its first snapshot was read, or its first round failed);
the pulse and the hidden screens' first reads wait for it (`wait`, `pending`). Never for long:
after `FIRST_READING_WAIT_S` nothing waits any more (a refresher that never runs must not keep
the other screens empty), and a screen that is shown does not wait at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

# The longest the others wait for the overview's first reading (a safety net: its first round
# ends, well or not, within its statement timeout).
FIRST_READING_WAIT_S = 5.0


class FirstReading:
    """Whether the overview's first reading is still to come (see the module)."""

    def __init__(self, *, limit_s: float = FIRST_READING_WAIT_S) -> None:
        self.limit_s = limit_s
        self._until: float | None = None  # monotonic: waiting ends then at the latest
        self._done = False
        self._event: asyncio.Event | None = None
        self._callbacks: list[Callable[[], None]] = []

    def expect(self) -> None:
        """The overview is about to read: the others wait for it from now on."""
        if not self._done:
            self._until = time.monotonic() + self.limit_s

    def arrived(self) -> None:
        """The overview's first reading is in (or its first round failed): the others go."""
        if self._done:
            return
        self._done = True
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    @property
    def pending(self) -> bool:
        """Whether reads other than the overview's should still wait."""
        return not self._done and self._until is not None and time.monotonic() < self._until

    def when_arrived(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the event loop, must not block) once the reading is in."""
        if self._done:
            callback()
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        """Until the overview's first reading is in, or the limit is reached."""
        if not self.pending:
            return
        assert self._until is not None
        if self._event is None:
            self._event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(0.0, self._until - time.monotonic()))
