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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pgq_console.core.stats import minute_from, queued_entrypoints_cte

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
# The minutes older than the rate window are kept between readings (`MinuteBins`) and no longer
# read: a row logged later with an older time (a transaction open that long) is missed until the
# hour is read whole again, at most this long after the last time.
FULL_READ_EVERY = timedelta(minutes=10)
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


MINUTE = timedelta(minutes=1)
# A grid's origin: the first reading's now() rounded up to the second (the minutes end there, the
# minute under way holds now). On whole seconds, because PgQueuer's statistics rows are: a log row
# aggregated into its second's bucket (`date_trunc('sec', created)`) stays in its minute.
FIRST_ORIGIN = "date_trunc('second', now() + interval '0.999999 seconds')"
Counts = tuple[int, int, int]  # enqueued, completed, exceptions


@dataclass(frozen=True)
class MinuteBins:
    """The complete minutes of one grid (`charts_sql`), kept between readings: the next reading
    reads the events from `settled_before` on, not the hour (a sequential scan of the
    statistics table). `settled_before` stays a rate window behind the database's now (the rates
    need that much anyway, and a row logged late is still counted if it comes within it)."""

    origin: datetime  # the grid's origin: the first reading's now()
    settled_before: datetime  # a minute's start on the grid: the minutes before it are here
    counts: Mapping[str, Mapping[datetime, Counts]]  # entrypoint -> minute's start -> counts
    full_at: datetime  # the database's time of the last reading of the whole hour
    taken_at: datetime  # the database's time of the last reading

    def since(self) -> datetime | None:
        """Where the next reading starts (None: the whole hour, as due every FULL_READ_EVERY)."""
        if self.taken_at - self.full_at >= FULL_READ_EVERY:
            return None
        return self.settled_before


class MinuteCache:
    """Where a screen keeps its `MinuteBins` (one reading replaces them whole). `origin`: the
    grid's origin for the first reading (None: its now(); rounded up to the second)."""

    def __init__(self, origin: datetime | None = None) -> None:
        self.origin = None if origin is None else _to_second(origin)
        self.bins: MinuteBins | None = None


def _to_second(at: datetime) -> datetime:
    """`at` rounded up to the second (`FIRST_ORIGIN`)."""
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)


