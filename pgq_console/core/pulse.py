"""The overview's pulse: throughput history and a feed of recent events (no Textual here).

The throughput history is built from the overview snapshots the refresher already reads (its
in/out rates and the last minute's exceptions): drawing it costs no query. The feed collects
what changed that an on-call engineer wants to hear about: a failure fingerprint not seen
before, a worker that joined or died, a write announced by any console on the audit channel.
Worker and failure readings come from a slow poll of their own (`PULSE_POLL_S`), made only while
the feed is on screen (`PulseReader`). Its cost follows change, not the size of the tables: after
the first hour's failure groups, each poll groups only the log rows since the last one; the
workers read (every picked job, proportional to the work in flight) keeps to its own slice of the
database budget, so on an installation with 100,000 jobs held it reads less often and says so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.models import OverviewSnapshot
from pgq_console.core.paced import PacedRead
from pgq_console.core.stats import RATE_WINDOW_S
from pgq_console.core.workers import (
    WorkerMemory,
    WorkerRow,
    WorkersSnapshot,
    WorkerState,
    fetch_workers,
)

if TYPE_CHECKING:
    from pgq_console.core.jobs import FailureGroups

PULSE_POLL_S = 15.0
# The workers read's share of a core: one taking 0.5 s waits 100 s before the next.
WORKERS_BUDGET = 0.005
# ...but a dead worker is on the feed within 5 minutes whatever the read costs.
WORKERS_MAX_GAP_S = 300.0
# Each later failures read looks this far behind the previous one (clock skew, commits of
# transactions that began earlier: a log row's `created` is its transaction's start).
FAILURE_OVERLAP = timedelta(minutes=2)
HISTORY_SAMPLES = 240  # at one sample per refresh (2 s): the last 8 minutes
FEED_EVENTS = 50
WORKER_BURST = 5  # more workers than this changing alike in one reading: one event
# A failure fingerprint first seen this recently counts as new on the feed's first reading.
NEW_FAILURE_WINDOW = timedelta(minutes=15)
FAILURE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ThroughputSample:
    at: datetime
    rate_in: float  # jobs enqueued per second
    rate_out: float  # jobs finished per second
    errors: float  # exceptions per second (the last minute's count / 60)


@dataclass
class ThroughputHistory:
    """Per-refresh throughput samples, oldest first, at most `capacity`."""

    capacity: int = HISTORY_SAMPLES
    _samples: deque[ThroughputSample] = field(default_factory=deque)

    def add(self, snapshot: OverviewSnapshot) -> ThroughputSample:
        total = snapshot.totals
        sample = ThroughputSample(
            at=snapshot.taken_at,
            rate_in=total.rate_in,
            rate_out=total.rate_out,
            errors=total.exceptions_1m / 60,
        )
        if self._samples and self._samples[-1].at == sample.at:
            self._samples.pop()  # the same instant read twice (a fixed clock): keep the latest
        self._samples.append(sample)
        while len(self._samples) > self.capacity:
            self._samples.popleft()
        return sample

    @property
    def samples(self) -> tuple[ThroughputSample, ...]:
        return tuple(self._samples)

    @property
    def latest(self) -> ThroughputSample | None:
        return self._samples[-1] if self._samples else None

    def series(self) -> tuple[list[float], list[float], list[float]]:
        """(in, out, errors) per second, oldest first."""
        samples = self._samples
        return (
            [s.rate_in for s in samples],
            [s.rate_out for s in samples],
            [s.errors for s in samples],
        )

    def span(self) -> timedelta:
        if len(self._samples) < 2:
            return timedelta(0)
        return self._samples[-1].at - self._samples[0].at


@dataclass(frozen=True)
class ChartColumns:
    """A chart's columns, oldest first: per series (in, out, errors) one value per column
    (None: nothing to draw), and the columns nothing was measured in."""

    series: tuple[list[float | None], list[float | None], list[float | None]]
    unmeasured: frozenset[int]


def chart_columns(
    samples: Sequence[ThroughputSample],
    width: int,
    slot_s: float,
    window_s: float = RATE_WINDOW_S,
) -> ChartColumns:
    """`samples` in `width` columns of `slot_s` seconds, the newest sample in the last column.

    A column holds the latest sample taken in it. A column without one is still measured when
    a later sample's rate window (`window_s`: a rate is the log's count over it) reaches into
    it, and shows that sample. Any other column since the oldest sample had no reading at all
    (the overview was not on screen, paused, or disconnected): unmeasured, not zero. Columns
    older than the history stay empty.
    """
    series: tuple[list[float | None], list[float | None], list[float | None]] = (
        [None] * width,
        [None] * width,
        [None] * width,
    )
    if not samples or width <= 0:
        return ChartColumns(series, frozenset())
    newest = samples[-1].at
    aged = [((newest - sample.at).total_seconds(), sample) for sample in samples]

    def put(column: int, sample: ThroughputSample) -> None:
        for values, value in zip(
            series, (sample.rate_in, sample.rate_out, sample.errors), strict=True
        ):
            values[column] = value

    for age, sample in aged:  # oldest first: the latest in a column wins
        back = int(age // slot_s)
        if back < width:
            put(width - 1 - back, sample)
    unmeasured: set[int] = set()
    for back in range(min(width, int(aged[0][0] // slot_s) + 1)):
        column = width - 1 - back
        if series[0][column] is not None:
            continue
        start, end = back * slot_s, (back + 1) * slot_s  # the ages the column spans
        covering = [sample for age, sample in aged if age < end and age + window_s > start]
        if covering:
            put(column, covering[0])  # the oldest reading after it: the nearest in time
        else:
            unmeasured.add(column)
    return ChartColumns(series, frozenset(unmeasured))


class FeedKind(StrEnum):
    FAILURE = "failure"
    WORKER = "worker"
    ACTION = "action"


@dataclass(frozen=True)
class FeedEvent:
    at: datetime  # the console's clock when it was noticed
    kind: FeedKind
    text: str  # from the database or another console: untrusted, shown as plain text
    severity: str = "information"  # "information", "warning" or "error"


@dataclass(frozen=True)
class PulseReading:
    # None: not read this time (the workers read keeps to its budget; see `PulseReader`).
    workers: WorkersSnapshot | None
    failures: FailureGroups
    # Seconds between workers reads when their cost slowed them below every poll, else None.
    workers_every_s: float | None = None
    workers_took_s: float = 0.0


class PulseReader:
    """The feed's slow reading: workers holding jobs, and the failure groups since the last one.

    The first failures read groups the last hour (`FAILURE_WINDOW`), each later one the rows
    logged since the previous read (plus `FAILURE_OVERLAP`): a fingerprint new to the feed has
    all of its occurrences in that span, so its count is still its count in the hour. The
    workers read is made at every poll while that keeps within `WORKERS_BUDGET` (`PacedRead`).
    """

    def __init__(self, backend: Backend, clock: Clock, budget: float | None = None) -> None:
        self.backend = backend
        self.clock = clock
        self.workers_pace = PacedRead(
            clock,
            budget=WORKERS_BUDGET if budget is None else budget,
            every_s=PULSE_POLL_S,
            max_gap_s=WORKERS_MAX_GAP_S,
        )
        self._failures_since: datetime | None = None

    def failure_window(self, now: datetime) -> timedelta:
        since = self._failures_since
        if since is None:
            return FAILURE_WINDOW
        return max(FAILURE_OVERLAP, min(FAILURE_WINDOW, now - since + FAILURE_OVERLAP))

    async def read(self) -> PulseReading:
        now = self.clock.now()
        pace = self.workers_pace
        workers = await pace.read(fetch_workers(self.backend, now=now)) if pace.due else None
        # Imported on the first read (after the console's first paint: `core.jobs` is big).
        from pgq_console.core.jobs import fetch_failure_groups

        failures = await fetch_failure_groups(
            self.backend, now, window=self.failure_window(now), limit=50
        )
        self._failures_since = now
        return PulseReading(
            workers,
            failures,
            workers_every_s=pace.gap_s if pace.slowed else None,
            workers_took_s=pace.took_s,
        )


@dataclass
class EventFeed:
    """Recent events, newest first, at most `capacity`."""

    capacity: int = FEED_EVENTS
    _events: deque[FeedEvent] = field(default_factory=deque)
    _fingerprints: set[str] | None = None
    _worker_states: dict[str, WorkerState] | None = None
    _memory: WorkerMemory = field(default_factory=WorkerMemory)

    @property
    def events(self) -> tuple[FeedEvent, ...]:
        return tuple(self._events)

    def add(self, event: FeedEvent) -> None:
        self._events.appendleft(event)
        while len(self._events) > self.capacity:
            self._events.pop()

    def note_failures(self, failures: FailureGroups, now: datetime) -> None:
        """A fingerprint not seen before is an event; on the first reading, those first seen
        within `NEW_FAILURE_WINDOW` (oldest first, so the newest ends on top)."""
        first = self._fingerprints is None
        seen = self._fingerprints or set()
        fresh = [g for g in failures.groups if g.key not in seen]
        if first:
            fresh = [g for g in fresh if now - g.first_seen <= NEW_FAILURE_WINDOW]
        for group in sorted(fresh, key=lambda g: (g.first_seen, g.sample_job_id)):
            where = ", ".join(group.entrypoints[:3])
            self.add(
                FeedEvent(
                    now,
                    FeedKind.FAILURE,
                    f"new kind on {where}: {group.fingerprint.title() or '(no exception type)'} "
                    f"({group.count}× in 1h)",
                    "error",
                )
            )
        self._fingerprints = seen | {g.key for g in failures.groups}

    def workers_seen(self) -> tuple[WorkerRow, ...]:
        """The workers this feed remembers (for the incident bundle's `seen_workers`)."""
        return self._memory.known()

    def note_workers(self, snapshot: WorkersSnapshot, now: datetime) -> None:
        """Workers joining, dying, or coming back; on the first reading, the dead ones only.

        More than `WORKER_BURST` of one kind in a reading (a host lost, a deploy) are one event
        saying how many, so the feed keeps its other events."""
        merged = self._memory.merge(snapshot, now)
        states = {w.queue_manager_id: w.state(now, snapshot.stale_after) for w in merged.workers}
        previous = self._worker_states
        changes: dict[str, list[WorkerRow]] = {"dead": [], "joined": [], "beats again": []}
        for worker in merged.workers:
            state = states[worker.queue_manager_id]
            before = None if previous is None else previous.get(worker.queue_manager_id)
            if state is WorkerState.DEAD and before is not WorkerState.DEAD:
                changes["dead"].append(worker)
            elif previous is not None and before is None:
                changes["joined"].append(worker)
            elif before is WorkerState.DEAD and state is not WorkerState.DEAD:
                changes["beats again"].append(worker)
        for change, workers in changes.items():
            severity = "error" if change == "dead" else "information"
            detail = ": no heartbeat" if change == "dead" else ""
            if len(workers) > WORKER_BURST:
                names = sorted({e for w in workers for e in w.entrypoints})
                where = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
                # The read lists a limited number of workers: there may be more.
                more = "+" if change == "dead" and snapshot.truncated else ""
                text = f"{len(workers)}{more} workers {change}{detail} ({where})"
                self.add(FeedEvent(now, FeedKind.WORKER, text, severity))
                continue
            for worker in workers:
                where = ", ".join(worker.entrypoints[:3]) or "no entrypoint"
                text = f"worker {worker.queue_manager_id[:8]} {change}{detail} ({where})"
                self.add(FeedEvent(now, FeedKind.WORKER, text, severity))
        self._worker_states = states

    def note_action(self, text: str, now: datetime, *, verified: bool) -> None:
        self.add(FeedEvent(now, FeedKind.ACTION, text, "information" if verified else "warning"))
