"""Benchmark: one keyset page of the Jobs screen over a 5,000,000-row `pgqueuer` table.

Fills the queue table with --rows jobs (default 5,000,000: 8 entrypoints, 1 % picked, 1 % held
failed, priorities 0..9, 40-byte JSON payloads, created over the last 30 days), ANALYZEs it, then

(a) times `core.jobs.fetch_page` (the exact query the screen runs) for typical filters,
    --repeat times each, first page and a deep keyset page;
(b) times the real Textual app headless: from pressing `2` until the first page is on screen,
    and from submitting a filter until its page is on screen.

Without --dsn a throwaway PostgreSQL 16 (pgserver) is started and removed at the end; with --dsn
the role needs CREATEDB (a database is created and dropped).

    .venv/bin/python bench/jobs_page_bench.py                  # 5M rows, a few minutes to fill
    .venv/bin/python bench/jobs_page_bench.py --rows 200000    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgq_console.core.backend import Backend, open_backend  # noqa: E402
from pgq_console.core.jobs import fetch_page, parse_filter  # noqa: E402
from pgq_console.core.target import DriverKind, Installation  # noqa: E402

FILL = """
INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated, heartbeat,
    execute_after, queue_manager_id)
SELECT g % 10,
    (CASE WHEN g % 100 = 0 THEN 'picked' WHEN g % 100 = 1 THEN 'failed' ELSE 'queued' END)
        ::pgqueuer_status,
    (ARRAY['send_email','resize_image','sync_crm','charge_card','build_report','webhook',
           'search_index','thumbnail'])[1 + g % 8],
    convert_to('{"user": ' || g || ', "kind": "bench-payload-xx"}', 'UTF8'),
    now() - make_interval(secs => ($2 - g) * (2592000.0 / $2)),
    now(), now(), now(),
    CASE WHEN g % 100 = 0 THEN gen_random_uuid() END
FROM generate_series($1::bigint, $1::bigint + $3 - 1) g
"""

FILTERS = (
    "",
    "status:queued",
    "ep:send_email",
    "ep:send_email status:queued",
    "status:failed",
    "status:picked",
    "prio:>5",
    "age:>1d",
    "!ep:send_email status:failed",
    "id:2500000",
    "payload:bench-payload",
    "payload:no-such-text",
)


async def fill(dsn: str, rows: int) -> float:
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        await Queries.from_asyncpg_connection(connection).install()
        started = time.perf_counter()
        chunk = 500_000
        for start in range(1, rows + 1, chunk):
            await connection.execute(FILL, start, rows, min(chunk, rows - start + 1))
            print(f"  filled {min(start + chunk - 1, rows):,} rows", flush=True)
        await connection.execute("VACUUM ANALYZE pgqueuer")
        return time.perf_counter() - started
    finally:
        await connection.close()


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, math.ceil(len(samples) * 0.95) - 1)]
    return (
        f"p50 {statistics.median(samples) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
        f"max {samples[-1] * 1000:7.1f} ms"
    )


async def query_bench(backend: Backend, repeat: int, rows: int) -> list[tuple[str, str]]:
    results = []
    for text in FILTERS:
        job_filter = parse_filter(text)
        first: list[float] = []
        deep: list[float] = []
        shown = 0
        for _ in range(repeat):
            started = time.perf_counter()
            page = await fetch_page(backend, job_filter)
            first.append(time.perf_counter() - started)
            shown = len(page.rows)
            started = time.perf_counter()
            await fetch_page(backend, job_filter, after_id=rows // 2)
            deep.append(time.perf_counter() - started)
        label = text or "(no filter)"
        results.append((f"{label:<32} first page ({shown:>3} rows)", summary(first)))
        results.append((f"{label:<32} keyset page at id {rows // 2:,}", summary(deep)))
    return results


async def app_bench(dsn: str, repeat: int, settle: float) -> list[tuple[str, str]]:
    """The real app, headless; timed from the mode switch / filter change to rows on screen
    (direct calls, not Pilot key presses, whose idle-waiting would dominate the numbers)."""
    from pgq_console.app import PgqConsole
    from pgq_console.screens.jobs import JobsScreen
    from pgq_console.widgets.job_table import JobTable

    appear: list[float] = []
    refilter: list[float] = []
    for _ in range(repeat):

        async def opener() -> Any:
            return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())

        app = PgqConsole(opener, listen=False, refresh_interval=60)
        async with app.run_test(size=(160, 50)) as pilot:
            while app.backend is None or app.screen.id == "_default":
                await pilot.pause(0.01)
            # Let the overview's first refresh of the big table finish: it holds pool
            # connections, and measuring it is the overview benchmark's job.
            await asyncio.sleep(settle)
            started = time.perf_counter()
            app.switch_mode("jobs")  # what key 2 does
            while not (  # noqa: ASYNC110 - polling the screen is the measurement
                isinstance(app.screen, JobsScreen)
                and app.screen.query(JobTable)
                and app.screen.query_one(JobTable).row_count
            ):
                await asyncio.sleep(0.001)
            appear.append(time.perf_counter() - started)
            screen = app.screen
            table = screen.query_one(JobTable)
            for text, entrypoint in (("ep:webhook status:failed", "webhook"), ("", None)):
                started = time.perf_counter()
                screen.set_filter(parse_filter(text))  # what enter on the filter line does
                while not (  # noqa: ASYNC110 - polling the screen is the measurement
                    table.row_count
                    and (
                        entrypoint is None
                        or all(j.entrypoint == entrypoint for j in table.jobs.values())
                    )
                ):
                    await asyncio.sleep(0.001)
                refilter.append(time.perf_counter() - started)
    return [
        ("app: switch to Jobs (key 2) -> first page on screen", summary(appear)),
        ("app: new filter -> its page on screen", summary(refilter)),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="an admin URI of a server to use (needs CREATEDB)")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--app-repeat", type=int, default=5)
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds on the overview before switching"
    )
    args = parser.parse_args()

    server = None
    admin = args.dsn
    if not admin:
        from pgq_console.core.embedded import EmbeddedPostgres

        server = EmbeddedPostgres()
        admin = server.start()
    name = f"pgqc_jobs_bench_{uuid.uuid4().hex[:6]}"
    connection = await asyncpg.connect(admin)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    dsn = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    try:
        print(f"filling {args.rows:,} rows …", flush=True)
        seconds = await fill(dsn, args.rows)
        print(f"filled in {seconds:.0f} s\n", flush=True)
        backend = await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())
        assert isinstance(backend, Backend)
        try:
            results = await query_bench(backend, args.repeat, args.rows)
        finally:
            await backend.close()
        results += await app_bench(dsn, args.app_repeat, args.settle)
        print(f"{args.rows:,} rows in pgqueuer; page size 100; {args.repeat} runs each\n")
        for label, numbers in results:
            print(f"{label:<62} {numbers}")
    finally:
        connection = await asyncpg.connect(admin)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
