"""Round trips per read over a 50 ms link: the Jobs page, a held-failures page and job detail.

Opens the console's backend (asyncpg pool, as the app does) through `bench/delay_proxy.py`
and times the core reads each key press of those screens makes; the proxy counts request
bursts (a client packet after a server packet = one more round trip, the pool's reset on
release included even when it runs aside). Run it with PYTHONPATH at one tree, then another:

    PYTHONPATH=/work/main .venv/bin/python bench/roundtrip_bench.py --dsn postgresql://...
    PYTHONPATH=$PWD       .venv/bin/python bench/roundtrip_bench.py --dsn postgresql://...

The database is created (`--database`, dropped at the end) with 20,000 jobs and their log rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delay_proxy import DelayProxy  # noqa: E402


async def _setup(admin_dsn: str, database: str) -> str:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(connection)).install()
        await connection.execute(
            "INSERT INTO pgqueuer (priority, entrypoint, status, payload) "
            "SELECT g % 5, 'ep_' || (g % 8), "
            "(CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'queued' END)::pgqueuer_status, "
            "convert_to('{\"n\": ' || g || '}', 'UTF8') FROM generate_series(1, 20000) g"
        )
        await connection.execute(
            "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint) "
            "SELECT id, 'queued', priority, entrypoint FROM pgqueuer"
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return dsn


async def _drop(admin_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="dataside_roundtrips")
    parser.add_argument("--rtt", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()

    import pgq_console
    from pgq_console.core.backend import open_backend
    from pgq_console.core.jobs import HELD_FILTER, fetch_detail, fetch_page, parse_filter
    from pgq_console.core.target import DriverKind, Installation

    print(f"pgq_console from {Path(pgq_console.__file__).parent.parent}")
    dsn = await _setup(args.dsn, args.database)
    try:
        async with DelayProxy(dsn, rtt=args.rtt) as proxy:
            backend = await open_backend(
                DriverKind.ASYNCPG_POOL, proxy.dsn, Installation(), "bench", ()
            )
            try:
                job_id = (await fetch_page(backend, parse_filter(""))).rows[5].id
                reads = {
                    "jobs page (no filter)": lambda: fetch_page(backend, parse_filter("")),
                    "jobs page ep:ep_3 status:queued": lambda: fetch_page(
                        backend, parse_filter("ep:ep_3 status:queued")
                    ),
                    "failures: held page": lambda: fetch_page(backend, HELD_FILTER, limit=500),
                    "job detail": lambda: fetch_detail(backend, job_id),
                }
                print(f"rtt {args.rtt * 1000:.0f} ms, {args.repeat} reads each after one warm-up")
                for name, read in reads.items():
                    await read()  # prepares statements, fills the pool
                    await asyncio.sleep(0.3)  # resets released aside are done
                    times, trips = [], []
                    for _ in range(args.repeat):
                        before = proxy.round_trips
                        start = time.perf_counter()
                        await read()
                        times.append(time.perf_counter() - start)
                        await asyncio.sleep(0.3)
                        trips.append(proxy.round_trips - before)
                    p50 = statistics.median(times)
                    print(
                        f"{name:34s} wall p50 {p50 * 1000:6.1f} ms "
                        f"max {max(times) * 1000:6.1f} ms = {p50 / args.rtt:4.1f}"
                        f" RTT; round trips on the wire (all connections) "
                        f"median {statistics.median(trips):.0f}"
                    )
                await _overview(backend, proxy, args)
            finally:
                await backend.close()
    finally:
        await _drop(args.dsn, args.database)


async def _overview(backend: object, proxy: DelayProxy, args: argparse.Namespace) -> None:
    """The overview's refresh on request (a key or an event): time to its snapshot, and the
    round trips it made (its pacing gap, MIN_EVENT_GAP_S, is waited out before each)."""
    from pgq_console.core.clock import SystemClock
    from pgq_console.core.overview.refresher import Refresher

    snapshots: asyncio.Queue[float] = asyncio.Queue()
    refresher = Refresher(
        backend,  # type: ignore[arg-type]
        SystemClock(),
        on_snapshot=lambda _snapshot: snapshots.put_nowait(time.perf_counter()),
        on_status=lambda _status: None,
        interval_s=30.0,  # no timer refresh inside the measurement
        listen=False,
    )
    task = asyncio.create_task(refresher.run())
    try:
        await asyncio.wait_for(snapshots.get(), 60)  # the first refresh (windows, exact count)
        await asyncio.sleep(3)
        while not snapshots.empty():
            snapshots.get_nowait()
        times, trips = [], []
        for _ in range(args.repeat):
            await asyncio.sleep(1.0)  # past the event gap and any slow tier
            while not snapshots.empty():
                snapshots.get_nowait()
            before = proxy.round_trips
            start = time.perf_counter()
            refresher.request_refresh()
            shown = await asyncio.wait_for(snapshots.get(), 30)
            times.append(shown - start)
            await asyncio.sleep(0.3)
            trips.append(proxy.round_trips - before)
        p50 = statistics.median(times)
        print(
            f"{'overview refresh on request':34s} wall p50 {p50 * 1000:6.1f} ms "
            f"max {max(times) * 1000:6.1f} ms = {p50 / args.rtt:4.1f} RTT; round trips on the "
            f"wire (all connections) median {statistics.median(trips):.0f} "
            f"(debounce {0.05 * 1000:.0f} ms included)"
        )
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


if __name__ == "__main__":
    asyncio.run(_main())
