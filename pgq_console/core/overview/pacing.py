"""The overview's database budget: how its tiers share it, and how far apart reads must be.

Every read is timed and booked; the pacing stretches so the console's own database time stays
under its budget. Each tier keeps to its slice (`*_SHARE`): the depth answers events, the
windows and durations read the log, the exact re-count and the ready/deferred split keep the
log-followed depths honest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

EVENT_DEBOUNCE_S = 0.05  # merge a burst of NOTIFYs into one refresh
MIN_EVENT_GAP_S = 0.2  # at most 5 event refreshes a second: a repaint each, over SSH too
COST_WINDOW_S = 60.0
MIN_COST_WINDOW_S = 2.0
# Slices of the budget (see the module).
DEPTH_SHARE = 0.5
WINDOWS_SHARE = 0.2
DURATIONS_SHARE = 0.15
RESYNC_SHARE = 0.1
DEFERRED_SHARE = 0.05
DEPTH_SAMPLES = 10  # the depth query's recent timings that pace the event tier
# The longest the depth tier stretches: a new job is on screen within about a second, whatever
# the cost. Following the log costs a fixed part plus a part per second of log covered;
# stretching saves only the fixed part, while a longer gap makes the next read dearer. Paced on
# cost alone it ran away on a starved machine (gaps of 30 s and more), and at 2,500 jobs/s,
# where following the log alone is ~3.5 % of a core whatever the cadence, it held refreshes
# back 5 s (commit -> row p95 4.7 s; 0.65 s with this cap, bench/README.md).
MAX_DEPTH_GAP_S = 1.0
# The windows (rates, done and errors per minute) read the log; their first readings plan the
# statement cold, and paced on the first alone the second came 8-10 s later: the demo showed
# "in 0/s out 0/s" that long after its traffic had started. Until `WINDOWS_WARM_READINGS`
# readings say what one costs, the next is at most this far off.
WINDOWS_WARM_READINGS = 3
WINDOWS_COLD_GAP_S = 2.0
# While the console's own consumers work, the events are mostly theirs (each batch they record
# notifies) and every refresh they set off (reads in the pool's backends, the table, tiles and
# header repainted) runs on the same two cores and the same event loop as they do: at most
# one such refresh a second (the timer refresh stays; the Consumers screen shows their
# progress). Measured: ~30 refreshes in a 14 s drain took a third of the console's CPU and 10-15
# % of the database's beside a no-op consumer (bench/README.md, consumer_bench 12-02).
BUSY_EVENT_GAP_S = 1.0


class Pacer:
    """How far apart refreshes must be for the console's database time to stay in budget.

    The event tier's spacing follows the depth query's recent cost, not its last one: on a busy
    box one reading in twenty takes 50x the others (a cold backend, a scheduler wait), and
    pacing on it alone held the next refresh back for seconds. A reading is the statement's
    time in the server, which on a machine whose cores are busy includes waiting for one: at
    2,500 jobs/s on two cores the direct count executes in ~0.2-0.6 ms but reads 3-6 ms at the
    median and 15-25 ms at p95, and pacing on their mean stretched refreshes to 0.5-1 s (commit
    -> row p95 ~450 ms, bench/README.md). The cheapest recent reading is the one nearest the
    work the query does: outliers, or most readings waiting for a core, move nothing, while a
    query that is slow is slow in every reading and stretches the gap within a few refreshes.
    """

    def __init__(self, budget: float, started: float) -> None:
        self.budget = budget
        self._started = started
        self._costs: deque[tuple[float, float]] = deque()  # (ended at, seconds in database)
        self._depth: deque[float] = deque(maxlen=DEPTH_SAMPLES)
        # Whether the console's own consumers are working now (set by the console).
        self.consumers_busy: Callable[[], bool] = lambda: False

    def book(self, ended: float, spent: float) -> None:
        """`spent`: seconds in the database for what ended at `ended` (any tier)."""
        self._costs.append((ended, spent))
        while self._costs and self._costs[0][0] < ended - COST_WINDOW_S:
            self._costs.popleft()

    def depth_took(self, seconds: float) -> None:
        self._depth.append(seconds)

    def depth_gap(self) -> float:
        """The least time between depth reads that keeps them within their budget slice, up to
        `MAX_DEPTH_GAP_S`."""
        if not self._depth:
            return 0.0
        if len(self._depth) < 3:
            # The first reads of a new connection plan the statement cold (100x a warm one):
            # there is no pace until three readings say what a read costs.
            return 0.0
        return min(MAX_DEPTH_GAP_S, min(self._depth) / (self.budget * DEPTH_SHARE))

    def cost(self, now: float) -> float:
        """Database seconds per second over the last minute (or since the start)."""
        window = min(COST_WINDOW_S, max(now - self._started, 1.0))
        return sum(spent for _, spent in self._costs) / window

    def over_budget(self, now: float) -> bool:
        window = min(COST_WINDOW_S, max(now - self._started, MIN_COST_WINDOW_S))
        return sum(spent for _, spent in self._costs) / window > self.budget

    def event_gap(self, now: float) -> float:
        """The least time from the last read to one an event asks for: within budget an event
        reads at once (after `MIN_EVENT_GAP_S`); over it, the depth tier's gap holds; while
        the console's own consumers work, `BUSY_EVENT_GAP_S`."""
        gap = self.depth_gap() if self.over_budget(now) else 0.0
        if self.consumers_busy():
            gap = max(gap, BUSY_EVENT_GAP_S)
        return max(MIN_EVENT_GAP_S, gap)


def windows_gap(readings: Sequence[float], interval_s: float, budget: float) -> float:
    """Seconds from the start of a windows reading to the next: the refresh interval, or longer
    as the cheapest of the recent `readings` (seconds in the database) asks of the windows'
    slice of `budget`; at most `WINDOWS_COLD_GAP_S` longer than the interval while fewer than
    `WINDOWS_WARM_READINGS` readings were made."""
    if not readings:
        return interval_s
    gap = max(interval_s, min(readings) / (budget * WINDOWS_SHARE))
    if len(readings) < WINDOWS_WARM_READINGS:
        gap = min(gap, interval_s + WINDOWS_COLD_GAP_S)
    return gap
