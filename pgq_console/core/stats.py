"""The console's own read-only overview query (pgqueuer's insight calls aggregate the log: writes).

Counts over windows add the already-aggregated `pgqueuer_statistics` buckets to the log rows
not yet aggregated; both are read in one statement, so a row aggregated concurrently is counted
exactly once. Ages are returned as timestamps, so the UI computes them with its own clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pgq_console.core.backend import Backend
from pgq_console.core.models import SPARKLINE_MINUTES, Durations, EntrypointRow
from pgq_console.core.target import Installation

RATE_WINDOW_S = 10
TERMINAL = "'successful', 'exception', 'failed', 'canceled', 'deleted'"
FAILURES = "'exception', 'failed'"


def overview_sql(installation: Installation) -> str:
    names = installation.settings.qualified
    return f"""
WITH queue AS (
    SELECT entrypoint,
        count(*) FILTER (WHERE status = 'queued' AND execute_after <= now()) AS ready,
        count(*) FILTER (WHERE status = 'queued' AND execute_after > now()) AS deferred,
        count(*) FILTER (WHERE status = 'picked') AS picked,
        count(*) FILTER (WHERE status = 'failed') AS held,
        -- Waiting since it became eligible: execute_after is the enqueue time unless deferred.
        min(execute_after) FILTER (WHERE status = 'queued' AND execute_after <= now())
            AS oldest_ready
    FROM {names.queue_table}
    GROUP BY entrypoint
),
events AS (
    SELECT entrypoint, status::text AS status, created, count AS n
    FROM {names.statistics_table}
    WHERE created > now() - interval '1 hour'
    UNION ALL
    SELECT entrypoint, status::text, date_trunc('sec', created), count(*)
    FROM {names.queue_table_log}
    WHERE NOT aggregated AND created > now() - interval '1 hour'
    GROUP BY 1, 2, 3
),
windows AS (
    SELECT entrypoint,
        sum(n) FILTER (WHERE status = 'successful' AND created > now() - interval '1 minute')
            AS completed_1m,
        sum(n) FILTER (WHERE status IN ({FAILURES}) AND created > now() - interval '1 minute')
            AS exceptions_1m,
        sum(n) FILTER (WHERE status = 'successful') AS completed_1h,
        sum(n) FILTER (WHERE status IN ({FAILURES})) AS exceptions_1h,
        sum(n) FILTER (WHERE status = 'queued'
            AND created > now() - interval '{RATE_WINDOW_S} seconds') AS in_window,
        sum(n) FILTER (WHERE status IN ({TERMINAL})
            AND created > now() - interval '{RATE_WINDOW_S} seconds') AS out_window,
        array_agg(n) FILTER (WHERE status IN ({TERMINAL})
            AND created > now() - interval '{SPARKLINE_MINUTES} minutes') AS spark_n,
        array_agg(floor(extract(epoch FROM now() - created) / 60)::int)
            FILTER (WHERE status IN ({TERMINAL})
            AND created > now() - interval '{SPARKLINE_MINUTES} minutes') AS spark_age
    FROM events
    GROUP BY entrypoint
)
SELECT coalesce(q.entrypoint, w.entrypoint) AS entrypoint,
    coalesce(q.ready, 0) AS ready, coalesce(q.deferred, 0) AS deferred,
    coalesce(q.picked, 0) AS picked, coalesce(q.held, 0) AS held, q.oldest_ready,
    coalesce(w.completed_1m, 0) AS completed_1m, coalesce(w.exceptions_1m, 0) AS exceptions_1m,
    coalesce(w.completed_1h, 0) AS completed_1h, coalesce(w.exceptions_1h, 0) AS exceptions_1h,
    coalesce(w.in_window, 0) AS in_window, coalesce(w.out_window, 0) AS out_window,
    w.spark_n, w.spark_age
FROM queue q FULL JOIN windows w ON w.entrypoint = q.entrypoint
ORDER BY 1
"""


def _sparkline(counts: list[Any] | None, ages: list[Any] | None) -> tuple[int, ...]:
    slots = [0] * SPARKLINE_MINUTES
    for count, age in zip(counts or (), ages or (), strict=True):
        if 0 <= int(age) < SPARKLINE_MINUTES:
            slots[SPARKLINE_MINUTES - 1 - int(age)] += int(count)
    return tuple(slots)


async def fetch_overview(
    backend: Backend, durations: dict[str, Durations] | None = None
) -> tuple[EntrypointRow, ...]:
    """One read of the overview numbers, joined with the latest known durations."""
    records = await backend.read(overview_sql(backend.installation))
    durations = durations or {}
    rows = []
    for record in records:
        entrypoint = str(record["entrypoint"])
        known = durations.get(entrypoint)
        rows.append(
            EntrypointRow(
                entrypoint=entrypoint,
                ready=int(record["ready"]),
                deferred=int(record["deferred"]),
                picked=int(record["picked"]),
                held=int(record["held"]),
                completed_1m=int(record["completed_1m"]),
                exceptions_1m=int(record["exceptions_1m"]),
                completed_1h=int(record["completed_1h"]),
                exceptions_1h=int(record["exceptions_1h"]),
                rate_in=int(record["in_window"]) / RATE_WINDOW_S,
                rate_out=int(record["out_window"]) / RATE_WINDOW_S,
                oldest_ready_since=record["oldest_ready"],
                p50_s=known.p50_s if known else None,
                p95_s=known.p95_s if known else None,
                sparkline=_sparkline(record["spark_n"], record["spark_age"]),
            )
        )
    return tuple(rows)


async def fetch_durations(backend: Backend, window: timedelta) -> dict[str, Durations]:
    """p50/p95 run time per entrypoint, with pgqueuer's own percentile query (a pure read)."""
    sql = backend.queries.qbq.build_job_duration_percentiles_query()
    records = await backend.read(sql, window)
    return {
        str(r["entrypoint"]): Durations(float(r["p50_seconds"]), float(r["p95_seconds"]))
        for r in records
        if r["p50_seconds"] is not None
    }
