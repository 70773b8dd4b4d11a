"""The console's own read-only overview queries (pgqueuer's insight calls write: they aggregate).

Two tiers, so a NOTIFY can be answered cheaply:
- depth: queued jobs per entrypoint, and the oldest ready one. Runs on every event and timer
  tick; it is what makes a new job appear.
- windows: picked jobs and held failures (UPDATEs, which never notify), completed/failed over
  the last minute and hour, rates and the trend.
  Counts add the already-aggregated `pgqueuer_statistics` buckets to the log rows not
  aggregated yet; both are read in one statement, so a row aggregated concurrently is counted
  exactly once. Under load this reads tens of thousands of log rows, so it runs on its own
  slower, budgeted cadence.
Ages are returned as timestamps, so the UI computes them with its own clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pgq_console.core.backend import Backend
from pgq_console.core.models import SPARKLINE_MINUTES, Durations, EntrypointRow
from pgq_console.core.target import Installation

RATE_WINDOW_S = 10
# The server's own time on the statement so far: the database cost, without the client's
# waits for a busy CPU (which inflate a client-side timing several times over under load).
SERVER_TIME = "extract(epoch FROM clock_timestamp() - statement_timestamp())::float8"
TERMINAL = "'successful', 'exception', 'failed', 'canceled', 'deleted'"
FAILURES = "'exception', 'failed'"


@dataclass(frozen=True)
class Depth:
    """The event tier: what INSERTs and DELETEs change, read after every NOTIFY."""

    ready: int = 0
    deferred: int = 0
    oldest_ready_since: datetime | None = None


@dataclass(frozen=True)
class Windows:
    """The timer tier: what UPDATEs change (no NOTIFY) and what the log says."""

    picked: int = 0
    held: int = 0
    completed_1m: int = 0
    exceptions_1m: int = 0
    completed_1h: int = 0
    exceptions_1h: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0
    sparkline: tuple[int, ...] = field(default_factory=lambda: (0,) * SPARKLINE_MINUTES)


def queued_entrypoints_cte(queue_table: str) -> str:
    """`eps AS (...)` for a `WITH RECURSIVE`: the entrypoints with queued jobs, found by a skip
    scan of the queued index (one index probe per entrypoint, not a scan of every row)."""
    q = queue_table
    return f"""eps AS (
    (SELECT entrypoint FROM {q} WHERE status = 'queued' ORDER BY entrypoint LIMIT 1)
    UNION ALL
    SELECT (SELECT q.entrypoint FROM {q} q WHERE q.status = 'queued'
            AND q.entrypoint > eps.entrypoint ORDER BY q.entrypoint LIMIT 1)
    FROM eps WHERE eps.entrypoint IS NOT NULL
)"""


def depth_sql(installation: Installation) -> str:
    """Queued jobs per entrypoint, on PgQueuer's partial index for queued rows.

    A busy queue table is mostly dead tuples (every job is inserted, updated and deleted), so a
    sequential scan reads megabytes for a few live rows; the partial index stays small. Picked
    rows are not counted here: their partial index fills with dead entries between vacuums
    (75,000 for 50 live rows at 2,500 jobs/s), which made the picked count 95 % of this
    statement's time, and picks are UPDATEs, which never notify anyway.
    """
    queue = installation.settings.qualified.queue_table
    return f"""
SELECT entrypoint,
    count(*) FILTER (WHERE execute_after <= now()) AS ready,
    count(*) FILTER (WHERE execute_after > now()) AS deferred,
    -- Waiting since it became eligible: execute_after is the enqueue time unless deferred.
    min(execute_after) FILTER (WHERE execute_after <= now()) AS oldest_ready,
    {SERVER_TIME} AS server_s
FROM {queue}
WHERE status = 'queued'
GROUP BY entrypoint
"""


def picked_held_sql(installation: Installation) -> str:
    """Picked jobs and held failures: both set by UPDATEs, so read on the timer, in one scan
    (no index covers held failures)."""
    queue = installation.settings.qualified.queue_table
    return f"""
SELECT entrypoint,
    count(*) FILTER (WHERE status = 'picked') AS picked,
    count(*) FILTER (WHERE status = 'failed') AS held,
    {SERVER_TIME} AS server_s