def _grid_minutes(origin: datetime, until: datetime) -> int:
    """Minutes from `origin` to `until`, rounded up (exact: timedeltas are whole us)."""
    return -((origin - until) // MINUTE)


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


def charts_sql(
    backend: Backend,
    part: Literal["all", "minutes", "backlog"] = "all",
    *,
    since: bool = False,
) -> str:
    """The per-minute counts and rates ("minutes"), the backlog ("backlog"), or both in one
    statement ("all"); every part ends with a 'now' row (the database's time).

    Minutes are those of a grid through an origin (`minute_from`): the database's now()
    rounded up to the second when the origin is NULL (`FIRST_ORIGIN`: minutes ending now, as
    the first reading shows them), the first reading's origin after (`MinuteBins`: the grid
    stays put, so complete minutes can be kept, and the minute under way is the last, partial
    one). Each 'minute' row is an entrypoint's minute starting at `bin`; the hour is the 60
    minutes up to the one under way, an event on a minute's boundary (to the microsecond)
    counted in the minute it starts.

    The events are grouped by entrypoint, status and minute in each table first, then pivoted
    per entrypoint and minute: computed per row (a numeric `extract`, the status cast to text
    and compared five times), the hour's ~107,000 statistics rows of the scale bench took
    130-230 ms of the statement; grouped first, ~30 ms (a sequential scan of the table, ~100
    ms at 132,000 rows on a busy machine). With `since`, only the events from that minute on
    are read (the minutes before are kept by the caller): the statistics rows through
    PgQueuer's unique index (priority, second, ...), one range per priority (the priorities
    found by a skip scan of the same index), ~6,500 rows for 6 minutes instead of the table.

    The backlog's ready counts are read once (`counted` is materialized: inlined, the filter
    on `ready` counted every entrypoint's ready jobs a second time). Parameters: "minutes":
    $1 the rate window, $2 the grid's origin (NULL: now()), with `since` $3 the first minute
    to read; "backlog": $1 the cap; "all": $1 the rate window, $2 the cap, then the minutes'.
    """
    names = backend.installation.settings.qualified
    q = names.queue_table
    first = 3 if part == "all" else 2
    origin, since_at = f"${first}::timestamptz", f"${first + 1}::timestamptz"
    bin_ = minute_from("(SELECT o FROM grid)")
    # From the first minute of the hour (or `since`, when later), to the microsecond.
    lower = "(SELECT lower FROM grid)"
    low = f"greatest(hour_start, {since_at})" if since else "hour_start"
    grid = f"""grid AS (
    SELECT o, {low} AS lower FROM (
        SELECT o, o + (ceil(extract(epoch FROM now() - o) / 60)
            - {CHART_MINUTES}) * interval '1 minute' AS hour_start
        FROM (SELECT coalesce({origin}, {FIRST_ORIGIN}) AS o) g
    ) h
)"""
    if since:
        # PgQueuer's unique index on (priority, date_trunc('sec', created at UTC), ...): its
        # seconds' range for each priority; `created` itself decides (a bound within a second).
        statistics_where = f"""priority = ANY (ARRAY(SELECT priority FROM prios
            WHERE priority IS NOT NULL))
            AND date_trunc('sec', created AT TIME ZONE 'UTC')
                >= date_trunc('sec', {lower} AT TIME ZONE 'UTC')
            AND created >= {lower}"""
        prios = f""",
prios AS (
    (SELECT priority FROM {names.statistics_table} ORDER BY priority LIMIT 1)
    UNION ALL
    SELECT (SELECT s.priority FROM {names.statistics_table} s WHERE s.priority > p.priority
            ORDER BY s.priority LIMIT 1)
    FROM prios p WHERE p.priority IS NOT NULL
)"""
    else:
        statistics_where = f"created >= {lower}"
        prios = ""
    minutes_ctes = f"""{grid}{prios},
events AS (
    SELECT entrypoint, status::text AS status, bin, n, recent FROM (
        SELECT entrypoint, status, {bin_} AS bin, sum(count) AS n,
            sum(count) FILTER (WHERE created > now() - $1::interval) AS recent
        FROM {names.statistics_table}
        WHERE {statistics_where}
        GROUP BY 1, 2, 3
    ) s
    UNION ALL
    SELECT entrypoint, status::text, bin, n, recent FROM (
        SELECT entrypoint, status, {bin_} AS bin, count(*) AS n,
            count(*) FILTER (WHERE created > now() - $1::interval) AS recent
        FROM {names.queue_table_log}
        WHERE NOT aggregated AND created >= {lower}
        GROUP BY 1, 2, 3
    ) l
),
minutes AS (
    SELECT entrypoint, bin,
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
    minutes_rows = """SELECT 'minute' AS kind, entrypoint, bin, coalesce(enqueued, 0) AS enqueued,
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
WITH RECURSIVE {minutes_ctes}
{minutes_rows}{now_row}
"""
    if part == "backlog":
        return f"""
WITH RECURSIVE {backlog_ctes}
SELECT 'backlog' AS kind, entrypoint, NULL::timestamptz AS bin, NULL::bigint AS enqueued,
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
    minutes: MinuteCache | None = None,
) -> ChartsSnapshot:
    """Counts, backlog and drain per entrypoint; with `percentiles`, the run-time percentiles
    too (else `percentiles_pending`: `add_percentiles` reads them). With `minutes`, the minutes
    kept there since the last reading are not read again (the cache is updated)."""
    kept = minutes.bins if minutes is not None else None
    since = kept.since() if kept is not None else None
    origin = kept.origin if kept is not None else minutes.origin if minutes is not None else None
    if backend.PARALLEL_READS:
        # The minutes and the backlog at once, side by side on the pool (each is tens of ms of
        # server time at 200,000 jobs: the key waited for their sum); one connection takes
        # them in one statement, one round trip.
        minute_args = (RATE_WINDOW, origin, since) if since is not None else (RATE_WINDOW, origin)
        parts = await asyncio.gather(
            backend.read_heavy(
                charts_sql(backend, "minutes", since=since is not None), *minute_args
            ),
            backend.read_heavy(charts_sql(backend, "backlog"), backlog_cap),
        )
        rows = [row for part in parts for row in part]
    else:
        all_args = (RATE_WINDOW, backlog_cap, origin) + ((since,) if since is not None else ())
        rows = await backend.read_heavy(charts_sql(backend, since=since is not None), *all_args)
    taken_at: datetime | None = None
    read: dict[str, dict[datetime, list[int]]] = {}
    rates: dict[str, list[int]] = {}
    backlog: dict[str, tuple[int, datetime | None, datetime]] = {}
    for row in rows:
        if taken_at is None:  # the minutes' now (the grid's origin on a first reading)
            taken_at = row["db_now"]
        if row["kind"] == "minute":
            entrypoint = str(row["entrypoint"])
            adding = read.setdefault(entrypoint, {}).setdefault(row["bin"], [0, 0, 0])
            adding[0] += int(row["enqueued"])
            adding[1] += int(row["completed"])
            adding[2] += int(row["exceptions"])
            rate = rates.setdefault(entrypoint, [0, 0])
            rate[0] += int(row["rate_in"])
            rate[1] += int(row["rate_out"])
        elif row["kind"] == "backlog":
            entrypoint = str(row["entrypoint"])
            backlog[entrypoint] = (int(row["ready"]), row["oldest_ready"], row["db_now"])
    assert taken_at is not None
    origin = origin if origin is not None else _to_second(taken_at)
    # The minute under way ends at `end` (on a first reading: now, a whole minute).
    end = origin + _grid_minutes(origin, taken_at) * MINUTE
    hour_start = end - CHART_MINUTES * MINUTE
    merged: dict[str, dict[datetime, Counts]] = {}
    if kept is not None and since is not None:
        for entrypoint, kept_minutes in kept.counts.items():
            for start, kept_counts in kept_minutes.items():
                if hour_start <= start < since:
                    merged.setdefault(entrypoint, {})[start] = kept_counts
    for entrypoint, read_minutes in read.items():
        for start, values in read_minutes.items():
            if hour_start <= start < end:
                merged.setdefault(entrypoint, {})[start] = (values[0], values[1], values[2])
    if minutes is not None:
        # The last minute's start on the grid a rate window or more before now.
        settled = origin + ((taken_at - RATE_WINDOW - origin) // MINUTE) * MINUTE
        minutes.bins = MinuteBins(
            origin=origin,
            settled_before=settled,
            counts={
                entrypoint: {start: c for start, c in by_start.items() if start < settled}
                for entrypoint, by_start in merged.items()
            },
            full_at=taken_at if since is None else (kept.full_at if kept else taken_at),
            taken_at=taken_at,
        )
    window_min = RATE_WINDOW.total_seconds() / 60.0
    result = []
    for entrypoint in sorted(set(merged) | set(backlog)):
        series = [[0] * CHART_MINUTES for _ in range(3)]
        for start, minute_counts in merged.get(entrypoint, {}).items():
            slot = (start - hour_start) // MINUTE
            for values, count in zip(series, minute_counts, strict=True):
                values[slot] += count
        ready, oldest, counted_at = backlog.get(entrypoint, (0, None, taken_at))
        rate_in, rate_out = rates.get(entrypoint, [0, 0])
        result.append(
            EntrypointSeries(
                entrypoint=entrypoint,
                enqueued=tuple(series[0]),
                completed=tuple(series[1]),
                exceptions=tuple(series[2]),
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
    backend: Backend,
    on_counts: Callable[[ChartsSnapshot], None],
    minutes: MinuteCache | None = None,
) -> ChartsSnapshot:
    """The counts (handed to `on_counts` as soon as they are in, to be shown), then the whole
    snapshot with the percentiles. Both statements are sent at once: the counts come after one
    round trip, not behind the percentiles, and the percentiles after the slower of the two,
    not after both in turn."""
    percentiles = asyncio.ensure_future(read_percentiles(backend))
    try:
        counts = await fetch_charts(backend, percentiles=False, minutes=minutes)
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
