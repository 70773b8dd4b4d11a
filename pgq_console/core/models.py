"""Immutable snapshots the workers post to the UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

SPARKLINE_MINUTES = 30


@dataclass(frozen=True)
class EntrypointRow:
    """One entrypoint's live numbers; counts over windows end at the database's now()."""

    entrypoint: str
    ready: int = 0
    deferred: int = 0
    picked: int = 0
    held: int = 0
    completed_1m: int = 0
    exceptions_1m: int = 0
    completed_1h: int = 0
    exceptions_1h: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0
    oldest_ready_since: datetime | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    # Terminal jobs per minute, oldest first, the last slot the current minute.
    sparkline: tuple[int, ...] = field(default_factory=lambda: (0,) * SPARKLINE_MINUTES)

    @property
    def queued(self) -> int:
        return self.ready + self.deferred


@dataclass(frozen=True)
class Durations:
    p50_s: float
    p95_s: float


@dataclass(frozen=True)
class OverviewSnapshot:
    """Everything the overview shows from one refresh."""

    taken_at: datetime
    rows: tuple[EntrypointRow, ...]
    refresh_s: float

    def row(self, entrypoint: str) -> EntrypointRow | None:
        return next((row for row in self.rows if row.entrypoint == entrypoint), None)

    @cached_property
    def totals(self) -> EntrypointRow:
        """Every row summed (computed once: the screen, its tiles and its history each ask)."""
        rows = self.rows
        return EntrypointRow(
            entrypoint="total",
            ready=sum(r.ready for r in rows),
            deferred=sum(r.deferred for r in rows),
            picked=sum(r.picked for r in rows),
            held=sum(r.held for r in rows),
            completed_1m=sum(r.completed_1m for r in rows),
            exceptions_1m=sum(r.exceptions_1m for r in rows),
            completed_1h=sum(r.completed_1h for r in rows),
            exceptions_1h=sum(r.exceptions_1h for r in rows),
            rate_in=sum(r.rate_in for r in rows),
            rate_out=sum(r.rate_out for r in rows),
            oldest_ready_since=min(
                (r.oldest_ready_since for r in rows if r.oldest_ready_since), default=None
            ),
            sparkline=tuple(
                sum(column) for column in zip(*(r.sparkline for r in rows), strict=True)
            )
            if rows
            else (0,) * SPARKLINE_MINUTES,
        )


@dataclass(frozen=True)
class RefreshStatus:
    """How the live model is doing: listener, pacing, cost, last error."""

    channel: str
    listening: bool = False
    paused: bool = False
    interval_s: float = 2.0
    effective_interval_s: float = 2.0
    last_event_at: datetime | None = None
    last_event_latency_s: float | None = None
    events_seen: int = 0
    db_cost: float = 0.0  # fraction of wall-clock time the console spent in the database
    refreshes: int = 0
    error: str | None = None
    # While the database is unreachable: when it was lost, and when the next attempt runs.
    lost_since: datetime | None = None
    next_try_at: datetime | None = None
    failures: int = 0
    reconnects: int = 0
    # Why the console polls instead of listening (e.g. "PgBouncer transaction pooling").
    polling_reason: str | None = None
    # Listening, but jobs were inserted and no NOTIFY came: what is wrong with the live path.
    live_problem: str | None = None
    # The read replica's state (lag, or why reads are on the primary); None without one.
    replica: str | None = None
    replica_in_use: bool = False
    # While the depths are not exact yet (a large queue before its first exact count): what
    # the numbers are (lower bounds) and how to get exact ones. None once they are exact.
    depth_note: str | None = None
    # While the rates are read minutes apart because the statistics table has no index on
    # created: how far apart, and the key that creates it. None otherwise.
    windows_note: str | None = None
