"""EXPLAIN ANALYZE of the Jobs page, held-failures page and job detail statements on a big
generated table (scale_bench's data), and their p50/p95 through the console's backend.

    .venv/bin/python bench/dataside_explain.py --dsn postgresql://postgres@127.0.0.1:5432/postgres \
        --rows 2000000 --log-rows 2000000 [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_bench  # noqa: E402


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="dataside_scale")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--log-rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="the database is loaded already")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    import pgq_console
    from pgq_console.core.backend import open_backend
    from pgq_console.core.jobs import HELD_FILTER, fetch_detail, fetch_page, parse_filter
    from pgq_console.core.jobs.held import held_index_usable
    from pgq_console.core.jobs.pages import list_query
    from pgq_console.core.target import DriverKind, Installation

    print(f"pgq_console from {Path(pgq_console.__file__).parent.parent}")
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{args.database}"
    if not args.reuse:
        admin = await asyncpg.connect(args.dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
        await admin.close()
        connection = await asyncpg.connect(dsn)
        await Queries(AsyncpgDriver(connection)).install()
        await connection.close()
        print("load", await scale_bench.load(dsn, args.rows, args.log_rows))
    connection = await asyncpg.connect(dsn)
    backend = await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())
    try:
        stats = await connection.fetchrow(
            "SELECT count(*) AS jobs, count(*) FILTER (WHERE status = 'failed') AS held, "
            "min(id) AS lo, max(id) AS hi FROM pgqueuer"
        )
        print(dict(stats))
        held_ids = await connection.fetch(
            "SELECT id FROM pgqueuer WHERE status = 'failed' ORDER BY id DESC LIMIT 1"
        )
        with_log = await connection.fetchval(
            "SELECT job_id FROM pgqueuer_log ORDER BY id DESC LIMIT 1"
        )
        queued_job = await connection.fetchval("SELECT max(id) FROM pgqueuer")
        deep = (int(stats["lo"]) + int(stats["hi"])) // 2
        print(f"held newest {held_ids[0]['id'] if held_ids else None}, log job {with_log}")
        index = await held_index_usable(backend)
        print(f"held-failures index usable: {index}")
        cases = {
            "jobs page, no filter": (parse_filter(""), {}),
            "jobs page, keyset at the middle": (parse_filter(""), {"after_id": deep}),
            "ep:send_email": (parse_filter("ep:send_email"), {}),
            "ep:send_email status:queued": (parse_filter("ep:send_email status:queued"), {}),
            "status:queued keyset middle": (parse_filter("status:queued"), {"after_id": deep}),
            "status:failed": (parse_filter("status:failed"), {}),
            "status:failed keyset middle": (parse_filter("status:failed"), {"after_id": deep}),
            "failures: held page (500)": (HELD_FILTER, {"limit": 500}),
        }
        table = backend.installation.settings.qualified.queue_table
        for name, (job_filter, options) in cases.items():
            sql, sql_args = list_query(table, job_filter, held_index=index, **options)
            plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *sql_args)
            print(f"\n== {name}\n" + "\n".join(r[0] for r in plan))
        detail_sql = None
        for job_id in (queued_job, with_log):
            start = time.perf_counter()
            detail = await fetch_detail(backend, job_id)
            print(
                f"\n== job detail {job_id}: job {'found' if detail.job else 'finished'}, "
                f"{len(detail.history)} history rows, {1000 * (time.perf_counter() - start):.1f} ms"
            )
        del detail_sql
        print("\n== through the backend (asyncpg pool, local), ms")
        timings = {
            **{
                name: (lambda f=f, o=o: fetch_page(backend, f, **o))
                for name, (f, o) in cases.items()
            },
            "job detail (queued job)": lambda: fetch_detail(backend, queued_job),
            "job detail (log job)": lambda: fetch_detail(backend, with_log),
        }
        for name, read in timings.items():
            await read()
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                await read()
                times.append(1000 * (time.perf_counter() - start))
            times.sort()
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            print(f"{name:34s} p50 {statistics.median(times):7.1f}  p95 {p95:7.1f}")
    finally:
        await backend.close()
        await connection.close()
        if not args.keep:
            admin = await asyncpg.connect(args.dsn)
            await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(_main())
