"""The Charts minutes kept between readings (`MinuteCache`): a later reading reads only the
events since the last complete minutes it keeps, and adds up to what reading the whole hour
gives, across a minute boundary, with jobs logged and aggregated between the readings, and
events on the boundaries to the microsecond; against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest

from pgq_console.core.backend import Backend
from pgq_console.core.charts import (
    CHART_MINUTES,
    ChartsSnapshot,
    MinuteBins,
    MinuteCache,
    fetch_charts,
)
from pgq_console.core.target import DriverKind
from tests.helpers import LIVENESS_S, LIVENESS_STRETCH, backend_for
from tests.screens_support import run_sql

pytestmark = pytest.mark.asyncio

MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)

# One statistics row per second and entrypoint over the last 70 minutes (priorities and statuses
# cycling), log rows not yet aggregated over the last 8 minutes, and log rows aggregated
# already (never counted). $1 = the database's now at the seed.
SEED = """
INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
SELECT date_trunc('sec', $1::timestamptz) - g * interval '1 second', 1 + (g + e) % 5,
    ((g + e) % 3) * 3,
    (ARRAY['queued', 'successful', 'exception', 'failed', 'canceled'])[1 + (g * 7 + e) % 5]
        ::pgqueuer_status,
    'ep_' || e
FROM generate_series(1, 4200) g, generate_series(1, 3) e;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, aggregated)
SELECT 500000 + g, (ARRAY['queued', 'picked', 'successful', 'exception'])[1 + g % 4]
        ::pgqueuer_status,
    0, 'ep_' || (1 + g % 2), $1::timestamptz - g * interval '1.7 seconds', false
