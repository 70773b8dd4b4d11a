"""Full garbage collections moved off the key path, into the moments the console is quiet.

CPython runs a full (generation 2) collection once enough objects have outlived the younger
generations, inside whichever allocation tips it over. In the console that is often a key
press: a job detail or a mode switch builds and drops widgets, whose parent/child references
make cyclic garbage only a full collection frees. At 10M rows the console's full collections
took 35-160 ms each, every 10-15 detail opens, and were every slow outlier of the jobs page
and the job detail (`bench/README.md`, "GC off the key path").

While the console runs, the pacer turns CPython's automatic full collection off (its third
threshold) and runs it itself, from a timer, when as many younger collections have passed as
CPython would have waited for and nothing was asked of the console for `QUIET_S`. Under a
steady stream of keys it collects anyway after `FORCE_AFTER` younger collections, so garbage
never waits much longer than CPython lets it. The younger generations are untouched.

Process-wide GC settings are shared with an embedding program: the first pacer started saves
them, the last one stopped puts them back. CPython 3.14+ collects the old generation
incrementally, so there the pacer changes nothing.
"""

from __future__ import annotations

import gc
import platform
import sys
from collections.abc import Callable

# A full collection waits for this many quiet seconds after the last key or screen change.
QUIET_S = 0.25
# How often the timer looks (the console's timer calls `tick`).
TICK_S = 0.1
# CPython's own third threshold: generation-1 collections between full ones.
DUE_AFTER = 10
# Under a steady stream of keys, a full collection runs after this many all the same.
FORCE_AFTER = 100
# The third threshold while paced: never reached, so CPython never starts a full collection.
_NEVER = 1 << 30

_active = 0  # pacers started and not stopped (one per running console)
_saved: tuple[int, ...] | None = None  # the thresholds before the first of them


def supported() -> bool:
    """CPython with the stop-the-world old generation (3.11-3.13)."""
    return platform.python_implementation() == "CPython" and sys.version_info < (3, 14)


class GcPacer:
    """`start` once the console's startup work is done, `note_activity` on every key or
    screen change, `tick` every `TICK_S` from a timer, `stop` as the console unmounts."""

    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        counts: Callable[[], tuple[int, int, int]] = gc.get_count,
        collect: Callable[[], object] = gc.collect,
    ) -> None:
        self._monotonic = monotonic
        self._counts = counts
        self._collect = collect
        self._last_activity = monotonic()
        self.running = False
        self.collections = 0  # full collections this pacer ran
        self.forced = 0  # of those, run while activity kept coming

    def start(self) -> None:
        global _active, _saved
        if self.running or not supported():
            return
        if _active == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(_saved[0], _saved[1], _NEVER)
        _active += 1
        self.running = True

    def stop(self) -> None:
        global _active, _saved
        if not self.running:
            return
        self.running = False
        _active -= 1
        if _active == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None

    def note_activity(self) -> None:
        self._last_activity = self._monotonic()

    def tick(self) -> bool:
        """Run a full collection if one is due and the console is quiet (or it is overdue).
        True when it ran."""
        if not self.running:
            return False
        younger = self._counts()[2]  # generation-1 collections since the last full one
        if younger < DUE_AFTER:
            return False
        quiet = self._monotonic() - self._last_activity >= QUIET_S
        if not quiet and younger < FORCE_AFTER:
            return False
        self._collect()
        self.collections += 1
        self.forced += not quiet
        return True
