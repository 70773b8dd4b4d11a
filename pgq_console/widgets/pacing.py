"""How often numbers that change all the time are repainted (at most once a second), and
how little of a widget is repainted when a few characters changed.

Over a thin SSH link every repaint costs bytes: under load the rates, ages and counts change
on every refresh (several a second), which no one reads that fast. A state change (a new row,
a new held failure, a count leaving zero) is not paced: it is painted at once.

Time is the injected clock's (`core.clock`), never the wall clock: a fixed clock in a snapshot
test gives the same screen every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.cells import cell_len
from textual.geometry import Region

# At most this often (in seconds of the injected clock) a continuously changing value repaints.
# Once a second (the budget is at most ~2/s): at 50 jobs/s the in-flight count flickers 0/1 on every
# refresh, and each repaint of it is a row, a tile and the totals line on the terminal.
REPAINT_GAP_S = 1.0


def paced(elapsed_s: float, gap_s: float = REPAINT_GAP_S) -> bool:
    """Whether a repaint `elapsed_s` after the last one waits. A clock that did not move (a
    fixed clock: snapshot tests) or went back paints at once, as without pacing."""
    return 0 < elapsed_s < gap_s


class RepaintPacer:
    """Whether a display showing continuously changing values may repaint now."""

    def __init__(self, gap_s: float = REPAINT_GAP_S) -> None:
        self.gap_s = gap_s
        self.painted_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        """Nothing painted yet, or the last paint is at least the gap old (`paced`)."""
        return self.painted_at is None or not paced((now - self.painted_at).total_seconds())

    def wait_s(self, now: datetime) -> float:
        """Seconds until a paint is due (0 when it is due)."""
        if self.due(now):
            return 0.0
        assert self.painted_at is not None
        return self.gap_s - (now - self.painted_at).total_seconds()

    def painted(self, now: datetime) -> None:
        self.painted_at = now


def changed_line_regions(before: Sequence[str], after: Sequence[str]) -> list[Region] | None:
    """The regions of a widget's content to repaint when its plain lines go from `before` to
    `after`: per changed line, from its start to the end of what changed (a terminal update
    is written from the widget's left edge to the region's right end, so a change at the
    start of a line, e.g. an age, costs a few cells, not the line). None: repaint everything
    (the number of lines changed)."""
    if len(before) != len(after):
        return None
    regions = []
    for y, (old, new) in enumerate(zip(before, after, strict=True)):
        if old == new:
            continue
        same_tail = 0
        # A tail that matches sits in the same cells only when the lines are as wide: "7.7s"
        # becoming "13.9s" moves its "s" one cell right, so it must be painted too.
        while (
            cell_len(old) == cell_len(new)
            and same_tail < min(len(old), len(new))
            and old[-1 - same_tail] == new[-1 - same_tail]
        ):
            same_tail += 1
        end = max(cell_len(old[: len(old) - same_tail]), cell_len(new[: len(new) - same_tail]))
        regions.append(Region(0, y, max(1, end), 1))
    return regions
