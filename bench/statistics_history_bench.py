"""The overview's windows read and the Charts' minutes read over a long statistics history,
without and with the index on `created` the Database screen offers (key s).

PgQueuer's statistics table has only its primary key and its unique index (priority first), and
nothing prunes it: both reads filter `created > now() - interval '1 hour'` and, without an index
on created, scan every row of its history. The history built here: 30 days of sparse rows (10
entrypoints x 2 statuses, one row each per 10 s; 5.2M rows) and one busy hour (10 entrypoints x
3 statuses, one row each per second), then VACUUM ANALYZE. Each read runs `--repeat` times per
side (client time over a unix socket; the EXPLAIN's scan of the statistics table beside it);
the overview's windows gap at its default budget follows from the median.

Without --dsn a throwaway PostgreSQL 16 (pgserver) is started and removed at the end; with
--dsn a database is created there and dropped after (the role needs CREATEDB).

    .venv/bin/python bench/statistics_history_bench.py               # about 2 minutes
    .venv/bin/python bench/statistics_history_bench.py --days 3      # smaller history
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import overview_bench as ob  # noqa: E402

OVERVIEW_BUDGET = 0.02  # the overview refresher's default database budget
OVERVIEW_INTERVAL_S = 2.0


@dataclass(frozen=True)
class _Backend:
    """What `charts_sql` needs of a backend: the installation."""

    installation: Any


async def load(dsn: str, days: int) -> tuple[int, float]:
    import asyncpg

    connection = await asyncpg.connect(dsn, server_settings={"application_name": ob.ADMIN_APP})
    try:
        started = time.perf_counter()
        await connection.execute(
            f"""INSERT INTO pgqueuer_statistics (created, count, priority, entrypoint, status)
            SELECT now() - interval '1 hour' - s * interval '10 seconds', 3, 0, 'ep_' || e,
                st::pgqueuer_status
            FROM generate_series(1, {days} * 8640) s, generate_series(1, 10) e,
                unnest(array['queued', 'successful']) st"""
        )
        await connection.execute(
            """INSERT INTO pgqueuer_statistics (created, count, priority, entrypoint, status)
            SELECT now() - s * interval '1 second', 3, 0, 'ep_' || e, st::pgqueuer_status
            FROM generate_series(1, 3600) s, generate_series(1, 10) e,
                unnest(array['queued', 'successful', 'exception']) st"""
        )
        await connection.execute("VACUUM ANALYZE pgqueuer_statistics")
        rows = int(await connection.fetchval("SELECT count(*) FROM pgqueuer_statistics"))
        return rows, time.perf_counter() - started
    finally:
        await connection.close()


async def measure(dsn: str, repeat: int) -> dict[str, tuple[list[float], str]]:
    """Each read's times (ms) and the plan's scan of the statistics table."""
    import asyncpg

    from pgq_console.core.charts import RATE_WINDOW, charts_sql
    from pgq_console.core.indexes import focus_plan
    from pgq_console.core.stats import windows_sql
    from pgq_console.core.target import Installation

    installation = Installation()
    reads: dict[str, tuple[str, tuple[object, ...]]] = {
        "windows (overview)": (windows_sql(installation), ()),
        "minutes (Charts)": (charts_sql(_Backend(installation), "minutes"), (RATE_WINDOW,)),  # type: ignore[arg-type]
    }
    connection = await asyncpg.connect(dsn, server_settings={"application_name": ob.ADMIN_APP})
    out: dict[str, tuple[list[float], str]] = {}
    try:
        for label, (sql, args) in reads.items():
            await connection.fetch(sql, *args)  # planned once, cached pages warm
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                await connection.fetch(sql, *args)
                times.append((time.perf_counter() - started) * 1000)
            plan = [str(r[0]) for r in await connection.fetch("EXPLAIN " + sql, *args)]
            scan = focus_plan(plan, "pgqueuer_statistics")[0].split("  (cost")[0]
            out[label] = (times, scan)
    finally:
        await connection.close()
    return out


async def create_index(dsn: str) -> float:
    """The Database screen's statement, timed."""
    import asyncpg

    from pgq_console.core.indexes import statistics_created_index
    from pgq_console.core.target import Installation

    index = statistics_created_index(_Backend(Installation()))  # type: ignore[arg-type]
    connection = await asyncpg.connect(dsn, server_settings={"application_name": ob.ADMIN_APP})
    try:
        started = time.perf_counter()
        await connection.execute(index.create)
        took = time.perf_counter() - started
        await connection.execute("ANALYZE pgqueuer_statistics")
        return took
    finally:
        await connection.close()


def _row(label: str, times: list[float], scan: str) -> str:
    ordered = sorted(times)
    return (
        f"  {label:<20} median {statistics.median(ordered):7.0f} ms   "
        f"min {ordered[0]:6.0f}  max {ordered[-1]:6.0f}   {scan}"
    )


async def run(args: argparse.Namespace) -> None:
    from pgq_console.core.overview.pacing import windows_gap

    server = ob.Server(args.dsn)
    server.start()
    dsn = await ob.create_database(server.dsn, "stats_hist")
    try:
        rows, loaded_s = await load(dsn, args.days)
        print(
            f"statistics rows {rows:,} ({args.days} days of history + 1 busy hour), "
            f"loaded in {loaded_s:.0f} s"
        )
        sides: dict[str, dict[str, tuple[list[float], str]]] = {}
        sides["no index on created"] = await measure(dsn, args.repeat)
        took = await create_index(dsn)
        print(f"CREATE INDEX CONCURRENTLY ... (created): {took:.1f} s")
        sides["index on created"] = await measure(dsn, args.repeat)
        for side, reads in sides.items():
            print(f"{side} ({args.repeat} reads each):")
            for label, (times, scan) in reads.items():
                print(_row(label, times, scan))
            median_s = statistics.median(reads["windows (overview)"][0]) / 1000
            gap = windows_gap([median_s], OVERVIEW_INTERVAL_S, OVERVIEW_BUDGET)
            print(f"  overview rates every {timedelta(seconds=round(gap))} at its 2 % budget")
    finally:
        await ob.drop_database(server.dsn, dsn)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="existing server (default: start a throwaway pgserver)")
    parser.add_argument("--days", type=int, default=30, help="days of sparse history (30)")
    parser.add_argument("--repeat", type=int, default=7, help="reads per side (7)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