FROM generate_series(1, 280) g;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, aggregated)
SELECT 600000 + g, 'successful', 0, 'ep_1', $1::timestamptz - g * interval '3 seconds', true
FROM generate_series(1, 100) g
"""

# Events on the grid's boundaries, to the microsecond ($1 = the origin): the first minute kept
# by the first reading (origin - 6 min) and the hour's first minute at the second reading
# (origin - 59 min), a microsecond either side; one status each (PgQueuer's unique index is
# per second).
EDGES = """
INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
SELECT $1::timestamptz + e.at, e.n, 9, e.status::pgqueuer_status, 'edge'
FROM (VALUES
    (interval '-6 minutes' - interval '1 microsecond', 1, 'successful'),
    (interval '-6 minutes', 10, 'queued'),
    (interval '-6 minutes' + interval '1 microsecond', 100, 'exception'),
    (interval '-59 minutes' - interval '1 microsecond', 1000, 'failed'),
    (interval '-59 minutes', 10000, 'exception')
) AS e(at, n, status);
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 700000 + g, e.status::pgqueuer_status, 0, 'edge', $1::timestamptz + e.at
FROM generate_series(1, 2) g, (VALUES
    (interval '-6 minutes' - interval '1 microsecond', 'successful'),
    (interval '-6 minutes', 'successful'),
    (interval '-59 minutes', 'successful')
) AS e(at, status)
"""


class OneTransaction:
    """A backend whose reads run on one connection in one REPEATABLE READ transaction: the
    same snapshot and the same now() for every statement (a reading kept and a reading of the
    whole hour compared at one instant)."""

    PARALLEL_READS = False

    def __init__(self, backend: Backend, connection: asyncpg.Connection) -> None:
        self.installation = backend.installation
        self.connection = connection
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    async def read_heavy(self, sql: str, *args: object) -> list[dict[str, Any]]:
        self.statements.append((sql, args))
        return [dict(row) for row in await self.connection.fetch(sql, *args)]


def counts_of(snapshot: ChartsSnapshot) -> dict[str, Any]:
    return {
        s.entrypoint: (
            s.enqueued,
            s.completed,
            s.exceptions,
            s.drain.in_per_min,
            s.drain.out_per_min,
            s.drain.backlog,
        )
        for s in snapshot.series
    }


async def db_now(connection: asyncpg.Connection) -> datetime:
    value = await connection.fetchval("SELECT now()")
    assert isinstance(value, datetime)
    return value


async def first_reading(
    backend: Backend, connection: asyncpg.Connection
) -> tuple[datetime, MinuteCache, ChartsSnapshot]:
    """The seed, then a first reading on a grid whose next boundary (the origin) is a few
    seconds ahead; again with a later origin if the reading came after it (a slow machine)."""
    for _ in range(10):
        now = await db_now(connection)
        origin = now.replace(microsecond=0) + timedelta(seconds=3)  # whole seconds, as kept
        await connection.execute("TRUNCATE pgqueuer_statistics, pgqueuer_log")
        for statement in SEED.split(";"):
            await connection.execute(statement, now)
        for statement in EDGES.split(";"):
            await connection.execute(statement, origin)
        cache = MinuteCache(origin)
        snapshot = await fetch_charts(backend, percentiles=False, minutes=cache)
        if snapshot.taken_at < origin:
            return origin, cache, snapshot
    raise AssertionError("every first reading came after its grid's next boundary")


async def test_kept_minutes_add_up_to_the_whole_hour(fresh_database: str) -> None:
    backend = await backend_for(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    try:
        origin, cache, first = await first_reading(backend, connection)
        kept = cache.bins
        assert kept is not None and kept.origin == origin
        # Minutes ending at the origin, the last one under way; kept: those before origin - 6 min
        # (a rate window and less than a minute before the reading's now).
        assert kept.settled_before == origin - 6 * MINUTE
        edge = first.get("edge")
        assert edge is not None
        # [origin - 7 min, origin - 6 min) is slot -7, [origin - 6, origin - 5) slot -6.
        assert edge.completed[-7] == 1 + 2 and edge.completed[-6] == 2
        assert edge.enqueued[-6] == 10 and edge.exceptions[-6] == 100
        # The hour's first minute starts at origin - 60 min: both failures are in, one a
        # microsecond before the next minute, one at its start.
        assert edge.exceptions[0] == 1000 and edge.exceptions[1] == 10000
        assert edge.completed[1] == 2

        # Between the readings, as PgQueuer does it: jobs logged (now), the log aggregated
        # into the statistics (upserts into buckets already there), more jobs logged, and a
        # bucket of a priority not seen before.
        await connection.execute(
            """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint)
            SELECT 800000 + g, (ARRAY['queued', 'successful', 'exception'])[1 + g % 3]
                ::pgqueuer_status, 0, (ARRAY['ep_1', 'ep_2', 'late'])[1 + g % 3]
            FROM generate_series(1, 60) g"""
        )
        await connection.execute(backend.queries.qbq.build_aggregate_log_data_to_statistics_query())
        await connection.execute(
            """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint)
            SELECT 900000 + g, 'successful', 0, 'ep_3' FROM generate_series(1, 7) g"""
        )
        await connection.execute(
            """INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
            VALUES (date_trunc('sec', now()) - interval '2 minutes', 5, 42, 'successful', 'ep_2')"""
        )
        # Until the database's clock is past the grid's boundary: the second reading is in the
        # next minute (a condition, liveness-bounded).
        deadline = asyncio.get_running_loop().time() + LIVENESS_S * LIVENESS_STRETCH
        while await db_now(connection) <= origin:
            assert asyncio.get_running_loop().time() < deadline, "the clock never passed it"
            await asyncio.sleep(0.05)

        async with connection.transaction(isolation="repeatable_read", readonly=True):
            at_once = OneTransaction(backend, connection)
            as_one = cast(Backend, at_once)
            later = await fetch_charts(as_one, percentiles=False, minutes=cache)
            whole = await fetch_charts(as_one, percentiles=False, minutes=MinuteCache(origin))
            (since_sql, since_args), (whole_sql, _) = at_once.statements
            truth = await connection.fetchrow(
                """SELECT
                    (SELECT coalesce(sum(count), 0) FROM pgqueuer_statistics
                     WHERE status = 'successful' AND created >= $1)
                    + (SELECT count(*) FROM pgqueuer_log
                       WHERE status = 'successful' AND NOT aggregated AND created >= $1)
                    AS completed""",
                origin + MINUTE - CHART_MINUTES * MINUTE,
            )
            # The kept reading's statement reads the statistics of its last minutes only: with
            # PgQueuer's unique index (no other index on the table), not the whole table.
            await connection.execute("SET LOCAL enable_seqscan = off")
            [plan_row] = await connection.fetch(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + since_sql, *since_args
            )
            total_rows = await connection.fetchval("SELECT count(*) FROM pgqueuer_statistics")
            recent_rows = await connection.fetchval(
                "SELECT count(*) FROM pgqueuer_statistics WHERE created >= $1",
                kept.settled_before - timedelta(seconds=1),
            )
        assert first.taken_at < origin <= later.taken_at == whole.taken_at
        assert "prios" in since_sql and since_args[-1] == origin - 6 * MINUTE
        assert "prios" not in whole_sql  # the whole hour, read as the first reading reads it
        assert counts_of(later) == counts_of(whole)
        assert {"ep_1", "ep_2", "ep_3", "late", "edge"} <= set(counts_of(later))
        assert sum(s.completed_1h for s in later.series) == truth["completed"]
        edge = later.get("edge")
        assert edge is not None
        # One minute later on the same grid: every slot moved one to the left; the hour now
        # starts at origin - 59 min, the failures a microsecond before it are out.
        assert edge.completed[-8] == 1 + 2 and edge.completed[-7] == 2
        assert edge.exceptions[-7] == 100 and edge.exceptions_1h == 100 + 10000
        assert edge.completed[0] == 2 and edge.exceptions[0] == 10000
        late = later.get("late")
        assert late is not None and late.exceptions_1h == 20
        assert cache.bins is not None and cache.bins.settled_before >= kept.settled_before

        plan = plan_row["QUERY PLAN"]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        examined = statistics_rows_examined(plan[0]["Plan"])
        assert total_rows > 12_000 and recent_rows < 2_000
        assert examined <= recent_rows + 50, (examined, recent_rows, total_rows)
    finally:
        await connection.close()
        await backend.close()


def statistics_rows_examined(node: dict[str, Any]) -> int:
    """Rows the plan's scans of the statistics table returned or filtered out, every loop."""
    own = 0
    if node.get("Relation Name") == "pgqueuer_statistics":
        per_loop = (
            int(node.get("Actual Rows", 0))
            + int(node.get("Rows Removed by Filter", 0))
            + int(node.get("Rows Removed by Index Recheck", 0))
        )
        own = per_loop * max(1, int(node.get("Actual Loops", 1)))
    return own + sum(statistics_rows_examined(child) for child in node.get("Plans", []))


