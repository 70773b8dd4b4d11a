"""Benchmark of `pgq-console fleet`: the console's CPU with 20 installations on one server.

Twenty databases with the PgQueuer schema on one PostgreSQL; real PgQueuer traffic (a producer
and two QueueManagers each, `core.demo.DemoTraffic`) in five of them, run in a separate OS
process so its CPU is not counted. The real Textual app runs the fleet screen headless
(`App.run_test`, 160x48) in this process: each installation on one connection of its own, with
LISTEN, exactly as `pgq-console fleet` builds it. After every row has been read and a warm-up,
the console's CPU (this process: user + system) is measured over a steady window.

Without --dsn a throwaway PostgreSQL 16 (pgserver, unix socket) is started and removed at the
end; with --dsn the benchmark creates and drops its 20 databases there (needs CREATEDB).

    .venv/bin/python bench/fleet_bench.py                      # 60 s window
    .venv/bin/python bench/fleet_bench.py --window 20 --warmup 5   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_CPU_SHARE = 0.15


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def admin(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_databases(server: str, count: int) -> list[str]:
    import asyncpg
    from pgqueuer.queries import Queries

    tag = uuid.uuid4().hex[:6]
    dsns = []
    for index in range(count):
        name = f"pgqfleet_{index:02d}_{tag}"
        await admin(server, f'CREATE DATABASE "{name}"')
        dsn = with_database(server, name)
        connection = await asyncpg.connect(dsn)
        try:
            await Queries.from_asyncpg_connection(connection).install()
        finally:
            await connection.close()
        dsns.append(dsn)
    return dsns


async def drop_databases(server: str, dsns: list[str]) -> None:
    for dsn in dsns:
        name = urlsplit(dsn).path.lstrip("/")
        with contextlib.suppress(Exception):
            await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def traffic_process(dsns: list[str], rate: float, ready: MpEvent, stop: MpEvent) -> None:
    asyncio.run(_traffic(dsns, rate, ready, stop))


async def _traffic(dsns: list[str], rate: float, ready: MpEvent, stop: MpEvent) -> None:
    from pgq_console.core.demo import DemoTraffic

    traffics = [DemoTraffic(dsn, jobs_per_second=rate, seed=i) for i, dsn in enumerate(dsns)]
    for traffic in traffics:
        await traffic.start()
    ready.set()
    await asyncio.to_thread(stop.wait)
    stats = [traffic.stats for traffic in traffics]
    for traffic in traffics:
        await traffic.stop()
    processed = sum(s.processed for s in stats)
    enqueued = sum(s.enqueued for s in stats)
    print(json.dumps({"enqueued": enqueued, "processed": processed}), flush=True)


async def run_console(
    dsns: list[str], busy: set[str], warmup_s: float, window_s: float, refresh_s: float
) -> dict[str, Any]:
    from datetime import timedelta

    from pgq_console.app import PgqConsole
    from pgq_console.config import Target
    from pgq_console.core.errors import ConsoleError
    from pgq_console.fleet_cli import members_of
    from pgq_console.fleet_console import FleetHost
    from pgq_console.screens.fleet import FleetScreen

    targets = [Target(dsn=dsn, profile=f"db{index:02d}") for index, dsn in enumerate(dsns)]
    members = members_of(targets, 300.0)

    async def nothing_open() -> Any:
        raise ConsoleError("no installation is open")

    app = PgqConsole(nothing_open, refresh_interval=refresh_s)
    app.fleet_host = FleetHost(
        members=tuple(members),
        targets={m.key: t for m, t in zip(members, targets, strict=True)},
        interval_s=refresh_s,
        stale_after=timedelta(seconds=90),
    )
    loop = asyncio.get_running_loop()
    async with app.run_test(size=(160, 48)) as pilot:
        started = loop.time()
        while not isinstance(app.screen, FleetScreen):
            await pilot.pause(0.05)
        screen = app.screen
        fleet = screen.fleet
        while not all(row.read_at is not None for row in fleet.rows.values()):
            if loop.time() - started > 120:
                raise RuntimeError(f"not every installation read: {fleet.rows}")
            await pilot.pause(0.1)
        all_read_s = loop.time() - started
        say(f"every installation read after {all_read_s:.1f}s; warm-up {warmup_s:g}s")
        await asyncio.sleep(warmup_s)
        busy_keys = {m.key for m, t in zip(members, targets, strict=True) if t.dsn in busy}
        events0 = {key: watch.events_seen for key, watch in fleet.watches.items()}
        reads0 = {key: fleet.rows[key].read_at for key in fleet.watches}
        cpu0, wall0 = os.times(), loop.time()
        say(f"measuring for {window_s:g}s")
        await asyncio.sleep(window_s)
        cpu1, wall1 = os.times(), loop.time()
        rows = fleet.rows
        events = {key: watch.events_seen - events0[key] for key, watch in fleet.watches.items()}
        busy_rows = [rows[key] for key in busy_keys]
        window = wall1 - wall0
        cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        result: dict[str, Any] = {
            "console_cpu_share": round(cpu_s / window, 4),
            "installations": len(rows),
            "busy_installations": len(busy_keys),
            "every_row_read_after_s": round(all_read_s, 2),
            "window_s": round(window, 1),
            "console_cpu_s": round(cpu_s, 2),
            "states": sorted({row.state.value for row in rows.values()}),
            "listening": sum(1 for row in rows.values() if row.listening),
            "events_in_window_busy": sum(events[key] for key in busy_keys),
            "events_in_window_idle": sum(v for k, v in events.items() if k not in busy_keys),
            "busy_workers_alive": [row.workers_alive for row in busy_rows],
            "busy_ready": [row.ready for row in busy_rows],
            "rows_refreshed_in_window": sum(
                1 for key, row in rows.items() if row.read_at and row.read_at != reads0[key]
            ),
            "db_cost_sum": round(sum(row.db_cost for row in rows.values()), 4),
        }
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server_dsn = args.dsn
    server = None
    if server_dsn is None:
        from pgq_console.core.embedded import EmbeddedPostgres

        server = EmbeddedPostgres()
        server_dsn = await asyncio.to_thread(server.start)
        say("started a throwaway PostgreSQL (pgserver)")
    dsns: list[str] = []
    context = mp.get_context("spawn")
    stop = context.Event()
    ready = context.Event()
    traffic: Any = None
    try:
        dsns = await create_databases(server_dsn, args.databases)
        say(f"created {len(dsns)} databases with the PgQueuer schema")
        busy = dsns[: args.busy]
        traffic = context.Process(
            target=traffic_process, args=(busy, args.rate, ready, stop), daemon=True
        )
        traffic.start()
        if not await asyncio.to_thread(ready.wait, 120):
            raise RuntimeError("the traffic process did not start")
        say(f"real PgQueuer traffic in {len(busy)} databases at {args.rate:g} jobs/s each")
        result = await run_console(dsns, set(busy), args.warmup, args.window, args.refresh)
        result["rate_per_busy_db"] = args.rate
        result["refresh_s"] = args.refresh
        return result
    finally:
        stop.set()
        if traffic is not None:
            await asyncio.to_thread(traffic.join, 30)
            if traffic.is_alive():
                traffic.kill()
        await drop_databases(server_dsn, dsns)
        if server is not None:
            await asyncio.to_thread(server.stop)
            say("stopped the throwaway PostgreSQL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="an existing server (admin URI); default: pgserver")
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--busy", type=int, default=5, help="databases with real traffic")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs/s per busy database")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--refresh", type=float, default=2.0, help="the fleet's timer (s)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    verdict = "met" if result["console_cpu_share"] <= TARGET_CPU_SHARE else "NOT met"
    print(json.dumps(result, indent=2))
    print(
        f"console CPU {result['console_cpu_share']:.1%} of one core over "
        f"{result['window_s']:g}s with {result['installations']} installations "
        f"({result['busy_installations']} busy): target <= {TARGET_CPU_SHARE:.0%}, {verdict}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
