"""Data for the charts: per-minute throughput over the last hour, run-time percentiles, backlog,
and a drain estimate per entrypoint.

Counts read the already-aggregated `pgqueuer_statistics` buckets plus the log rows not yet
aggregated, in one statement, as `stats.py` does (pgqueuer's `throughput_*` would aggregate the
log first: a write). Percentiles use pgqueuer's own read-only percentile query.

The drain estimate is queueing arithmetic at the current rates (last `RATE_WINDOW`):
- backlog B (ready jobs), arrivals `in`, completions `out` per minute, net = in - out;
- B empties in B / -net when net < 0; grows by net per minute otherwise;
- a job entering now waits about B / out (Little's law); a waiting job crosses the age limit
  in (limit - oldest age) when nothing completes; when the wait is already over the limit, as
  soon as the first job that cannot be served in time gets there (FIFO, ages spread evenly);
  when the backlog grows, a limit after the wait reaches the limit, (limit * out - B) / net
  from now; never while the wait stays under the limit and the backlog does not grow.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pgq_console.core.stats import MINUTE_FROM_NOW, queued_entrypoints_cte

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

CHART_MINUTES = 60
RATE_WINDOW = timedelta(minutes=5)
PERCENTILE_WINDOW = timedelta(minutes=15)
DEFAULT_AGE_LIMIT = timedelta(minutes=5)
# Ready jobs counted per entrypoint up to this (an index range each; the exact count of 9.8M
# queued took 0.85-1.7 s at 10M, and 100,000 each 0.32-0.38 s of the 0.37 s counts statement,
# 10,000 each 0.04 s): the overview (key 1) has the exact count. As the overview's first look.
BACKLOG_CAP = 10_000
# The percentiles read (a quarter hour of log rows: ~1 s at 10M) keeps to this share of a core
# while the screen is open; between reads the last percentiles are shown (`carry_percentiles`).
PERCENTILES_BUDGET = 0.02
TERMINAL = "'successful', 'exception', 'failed', 'canceled', 'deleted'"
FAILURES = "'exception', 'failed'"


@dataclass(frozen=True)
class DrainEstimate:
    backlog: int
    in_per_min: float
    out_per_min: float
    oldest_age_s: float | None
    age_limit_s: float
    # The backlog was counted up to a cap and reached it: at least `backlog` (empties_in_s
    # and wait_s are then lower bounds, crosses_limit_in_s an upper bound).
    backlog_capped: bool = False

    @property
    def net_per_min(self) -> float:
        return self.in_per_min - self.out_per_min

    @property
    def empties_in_s(self) -> float | None:
        """Seconds until the backlog is empty at the current rates; None if it never empties."""
        if self.backlog == 0:
            return 0.0
        if self.net_per_min >= 0:
            return None
        seconds = self.backlog / -self.net_per_min * 60.0
        return seconds if math.isfinite(seconds) else None  # a rate too small to ever drain

    @property
    def wait_s(self) -> float | None:
        """How long a job entering now waits (None: nothing completes, it waits forever)."""
        if self.backlog == 0:
            return 0.0
        if self.out_per_min <= 0:
            return None
        return self.backlog / self.out_per_min * 60.0

    @property
    def crosses_limit_in_s(self) -> float | None:
        """Seconds until a waiting job is older than the limit; None: not at these rates.

        FIFO at constant rates, the waiting jobs' ages spread evenly over [0, oldest age]: a job
        that entered at time s (s <= 0 for those already waiting) is served when the jobs ahead
        of it are done, and crosses the limit at s + limit if it is still waiting then.
        """
        if self.backlog == 0 or self.oldest_age_s is None:
            return None
        limit, age = self.age_limit_s, self.oldest_age_s
        if age >= limit:
            return 0.0
        if self.out_per_min <= 0:  # nothing completes: the oldest simply ages
            return limit - age
        wait = self.backlog / self.out_per_min * 60.0  # for a job entering now
        if not math.isfinite(wait):
            return limit - age
        if wait >= limit:
            if age <= 0:
                return limit
            # Served at (s + age) * wait / age: the first job still waiting at age `limit`.
            entered = (limit - wait) / (wait / age - 1.0)
            return max(0.0, entered + limit)
        if self.net_per_min <= 0:
            return None
        # The wait for new arrivals reaches the limit once the backlog is limit * out.
        minutes = (limit / 60.0 * self.out_per_min - self.backlog) / self.net_per_min
        return minutes * 60.0 + limit

    @property
    def trend(self) -> str:
        """'empty', 'draining', 'steady', 'growing' or 'stuck' (a backlog, nothing completes)."""
        if self.backlog == 0:
            # Nothing waits: arrivals beyond completions are deferred or still running.
            return "empty" if self.in_per_min == 0 else "steady"
        if self.out_per_min == 0:
            return "stuck"
        if abs(self.net_per_min) < max(0.5, 0.02 * self.in_per_min):
            return "steady"
        return "growing" if self.net_per_min > 0 else "draining"


@dataclass(frozen=True)
class EntrypointSeries:
    entrypoint: str
    # Per minute, oldest first; the last slot is the current (partial) minute.
    enqueued: tuple[int, ...]
    completed: tuple[int, ...]
    exceptions: tuple[int, ...]
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    drain: DrainEstimate

    @property
    def completed_1h(self) -> int:
        return sum(self.completed)

    @property
    def exceptions_1h(self) -> int:
        return sum(self.exceptions)


@dataclass(frozen=True)
class ChartsSnapshot:
    taken_at: datetime  # the database's now()
    series: tuple[EntrypointSeries, ...]
    # The percentiles are read separately (the slow half at 10M log rows): not yet.
    percentiles_pending: bool = False

    def get(self, entrypoint: str) -> EntrypointSeries | None:
        return next((s for s in self.series if s.entrypoint == entrypoint), None)

    def total(self) -> EntrypointSeries:
        """All entrypoints added up (percentiles are not additive: left out)."""

        def add(name: str) -> tuple[int, ...]:
            columns = zip(*(getattr(s, name) for s in self.series), strict=True)
            return tuple(sum(c) for c in columns) if self.series else (0,) * CHART_MINUTES

        drains = [s.drain for s in self.series]
        ages = [d.oldest_age_s for d in drains if d.oldest_age_s is not None]
        return EntrypointSeries(
            entrypoint="all entrypoints",
            enqueued=add("enqueued"),
            completed=add("completed"),
            exceptions=add("exceptions"),
            p50_s=None,
            p95_s=None,
            p99_s=None,
            drain=DrainEstimate(
                backlog=sum(d.backlog for d in drains),
                in_per_min=sum(d.in_per_min for d in drains),
                out_per_min=sum(d.out_per_min for d in drains),
                oldest_age_s=max(ages) if ages else None,
                age_limit_s=drains[0].age_limit_s if drains else DEFAULT_AGE_LIMIT.total_seconds(),
                backlog_capped=any(d.backlog_capped for d in drains),
            ),
        )


def charts_sql(backend: Backend, part: Literal["all", "minutes", "backlog"] = "all") -> str:
    """The per-minute counts and rates ("minutes"), the backlog ("backlog"), or both in one
    statement ("all"); every part ends with a 'now' row (the database's time).

    The hour's events are grouped by entrypoint, status and minute in each table first (the
    minute `stats.MINUTE_FROM_NOW`), then pivoted per entrypoint and minute. Computed per row (a
    numeric `extract`, the status cast to text and compared five times), the hour's ~107,000
    statistics rows of the scale bench took 130-230 ms of the statement, which is what the
    Charts key waited for over a remote link; grouped first, ~30 ms. A minute is the one
    `floor((now - created) / 1 minute)` gives, but for an event exactly on a minute's boundary
    (to the microsecond), counted in the newer one.

    The backlog's ready counts are read once (`counted` is materialized: inlined, the filter
    on `ready` counted every entrypoint's ready jobs a second time). $1 the rate window, $2
    the backlog cap ("minutes" alone: $1; "backlog" alone: $1 the cap).
    """
    names = backend.installation.settings.qualified
    q = names.queue_table
    bin_ = MINUTE_FROM_NOW
    hour = f"created > now() - interval '{CHART_MINUTES} minutes'"
    minutes_ctes = f"""events AS (
    SELECT entrypoint, status::text AS status, bin, n, recent FROM (
        SELECT entrypoint, status, {bin_} AS bin, sum(count) AS n,
            sum(count) FILTER (WHERE created > now() - $1::interval) AS recent
        FROM {names.statistics_table}
        WHERE {hour}
        GROUP BY 1, 2, 3
    ) s
    UNION ALL
    SELECT entrypoint, status::text, bin, n, recent FROM (
        SELECT entrypoint, status, {bin_} AS bin, count(*) AS n,
            count(*) FILTER (WHERE created > now() - $1::interval) AS recent
        FROM {names.queue_table_log}
        WHERE NOT aggregated AND {hour}
        GROUP BY 1, 2, 3
    ) l
),
minutes AS (
    SELECT entrypoint, round(extract(epoch FROM now() - bin) / 60)::int - 1 AS age,
        sum(n) FILTER (WHERE status = 'queued') AS enqueued,
        sum(n) FILTER (WHERE status = 'successful') AS completed,
        sum(n) FILTER (WHERE status IN ({FAILURES})) AS exceptions,
        sum(recent) FILTER (WHERE status = 'queued') AS rate_in,
        sum(recent) FILTER (WHERE status IN ({TERMINAL})) AS rate_out
    FROM events GROUP BY 1, 2
)"""
    cap = "$1" if part == "backlog" else "$2"
    backlog_ctes = f"""{queued_entrypoints_cte(q)},