FROM {queue}
WHERE status IN ('picked', 'failed')
GROUP BY entrypoint
"""


# `created`'s minute counted back from now() (minutes ending at now, not at :00): what
# date_bin('1 minute', created, now()) gives, without date_bin (PostgreSQL 14+; PgQueuer's
# sources name 12 or 13 as the oldest they run on). Minute boundaries are the same in every
# time zone of whole-minute offsets, so date_trunc's time zone does not move them.
def minute_from(origin: str) -> str:
    """`created`'s minute on the grid of minutes through `origin` (an SQL timestamptz
    expression): what date_bin('1 minute', created, origin) gives."""
    offset = f"({origin} - date_trunc('minute', {origin}))"
    return f"date_trunc('minute', created - {offset}) + {offset}"


MINUTE_FROM_NOW = minute_from("now()")


def windows_sql(installation: Installation) -> str:
    """The last hour's completions, failures and rates per entrypoint, and the sparkline.

    Each table's rows are grouped by entrypoint, status and minute (`MINUTE_FROM_NOW`) with
    their last-minute and rate-window sums first, then added up per entrypoint: computed per row
    (the status cast to text and compared in every aggregate, a numeric `extract` for the
    sparkline), the hour's ~107,000 statistics rows of the scale bench took 180-270 ms, grouped
    first 65-125 ms (the overview's windows tier paces by it). A sparkline minute is the one
    `floor((now - created) / 1 minute)` gives, but for an event exactly on a minute's boundary
    (to the microsecond), counted in the newer one.
    """
    names = installation.settings.qualified
    hour = "created > now() - interval '1 hour'"

    def grouped(table: str, n: str, where: str) -> str:
        return f"""SELECT entrypoint, status::text AS status, bin, n, n_1m, n_rate FROM (
        SELECT entrypoint, status, {MINUTE_FROM_NOW} AS bin, {n} AS n,
            {n} FILTER (WHERE created > now() - interval '1 minute') AS n_1m,
            {n} FILTER (WHERE created > now() - interval '{RATE_WINDOW_S} seconds') AS n_rate
        FROM {table} WHERE {where} GROUP BY 1, 2, 3) g"""

    return f"""
WITH events AS (
    {grouped(names.statistics_table, "sum(count)", hour)}
    UNION ALL
    {grouped(names.queue_table_log, "count(*)", "NOT aggregated AND " + hour)}
), minutes AS (
    SELECT entrypoint, status, round(extract(epoch FROM now() - bin) / 60)::int - 1 AS age,
        n, n_1m, n_rate
    FROM events
)
SELECT entrypoint,
    coalesce(sum(n_1m) FILTER (WHERE status = 'successful'), 0) AS completed_1m,
    coalesce(sum(n_1m) FILTER (WHERE status IN ({FAILURES})), 0) AS exceptions_1m,
    coalesce(sum(n) FILTER (WHERE status = 'successful'), 0) AS completed_1h,
    coalesce(sum(n) FILTER (WHERE status IN ({FAILURES})), 0) AS exceptions_1h,
    coalesce(sum(n_rate) FILTER (WHERE status = 'queued'), 0) AS in_window,
    coalesce(sum(n_rate) FILTER (WHERE status IN ({TERMINAL})), 0) AS out_window,
    (array_agg(n) FILTER (WHERE status IN ({TERMINAL})
        AND age < {SPARKLINE_MINUTES}))::text AS spark_n,
    (array_agg(age) FILTER (WHERE status IN ({TERMINAL})
        AND age < {SPARKLINE_MINUTES}))::text AS spark_age,
    {SERVER_TIME} AS server_s
FROM minutes
GROUP BY entrypoint
"""


def int_array(value: str | list[Any] | None) -> list[int]:
    """An integer array the query sent as text (`{1,2,3}`), or as a list.

    The overview's first reading sends its arrays as text: asyncpg knows int8[] and int4[]
    only after looking them up in the catalog, per connection (0.35 s over a 50 ms link), and
    the first numbers do not wait for that (core/backend/opening.py: the pool's connections
    no longer look them up as they open).
    """
    if value is None:
        return []
    if isinstance(value, str):
        inner = value.strip("{}")
        return [int(x) for x in inner.split(",")] if inner else []
    return [int(x) for x in value]


def _sparkline(counts: Any, ages: Any) -> tuple[int, ...]:
    slots = [0] * SPARKLINE_MINUTES
    for count, age in zip(int_array(counts), int_array(ages), strict=True):
        if 0 <= int(age) < SPARKLINE_MINUTES:
            slots[SPARKLINE_MINUTES - 1 - int(age)] += int(count)
    return tuple(slots)


@dataclass(frozen=True)
class DepthReading:
    depth: dict[str, Depth]
    server_s: float | None  # None when the queue is empty: nothing was measured


async def fetch_depth(backend: Backend) -> DepthReading:
    depth: dict[str, Depth] = {}
    server_s: float | None = None
    for r in await backend.read(depth_sql(backend.installation)):
        depth[str(r["entrypoint"])] = Depth(
            ready=int(r["ready"]),
            deferred=int(r["deferred"]),
            oldest_ready_since=r["oldest_ready"],
        )
        server_s = max(server_s or 0.0, float(r["server_s"]))
    return DepthReading(depth, server_s)


@dataclass(frozen=True)
class WindowsReading:
    windows: dict[str, Windows]
    # The server's own time for both statements, from those that returned rows (None: neither
    # did, nothing was measured).
    server_s: float | None


def _server_time(rows: list[dict[str, Any]]) -> float | None:
    return max((float(r["server_s"]) for r in rows), default=None)


async def fetch_windows(backend: Backend, *, counts: bool = True) -> WindowsReading:
    """The log windows, picked jobs and held failures: what no NOTIFY announces.

    `counts=False` leaves picked and held out (the live overview follows them from the log).
    """
    counted = await backend.read(picked_held_sql(backend.installation)) if counts else []
    windows = {
        str(r["entrypoint"]): Windows(picked=int(r["picked"]), held=int(r["held"])) for r in counted
    }
    window_rows = await backend.read(windows_sql(backend.installation))
    for r in window_rows:
        entrypoint = str(r["entrypoint"])
        windows[entrypoint] = replace(
            windows.get(entrypoint, Windows()),
            completed_1m=int(r["completed_1m"]),
            exceptions_1m=int(r["exceptions_1m"]),
            completed_1h=int(r["completed_1h"]),
            exceptions_1h=int(r["exceptions_1h"]),
            rate_in=int(r["in_window"]) / RATE_WINDOW_S,
            rate_out=int(r["out_window"]) / RATE_WINDOW_S,
            sparkline=_sparkline(r["spark_n"], r["spark_age"]),
        )
    times = [t for t in (_server_time(counted), _server_time(window_rows)) if t is not None]
    return WindowsReading(windows, sum(times) if times else None)


NO_DEPTH = Depth()
NO_WINDOWS = Windows()


def merge_rows(
    depth: dict[str, Depth],
    windows: dict[str, Windows],
    durations: dict[str, Durations],
    previous: Mapping[str, EntrypointRow] | None = None,
) -> tuple[EntrypointRow, ...]:
    """One row per entrypoint seen in the queue or in the last hour's events, sorted.

    A row of `previous` (by entrypoint) that reads the same is returned as it is, not built
    again: at 200 entrypoints most rows of a refresh are unchanged, and the screen then knows
    them unchanged by identity."""
    rows = []
    for entrypoint in sorted(depth.keys() | windows.keys()):
        queue = depth.get(entrypoint, NO_DEPTH)
        window = windows.get(entrypoint, NO_WINDOWS)
        known = durations.get(entrypoint)
        p50_s = known.p50_s if known else None
        p95_s = known.p95_s if known else None
        was = previous.get(entrypoint) if previous is not None else None
        if (
            was is not None
            and was.ready == queue.ready
            and was.deferred == queue.deferred
            and was.picked == window.picked
            and was.held == window.held
            and was.oldest_ready_since == queue.oldest_ready_since
            and was.completed_1m == window.completed_1m
            and was.exceptions_1m == window.exceptions_1m
            and was.completed_1h == window.completed_1h
            and was.exceptions_1h == window.exceptions_1h
            and was.rate_in == window.rate_in
            and was.rate_out == window.rate_out
            and was.sparkline == window.sparkline
            and was.p50_s == p50_s
            and was.p95_s == p95_s
        ):
            rows.append(was)
            continue
        rows.append(
            EntrypointRow(
                entrypoint=entrypoint,
                ready=queue.ready,
                deferred=queue.deferred,
                picked=window.picked,
                held=window.held,
                oldest_ready_since=queue.oldest_ready_since,
                completed_1m=window.completed_1m,
                exceptions_1m=window.exceptions_1m,
                completed_1h=window.completed_1h,
                exceptions_1h=window.exceptions_1h,
                rate_in=window.rate_in,
                rate_out=window.rate_out,
                sparkline=window.sparkline,
                p50_s=p50_s,
                p95_s=p95_s,
            )
        )
    return tuple(rows)


async def fetch_overview(
    backend: Backend, durations: dict[str, Durations] | None = None
) -> tuple[EntrypointRow, ...]:
    """Both tiers at once (one-shot readers such as `pgq-console snapshot`)."""
    reading = await fetch_depth(backend)
    windows = (await fetch_windows(backend)).windows
    return merge_rows(reading.depth, windows, durations or {})


async def fetch_durations(backend: Backend, window: timedelta) -> dict[str, Durations]:
    """p50/p95 run time per entrypoint, with pgqueuer's own percentile query (a pure read)."""
    sql = backend.queries.qbq.build_job_duration_percentiles_query()
    records = await backend.read(sql, window)
    return {
        str(r["entrypoint"]): Durations(float(r["p50_seconds"]), float(r["p95_seconds"]))
        for r in records
        if r["p50_seconds"] is not None
    }