async def test_a_reading_hours_later_reads_the_hour(fresh_database: str) -> None:
    """Minutes kept from long ago (the screen left for an hour) are all out of the hour: the
    reading shows what a reading of the whole hour shows."""
    backend = await backend_for(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    try:
        now = await db_now(connection)
        for statement in SEED.split(";"):
            await connection.execute(statement, now)
        # A grid whose last reading was two hours ago, a minute kept from then.
        origin = now.replace(microsecond=0) - timedelta(hours=2, seconds=17)
        stale = MinuteCache(origin)
        stale.bins = MinuteBins(
            origin=origin,
            settled_before=origin - 6 * MINUTE,
            counts={"gone": {origin - 30 * MINUTE: (1, 2, 3)}},
            full_at=origin,
            taken_at=origin,
        )
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            as_one = cast(Backend, OneTransaction(backend, connection))
            later = await fetch_charts(as_one, percentiles=False, minutes=stale)
            assert stale.bins.full_at == origin  # read from its kept minutes on, not whole
            whole = await fetch_charts(as_one, percentiles=False, minutes=MinuteCache(origin))
        assert "gone" not in counts_of(later)
        assert counts_of(later) == counts_of(whole) and set(counts_of(whole)) == {
            "ep_1",
            "ep_2",
            "ep_3",
        }
    finally:
        await connection.close()
        await backend.close()


@pytest.mark.parametrize(
    "kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG], ids=str
)
async def test_a_later_reading_on_every_async_driver(fresh_database: str, kind: DriverKind) -> None:
    """The kept reading's parameters (the grid's origin, the first minute to read: timestamps)
    go through every async driver; its totals are the whole hour's (the events well inside the
    hour and the rate window: a minute boundary between the two readings moves no total)."""
    await run_sql(
        fresh_database,
        """INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
        SELECT date_trunc('sec', now()) - g * interval '1 minute' - interval '10 seconds', g,
            g % 2, (ARRAY['queued', 'successful', 'exception'])[1 + g % 3]::pgqueuer_status,
            'ep_' || (g % 4)
        FROM generate_series(10, 50) g""",
    )
    await run_sql(
        fresh_database,
        """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
        SELECT g, (ARRAY['queued', 'successful', 'failed'])[1 + g % 3]::pgqueuer_status, 0,
            'ep_' || (g % 3), now() - interval '90 seconds' + g * interval '100 ms'
        FROM generate_series(1, 90) g""",
    )
    backend = await backend_for(fresh_database, kind)
    statements: list[str] = []
    read = backend.read_heavy

    async def recorded(sql: str, *args: object) -> list[dict[str, Any]]:
        statements.append(sql)
        return await read(sql, *args)

    backend.read_heavy = recorded  # type: ignore[method-assign]
    try:
        cache = MinuteCache()
        first = await fetch_charts(backend, percentiles=False, minutes=cache)
        assert cache.bins is not None
        later = await fetch_charts(backend, percentiles=False, minutes=cache)
        whole = await fetch_charts(backend, percentiles=False, minutes=MinuteCache())
    finally:
        await backend.close()
    assert ["prios" in sql for sql in statements if "grid" in sql] == [False, True, False]

    def totals(snapshot: ChartsSnapshot) -> dict[str, tuple[int, int, int, float, float]]:
        return {
            s.entrypoint: (
                sum(s.enqueued),
                s.completed_1h,
                s.exceptions_1h,
                s.drain.in_per_min,
                s.drain.out_per_min,
            )
            for s in snapshot.series
        }

    assert totals(later) == totals(whole) == totals(first)
    assert sum(t[1] for t in totals(whole).values()) == sum(range(10, 51, 3)) + 30