counted AS MATERIALIZED (
    SELECT e.entrypoint,
        (SELECT count(*) FROM (SELECT 1 FROM {q} c WHERE c.status = 'queued'
            AND c.entrypoint = e.entrypoint AND c.execute_after <= now() LIMIT {cap}) x)
            AS ready,
        (SELECT c.execute_after FROM {q} c WHERE c.status = 'queued'
            AND c.entrypoint = e.entrypoint AND c.execute_after <= now()
            ORDER BY c.execute_after LIMIT 1) AS oldest_ready
    FROM eps e WHERE e.entrypoint IS NOT NULL
),
backlog AS (SELECT * FROM counted WHERE ready > 0)"""
    minutes_rows = """SELECT 'minute' AS kind, entrypoint, age, coalesce(enqueued, 0) AS enqueued,
    coalesce(completed, 0) AS completed, coalesce(exceptions, 0) AS exceptions,
    coalesce(rate_in, 0) AS rate_in, coalesce(rate_out, 0) AS rate_out,
    NULL::bigint AS ready, NULL::timestamptz AS oldest_ready, now() AS db_now
FROM minutes
UNION ALL
"""
    backlog_rows = """SELECT 'backlog', entrypoint, NULL, NULL, NULL, NULL, NULL, NULL,
    ready, oldest_ready, now()
FROM backlog
UNION ALL
"""
    now_row = "SELECT 'now', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, now()"
    if part == "minutes":
        return f"""
WITH {minutes_ctes}
{minutes_rows}{now_row}
"""
    if part == "backlog":
        return f"""
WITH RECURSIVE {backlog_ctes}
SELECT 'backlog' AS kind, entrypoint, NULL::int AS age, NULL::bigint AS enqueued,
    NULL::bigint AS completed, NULL::bigint AS exceptions, NULL::bigint AS rate_in,
    NULL::bigint AS rate_out, ready, oldest_ready, now() AS db_now
FROM backlog
UNION ALL
{now_row}
"""
    return f"""
WITH RECURSIVE {backlog_ctes},
{minutes_ctes}
{minutes_rows}{backlog_rows}{now_row}
"""


async def add_percentiles(backend: Backend, snapshot: ChartsSnapshot) -> ChartsSnapshot:
    """The run-time percentiles read (the last `PERCENTILE_WINDOW` of the log: the slow half of
    the charts at 10M log rows, about 1 s), added to the counts."""
    return with_percentiles(snapshot, await read_percentiles(backend))


async def read_percentiles(backend: Backend) -> list[dict[str, Any]]:
    """The run-time percentiles per entrypoint (PgQueuer's own statement), for
    `with_percentiles`; independent of the counts, so it can be read beside them."""
    return await backend.read_heavy(
        backend.queries.qbq.build_job_duration_percentiles_query(), PERCENTILE_WINDOW
    )


def with_percentiles(snapshot: ChartsSnapshot, percentiles: list[dict[str, Any]]) -> ChartsSnapshot:
    """The counts with `read_percentiles`' rows added."""
    known = {str(r["entrypoint"]): r for r in percentiles}
    series = tuple(
        replace(
            s,
            p50_s=_float(known.get(s.entrypoint), "p50_seconds"),
            p95_s=_float(known.get(s.entrypoint), "p95_seconds"),
            p99_s=_float(known.get(s.entrypoint), "p99_seconds"),
        )
        for s in snapshot.series
    )
    return replace(snapshot, series=series, percentiles_pending=False)


def carry_percentiles(snapshot: ChartsSnapshot, source: ChartsSnapshot) -> ChartsSnapshot:
    """`snapshot`'s counts with `source`'s percentiles (an entrypoint new since: none)."""
    known = {s.entrypoint: s for s in source.series}
    series = tuple(
        replace(s, p50_s=k.p50_s, p95_s=k.p95_s, p99_s=k.p99_s)
        if (k := known.get(s.entrypoint)) is not None
        else s
        for s in snapshot.series
    )
    return replace(snapshot, series=series, percentiles_pending=False)


async def fetch_charts(
    backend: Backend,
    age_limit: timedelta = DEFAULT_AGE_LIMIT,
    *,
    percentiles: bool = True,
    backlog_cap: int = BACKLOG_CAP,
) -> ChartsSnapshot:
    """Counts, backlog and drain per entrypoint; with `percentiles`, the run-time percentiles
    too (else `percentiles_pending`: `add_percentiles` reads them)."""
    if backend.PARALLEL_READS:
        # The minutes and the backlog at once, side by side on the pool (each is tens of ms of
        # server time at 200,000 jobs: the key waited for their sum); one connection takes
        # them in one statement, one round trip.
        parts = await asyncio.gather(
            backend.read_heavy(charts_sql(backend, "minutes"), RATE_WINDOW),
            backend.read_heavy(charts_sql(backend, "backlog"), backlog_cap),
        )
        rows = [row for part in parts for row in part]
    else:
        rows = await backend.read_heavy(charts_sql(backend), RATE_WINDOW, backlog_cap)
    taken_at: datetime | None = None
    counts: dict[str, dict[str, list[int]]] = {}
    rates: dict[str, list[int]] = {}
    backlog: dict[str, tuple[int, datetime | None, datetime]] = {}

    def slots(entrypoint: str) -> dict[str, list[int]]:
        return counts.setdefault(
            entrypoint, {k: [0] * CHART_MINUTES for k in ("enqueued", "completed", "exceptions")}
        )

    for row in rows:
        if taken_at is None:  # the minutes' now (their ages count from it)
            taken_at = row["db_now"]
        if row["kind"] == "minute":
            entrypoint = str(row["entrypoint"])
            series = slots(entrypoint)
            age = int(row["age"])
            if 0 <= age < CHART_MINUTES:
                for key in series:
                    series[key][CHART_MINUTES - 1 - age] += int(row[key])
            rate = rates.setdefault(entrypoint, [0, 0])
            rate[0] += int(row["rate_in"])
            rate[1] += int(row["rate_out"])
        elif row["kind"] == "backlog":
            entrypoint = str(row["entrypoint"])
            slots(entrypoint)
            backlog[entrypoint] = (int(row["ready"]), row["oldest_ready"], row["db_now"])
    assert taken_at is not None
    window_min = RATE_WINDOW.total_seconds() / 60.0
    result = []
    for entrypoint in sorted(counts):
        series = counts[entrypoint]
        ready, oldest, counted_at = backlog.get(entrypoint, (0, None, taken_at))
        rate_in, rate_out = rates.get(entrypoint, [0, 0])
        result.append(
            EntrypointSeries(
                entrypoint=entrypoint,
                enqueued=tuple(series["enqueued"]),
                completed=tuple(series["completed"]),
                exceptions=tuple(series["exceptions"]),
                p50_s=None,
                p95_s=None,
                p99_s=None,
                drain=DrainEstimate(
                    backlog=ready,
                    in_per_min=rate_in / window_min,
                    out_per_min=rate_out / window_min,
                    oldest_age_s=(
                        max(0.0, (counted_at - oldest).total_seconds()) if oldest else None
                    ),
                    age_limit_s=age_limit.total_seconds(),
                    backlog_capped=ready >= backlog_cap,
                ),
            )
        )
    snapshot = ChartsSnapshot(taken_at=taken_at, series=tuple(result), percentiles_pending=True)
    return await add_percentiles(backend, snapshot) if percentiles else snapshot


async def fetch_charts_then_percentiles(
    backend: Backend, on_counts: Callable[[ChartsSnapshot], None]
) -> ChartsSnapshot:
    """The counts (handed to `on_counts` as soon as they are in, to be shown), then the whole
    snapshot with the percentiles. Both statements are sent at once: the counts come after one
    round trip, not behind the percentiles, and the percentiles after the slower of the two,
    not after both in turn."""
    percentiles = asyncio.ensure_future(read_percentiles(backend))
    try:
        counts = await fetch_charts(backend, percentiles=False)
    except BaseException:
        percentiles.cancel()
        raise
    on_counts(counts)
    return with_percentiles(counts, await percentiles)


def _float(row: object, key: str) -> float | None:
    if row is None:
        return None
    value = row[key]  # type: ignore[index]
    return None if value is None else float(value)
