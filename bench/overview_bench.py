"""Benchmark of the pgq-console overview against real PgQueuer traffic.

(a) latency: real PgQueuer workers (separate OS processes, asyncpg, batch_size 100, no-op
    handlers) and a producer process keep >= 2,000 jobs/s flowing; the real Textual app runs
    headless in this process. Each probe enqueues one job for a fresh entrypoint and times how
    long it takes for that entrypoint's row to appear in the overview table.
(b) cost: 1,000,000 queued jobs and 1,000,000 log rows (aggregated once, as workers would), then
    the console for WINDOW seconds and `pgq dashboard -i 1` for WINDOW seconds. Database time is
    summed per application_name from the server log (log_min_duration_statement = 0);
    pgserver's PostgreSQL has no contrib modules, so pg_stat_statements is not an option.

Without --dsn a throwaway PostgreSQL 16 (pgserver, unix socket) is started and removed at the end.
With --dsn the benchmark creates (and drops) two databases on that server, so the role needs
CREATEDB; the server log is not readable then, so (b) reports the console's client-side db_cost.

    .venv/bin/python bench/overview_bench.py            # full run, about 8 minutes
    .venv/bin/python bench/overview_bench.py --quick    # smoke run, under 90 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

ENTRYPOINTS: tuple[str, ...] = (
    "send_email",
    "resize_image",
    "sync_crm",
    "charge_card",
    "build_report",
    "webhook",
    "search_index",
    "thumbnail",
)
CONSOLE_APP = "pgq-console"  # pgq_console.core.target.APPLICATION_NAME
DASHBOARD_APP = "pgq-dashboard-bench"
WORKER_APP = "bench-worker"
PRODUCER_APP = "bench-producer"
ADMIN_APP = "bench-admin"
LOG_PREFIX = "%m|%a|%p|"
PROBE_TIMEOUT_S = 10.0
# The probe loop sleeps on the event loop the console runs on: `pilot.pause` would post a
# callback to every widget on screen and force a screen update each time (up to 200 a second
# while a probe waits), CPU the console does not spend in a terminal but the bench counted as
# the console's.


@dataclass(frozen=True)
class Config:
    quick: bool
    probes: int
    probe_gap_s: float
    rate: int
    workers: int
    batch_size: int
    warmup_s: float
    rows: int
    log_rows: int
    window_s: float
    refresh_s: float
    skip_latency: bool
    skip_cost: bool


def parse_args(argv: list[str] | None = None) -> tuple[Config, str | None, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="existing server (default: start a throwaway pgserver)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 90 s)")
    parser.add_argument("--probes", type=int, help="latency probes (100; quick 10)")
    parser.add_argument("--probe-gap", type=float, default=0.5, help="seconds between probes")
    parser.add_argument("--rate", type=int, help="producer jobs/s (2500; quick 1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--batch-size", type=int, default=100, help="worker batch_size (100)")
    parser.add_argument("--rows", type=int, help="queued jobs for (b) (1,000,000; quick 50,000)")
    parser.add_argument("--log-rows", type=int, help="log rows for (b) (1,000,000; quick 50,000)")
    parser.add_argument("--window", type=float, help="seconds per side in (b) (60; quick 10)")
    parser.add_argument("--refresh", type=float, default=2.0, help="console --refresh (2.0)")
    parser.add_argument("--skip-latency", action="store_true", help="skip (a)")
    parser.add_argument("--skip-cost", action="store_true", help="skip (b)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    cfg = Config(
        quick=quick,
        probes=args.probes or (10 if quick else 100),
        probe_gap_s=args.probe_gap,
        rate=args.rate or (1000 if quick else 2500),
        workers=args.workers,
        batch_size=args.batch_size,
        warmup_s=2.0 if quick else 5.0,
        rows=args.rows if args.rows is not None else (50_000 if quick else 1_000_000),
        log_rows=args.log_rows if args.log_rows is not None else (50_000 if quick else 1_000_000),
        window_s=args.window or (10.0 if quick else 60.0),
        refresh_s=args.refresh,
        skip_latency=args.skip_latency,
        skip_cost=args.skip_cost,
    )
    return cfg, args.dsn, args.json


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme.startswith("postgres"):
        return urlunsplit(parts._replace(path=f"/{database}"))
    return f"{dsn} dbname={database}"  # key=value DSN: the last keyword wins


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# -- worker and producer processes (spawned: module-level functions only) -------------------------


def worker_process(
    dsn: str,
    entrypoints: tuple[str, ...],
    batch_size: int,
    done: Synchronized[int],
    stop: MpEvent,
) -> None:
    asyncio.run(_worker(dsn, entrypoints, batch_size, done, stop))


async def _worker(
    dsn: str,
    entrypoints: tuple[str, ...],
    batch_size: int,
    done: Synchronized[int],
    stop: MpEvent,
) -> None:
    connection = await asyncpg.connect(dsn, server_settings={"application_name": WORKER_APP})
    qm = QueueManager(Queries(AsyncpgDriver(connection)))
    processed = 0

    async def noop(job: Job) -> None:
        nonlocal processed
        processed += 1

    for name in entrypoints:
        qm.entrypoint(name)(noop)

    async def publish_and_watch() -> None:
        while not stop.is_set():
            done.value = processed
            await asyncio.sleep(0.1)
        qm.shutdown.set()

    watcher = asyncio.create_task(publish_and_watch())
    try:
        await qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=batch_size)
    finally:
        watcher.cancel()
        done.value = processed
        await connection.close()


def producer_process(
    dsn: str,
    rate: int,
    entrypoints: tuple[str, ...],
    produced: Synchronized[int],
    stop: MpEvent,
) -> None:
    asyncio.run(_producer(dsn, rate, entrypoints, produced, stop))


async def _producer(
    dsn: str,
    rate: int,
    entrypoints: tuple[str, ...],
    produced: Synchronized[int],
    stop: MpEvent,
) -> None:
    """Steady `rate` jobs/s: one Queries.enqueue batch (one INSERT, one NOTIFY) every 100 ms."""
    connection = await asyncpg.connect(dsn, server_settings={"application_name": PRODUCER_APP})
    queries = Queries(AsyncpgDriver(connection))
    loop = asyncio.get_running_loop()
    tick = 0.1
    per_tick = max(1, round(rate * tick))
    total = 0
    due = loop.time()
    try:
        while not stop.is_set():
            names = [entrypoints[(total + i) % len(entrypoints)] for i in range(per_tick)]
            await queries.enqueue(names, [None] * per_tick, [0] * per_tick)
            total += per_tick
            produced.value = total
            due += tick
            now = loop.time()
            if due < now - 1.0:
                due = now  # fell far behind: do not burst to catch up
            await asyncio.sleep(max(0.0, due - now))
    finally:
        await connection.close()


# -- server ---------------------------------------------------------------------------------------


class Server:
    """The throwaway pgserver (default) or the --dsn server; knows where the log is, if anywhere."""

    def __init__(self, dsn: str | None) -> None:
        self._given = dsn
        self._embedded: Any = None
        self.dsn = ""
        self.log_path: Path | None = None
        self.data_dir: str | None = None

    def start(self) -> None:
        if self._given:
            self.dsn = self._given
            return
        from pgq_console.core.embedded import EmbeddedPostgres

        self._embedded = EmbeddedPostgres()
        self.dsn = self._embedded.start()
        assert self._embedded.data_dir is not None
        self.data_dir = str(self._embedded.data_dir)
        self.log_path = Path(self.data_dir) / "log"

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def postmaster_pids(self) -> list[int]:
        """PIDs of processes whose command line mentions our data dir (for the final check)."""
        return pids_matching(self.data_dir) if self.data_dir else []


def pids_matching(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline:
                found.append(int(entry.name))
    return found


async def admin_execute(dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn, server_settings={"application_name": ADMIN_APP})
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(server_dsn: str, tag: str) -> str:
    name = f"pgqc_bench_{tag}_{uuid.uuid4().hex[:6]}"
    await admin_execute(server_dsn, f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    connection = await asyncpg.connect(dsn, server_settings={"application_name": ADMIN_APP})
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()
    return dsn


async def drop_database(server_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/") if "://" in dsn else dsn.rsplit("dbname=", 1)[-1]
    await admin_execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the console, headless ------------------------------------------------------------------------


def overview_table(app: Any) -> Any:
    from pgq_console.widgets.overview_table import OverviewTable

    try:
        return app.screen.query_one(OverviewTable)
    except Exception:
        return None


def row_keys(app: Any) -> set[str]:
    table = overview_table(app)
    if table is None:
        return set()
    return set(table.row_keys)


def refresher_status(app: Any) -> Any:
    refresher = getattr(app.screen, "refresher", None)
    return None if refresher is None else refresher.status


def status_dict(status: Any) -> dict[str, Any]:
    if status is None:
        return {}
    return {
        "refreshes": status.refreshes,
        "db_cost": round(status.db_cost, 4),
        "interval_s": status.interval_s,
        "effective_interval_s": round(status.effective_interval_s, 3),
        "events_seen": status.events_seen,
        "listening": status.listening,
        "error": status.error,
    }


async def open_console(dsn: str, refresh_s: float) -> tuple[Any, Any]:
    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind, Installation

    backend = await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())
    return PgqConsole(backend, refresh_interval=refresh_s), backend


def sample_refreshes(app: Any, samples: list[tuple[float, float, float]]) -> None:
    """Record (when, overview query s, whole refresh s) for every refresh the console makes.

    Observes the refresher's status callback (no polling: the bench's own loop wake-ups would
    count as the console's CPU): a status with a new refresh count records its timings.
    """
    refresher = app.screen.refresher
    on_status = refresher._on_status
    seen = refresher.status.refreshes

    def observed(status: Any) -> None:
        nonlocal seen
        if status.refreshes != seen:
            seen = status.refreshes
            samples.append((time.perf_counter(), refresher.last_depth_s, refresher.last_spent_s))
        on_status(status)

    refresher._on_status = observed


class TableWatch:
    """Wakes the probe loop each time the overview table takes rows, instead of the loop
    querying the table every few milliseconds (that polling was the bench's own CPU, counted
    as the console's, and a 5 ms granularity on every latency)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.changed = asyncio.Event()
        apply = table.apply

        def observed(*args: Any, **kwargs: Any) -> Any:
            result = apply(*args, **kwargs)
            self.changed.set()
            return result

        table.apply = observed

    async def wait_for_row(self, key: str, timeout_s: float) -> bool:
        deadline = time.perf_counter() + timeout_s
        while True:
            self.changed.clear()
            if key in self.table.row_keys:
                return True
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


def refresh_summary(samples: list[tuple[float, float, float]]) -> dict[str, Any]:
    if len(samples) < 3:
        return {}
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    overview = [s[1] for s in samples[1:]]
    return {
        "refreshes": len(samples) - 1,
        "gap_s_p50": round(percentile(gaps, 50), 3),
        "gap_s_p95": round(percentile(gaps, 95), 3),
        "gap_s_max": round(max(gaps), 3),
        "overview_ms_p50": round(percentile(overview, 50) * 1000, 1),
        "overview_ms_p95": round(percentile(overview, 95) * 1000, 1),
        "overview_ms_max": round(max(overview) * 1000, 1),
    }


async def wait_for(pilot: Any, predicate: Any, limit_s: float, what: str) -> None:
    deadline = time.perf_counter() + limit_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {limit_s}s waiting for {what}")
        await pilot.pause(0.02)


# -- (a) latency under load -----------------------------------------------------------------------


async def run_latency(cfg: Config, server_dsn: str) -> dict[str, Any]:
    say("(a) creating database and starting workers/producer")
    dsn = await create_database(server_dsn, "latency")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    done = [ctx.Value("q", 0) for _ in range(cfg.workers)]
    produced = ctx.Value("q", 0)
    procs = [
        ctx.Process(
            target=worker_process,
            args=(dsn, ENTRYPOINTS, cfg.batch_size, done[i], stop),
            name=f"bench-worker-{i}",
            daemon=True,
        )
        for i in range(cfg.workers)
    ]
    procs.append(
        ctx.Process(
            target=producer_process,
            args=(dsn, cfg.rate, ENTRYPOINTS, produced, stop),
            name="bench-producer",
            daemon=True,
        )
    )
    admin: asyncpg.Connection | None = None
    probe_connection: asyncpg.Connection | None = None
    backend: Any = None
    result: dict[str, Any] = {"database": urlsplit(dsn).path.lstrip("/")}
    try:
        for proc in procs:
            proc.start()
        admin = await asyncpg.connect(dsn, server_settings={"application_name": ADMIN_APP})
        probe_connection = await asyncpg.connect(
            dsn, server_settings={"application_name": "bench-probe"}
        )
        probe_queries = Queries(AsyncpgDriver(probe_connection))
        await asyncio.sleep(cfg.warmup_s)
        if not all(proc.is_alive() for proc in procs):
            raise RuntimeError("a worker or the producer died during warm-up")
        say(f"(a) warm-up done: {sum(d.value for d in done)} jobs processed so far")

        app, backend = await open_console(dsn, cfg.refresh_s)
        latencies: list[float] = []
        timeouts = 0
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: bool(row_keys(app)), 30, "the first overview")
            await pilot.pause(1.0)  # let the refresher settle into its rhythm
            db_t0: datetime = await admin.fetchval("SELECT clock_timestamp()")
            done0 = sum(d.value for d in done)
            produced0 = produced.value
            wall0 = time.perf_counter()
            cpu0 = os.times()
            events0 = refresher_status(app).events_seen
            refreshes0 = refresher_status(app).refreshes
            samples: list[tuple[float, float, float]] = []
            sample_refreshes(app, samples)
            watch = TableWatch(overview_table(app))
            for i in range(cfg.probes):
                name = f"probe_{i + 1:04d}"
                await probe_queries.enqueue(name, None)
                t0 = time.perf_counter()  # the enqueue's commit has returned
                if await watch.wait_for_row(name, PROBE_TIMEOUT_S):
                    latencies.append(time.perf_counter() - t0)
                else:
                    timeouts += 1
                await asyncio.sleep(cfg.probe_gap_s * random.uniform(0.8, 1.2))
            wall1 = time.perf_counter()
            cpu1 = os.times()
            done1 = sum(d.value for d in done)
            produced1 = produced.value
            db_t1: datetime = await admin.fetchval("SELECT clock_timestamp()")
            result["console_refresh_timing"] = refresh_summary(samples)
            status = refresher_status(app)
            result["console_status"] = status_dict(status)
            result["console_refreshes_during"] = status.refreshes - refreshes0
            result["console_events_during"] = status.events_seen - events0
        await backend.close()
        backend = None
        # The overview query itself, under the same load (workers still running).
        from pgq_console.core.stats import depth_sql, windows_sql
        from pgq_console.core.target import Installation

        direct = []
        for _ in range(5):
            t = time.perf_counter()
            await admin.fetch(depth_sql(Installation()))
            direct.append(round((time.perf_counter() - t) * 1000, 1))
        result["overview_query_ms_direct_under_load"] = direct
        result["unaggregated_at_explain"] = await admin.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE NOT aggregated"
        )
        plan = await admin.fetch("EXPLAIN (ANALYZE, BUFFERS) " + depth_sql(Installation()))
        result["explain_overview_under_load"] = "\n".join(r[0] for r in plan)
        plan = await admin.fetch("EXPLAIN (ANALYZE, BUFFERS) " + windows_sql(Installation()))
        result["explain_windows_under_load"] = "\n".join(r[0] for r in plan)

        elapsed = wall1 - wall0
        logged = await admin.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful' "
            "AND created >= $1 AND created < $2",
            db_t0,
            db_t1,
        )
        depth = await admin.fetch(
            "SELECT status::text, count(*) FROM pgqueuer "
            "WHERE entrypoint NOT LIKE 'probe\\_%' GROUP BY 1"
        )
        unaggregated = await admin.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE NOT aggregated"
        )
        log_total = await admin.fetchval("SELECT count(*) FROM pgqueuer_log")
        busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        result.update(
            probes=cfg.probes,
            seen=len(latencies),
            timeouts=timeouts,
            p50_ms=round(percentile(latencies, 50) * 1000, 1) if latencies else None,
            p95_ms=round(percentile(latencies, 95) * 1000, 1) if latencies else None,
            p99_ms=round(percentile(latencies, 99) * 1000, 1) if latencies else None,
            max_ms=round(max(latencies) * 1000, 1) if latencies else None,
            min_ms=round(min(latencies) * 1000, 1) if latencies else None,
            mean_ms=round(sum(latencies) / len(latencies) * 1000, 1) if latencies else None,
            latencies_ms=[round(x * 1000, 1) for x in latencies],
            window_s=round(elapsed, 1),
            jobs_per_s_log=round(logged / elapsed, 0),
            jobs_per_s_workers=round((done1 - done0) / elapsed, 0),
            produced_per_s=round((produced1 - produced0) / elapsed, 0),
            backlog_at_end={r["status"]: r["count"] for r in depth},
            log_rows_at_end=log_total,
            unaggregated_log_rows_at_end=unaggregated,
            console_process_cpu_share=round(busy / elapsed, 3),
            load_avg=os.getloadavg(),
        )
        return result
    finally:
        stop.set()
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        if backend is not None:
            await backend.close()
        for connection in (admin, probe_connection):
            if connection is not None:
                await connection.close()
        with contextlib.suppress(Exception):
            await drop_database(server_dsn, dsn)


# -- (b) database cost with 1M + 1M rows ----------------------------------------------------------

LOAD_QUEUE_SQL = """
INSERT INTO pgqueuer (priority, created, updated, heartbeat, execute_after, status,
                      entrypoint, payload, queue_manager_id)
SELECT CASE WHEN g % 10 = 0 THEN 5 ELSE 0 END,
       c, c, c,
       CASE WHEN g % 20 = 0 THEN now() + (g % 3600) * interval '1 second' ELSE c END,
       s, ep, NULL,
       CASE WHEN s = 'picked' THEN gen_random_uuid() END
FROM (
    SELECT g,
           now() - (g::float8 / $1) * interval '1 hour' AS c,
           (CASE WHEN g % 100 = 7 THEN 'picked'
                 WHEN g % 100 = 13 THEN 'failed'
                 ELSE 'queued' END)::pgqueuer_status AS s,
           ($2::text[])[1 + (g::bigint * 7919) % array_length($2::text[], 1)] AS ep
    FROM generate_series(1, $1::int) AS g
) AS src
"""

LOAD_LOG_SQL = """
INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated)
SELECT now() - (g::float8 / $1) * interval '1 hour',
       10000000 + g / 3,
       (CASE g % 3 WHEN 0 THEN 'queued' WHEN 1 THEN 'picked'
             ELSE CASE WHEN g % 97 = 2 THEN 'exception' ELSE 'successful' END END)::pgqueuer_status,
       CASE WHEN (g / 3) % 10 = 0 THEN 5 ELSE 0 END,
       ($2::text[])[1 + ((g / 3)::bigint * 7919) % array_length($2::text[], 1)],
       false
FROM generate_series(1, $1::int) AS g
"""

DURATION_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+)\|([^|]*)\|(\d+)\|(\w+):  (.*)$"
)
MS_RE = re.compile(r"^duration: ([\d.]+) ms(?:  (.*))?$")


def log_size(path: Path | None) -> int:
    return path.stat().st_size if path is not None and path.exists() else 0


def read_log_slice(path: Path, start: int, end: int) -> str:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(end - start).decode(errors="replace")


def sum_log_durations(text: str) -> dict[str, dict[str, Any]]:
    """Per application_name: statements logged and their summed duration (ms)."""
    per_app: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"ms": 0.0, "entries": 0, "by_statement": defaultdict(float)}
    )
    current: list[Any] | None = None  # [app, ms, text]

    def flush() -> None:
        if current is None:
            return
        app, ms, statement = current
        key = " ".join(statement.split())
        key = re.sub(r"^(parse|bind|execute) [^:]*: ", "", key)[:90]
        per_app[app]["by_statement"][key] += ms

    for line in text.splitlines():
        match = DURATION_RE.match(line)
        if match is None:
            if current is not None and len(current[2]) < 400:
                current[2] += " " + line
            continue
        flush()
        current = None
        _, app, _, level, message = match.groups()
        if level != "LOG":
            continue
        duration = MS_RE.match(message)
        if duration is None:
            continue
        ms = float(duration.group(1))
        per_app[app]["ms"] += ms
        per_app[app]["entries"] += 1
        current = [app, ms, duration.group(2) or ""]
    flush()
    out: dict[str, dict[str, Any]] = {}
    for app, data in per_app.items():
        top = sorted(data["by_statement"].items(), key=lambda kv: -kv[1])[:6]
        out[app] = {
            "ms": round(data["ms"], 1),
            "entries": data["entries"],
            "top": [(round(ms, 1), stmt) for ms, stmt in ((v, k) for k, v in top)],
        }
    return out


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


async def run_cost(cfg: Config, server: Server) -> dict[str, Any]:
    from pgq_console.core.stats import depth_sql, windows_sql
    from pgq_console.core.target import Installation

    say(f"(b) creating database and loading {cfg.rows:,} jobs + {cfg.log_rows:,} log rows")
    dsn = await create_database(server.dsn, "cost")
    result: dict[str, Any] = {"database": urlsplit(dsn).path.lstrip("/")}
    admin = await asyncpg.connect(dsn, server_settings={"application_name": ADMIN_APP})
    tmp = Path(tempfile.mkdtemp(prefix="pgqc-bench-"))
    try:
        entrypoints = list(ENTRYPOINTS)
        t = time.perf_counter()
        await admin.execute(LOAD_QUEUE_SQL, cfg.rows, entrypoints)
        result["load_queue_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        await admin.execute(LOAD_LOG_SQL, cfg.log_rows, entrypoints)
        result["load_log_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        await Queries(AsyncpgDriver(admin)).aggregate_logs()
        result["aggregate_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        await admin.execute("VACUUM ANALYZE")
        result["vacuum_analyze_s"] = round(time.perf_counter() - t, 1)
        say(
            f"(b) loaded: queue {result['load_queue_s']}s, log {result['load_log_s']}s, "
            f"aggregate {result['aggregate_s']}s, vacuum analyze {result['vacuum_analyze_s']}s"
        )
        counts = await admin.fetchrow(
            "SELECT (SELECT count(*) FROM pgqueuer) AS queue,"
            " (SELECT count(*) FROM pgqueuer_log) AS log,"
            " (SELECT count(*) FROM pgqueuer_log WHERE NOT aggregated) AS unaggregated,"
            " (SELECT count(*) FROM pgqueuer_statistics) AS statistics,"
            " pg_size_pretty(pg_total_relation_size('pgqueuer')) AS queue_size,"
            " pg_size_pretty(pg_total_relation_size('pgqueuer_log')) AS log_size"
        )
        result["data"] = dict(counts)
        plan = await admin.fetch("EXPLAIN (ANALYZE, BUFFERS) " + depth_sql(Installation()))
        result["explain_overview"] = "\n".join(r[0] for r in plan)
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            await admin.fetch(depth_sql(Installation()))
            timings.append(time.perf_counter() - t)
        result["overview_query_ms_direct"] = [round(x * 1000, 1) for x in timings]
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            await admin.fetch(windows_sql(Installation()))
            timings.append(time.perf_counter() - t)
        result["windows_query_ms_direct"] = [round(x * 1000, 1) for x in timings]

        # Server-side accounting: the log (embedded) or pg_stat_statements.
        log_path = server.log_path
        if log_path is not None:
            # ALTER SYSTEM cannot share an implicit transaction: one statement per call.
            await admin.execute(f"ALTER SYSTEM SET log_line_prefix = '{LOG_PREFIX}'")
            await admin.execute("ALTER SYSTEM SET lc_messages = 'C'")
            await admin.execute("SELECT pg_reload_conf()")
            await asyncio.sleep(0.5)  # the postmaster and backends reload asynchronously
            db = result["database"]
            await admin.execute(f'ALTER DATABASE "{db}" SET log_min_duration_statement = 0')
            result["method"] = "server log, log_min_duration_statement=0, summed per %a"
        else:
            result["method"] = "client-side db_cost only (no server log with --dsn)"

        # The console, headless, on the same data.
        say(f"(b) console for {cfg.window_s:g}s (refresh {cfg.refresh_s:g}s)")
        off0 = log_size(log_path)
        wall0 = time.perf_counter()
        app, backend = await open_console(dsn, cfg.refresh_s)
        try:
            async with app.run_test(size=(160, 40)) as pilot:
                await pilot.pause(cfg.window_s - (time.perf_counter() - wall0))
                console_wall = time.perf_counter() - wall0
                status = refresher_status(app)
                table = overview_table(app)
                shown: dict[str, str] = {}
                if table is not None and table.row_keys:
                    first = table.row_keys[0]
                    from pgq_console.widgets.overview_table import COLUMNS

                    shown = {label: table.get_cell(first, key).plain for key, label in COLUMNS}
                result["console_status"] = status_dict(status)
                result["console_rows_shown"] = table.row_count if table is not None else 0
                result["console_first_row"] = shown
        finally:
            await backend.close()
        off1 = log_size(log_path)

        # pgq dashboard -i 1, same data, its own window.
        say(f"(b) pgq dashboard -i 1 for {cfg.window_s:g}s")
        pgq = shutil.which("pgq", path=str(Path(sys.executable).parent)) or "pgq"
        env = dict(os.environ, PGQUEUER_APPLICATION_NAME=DASHBOARD_APP, PGAPPNAME=DASHBOARD_APP)
        out_path = tmp / "dashboard.out"
        with out_path.open("wb") as out:
            wall0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                pgq, "--pg-dsn", dsn, "dashboard", "-i", "1", stdout=out, stderr=out, env=env
            )
            try:
                await asyncio.sleep(cfg.window_s)
            finally:
                if proc.returncode is None:
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            dashboard_wall = time.perf_counter() - wall0
        off2 = log_size(log_path)
        raw = out_path.read_text(errors="replace")
        screens = [strip_ansi(x).strip() for x in raw.split("\x1b[2J") if x.strip()]
        result["dashboard_screens"] = len(screens)
        result["dashboard_first_screen"] = screens[0][:2500] if screens else raw[:2500]
        result["dashboard_rc"] = proc.returncode

        console: dict[str, Any] = {"wall_s": round(console_wall, 1)}
        dashboard: dict[str, Any] = {"wall_s": round(dashboard_wall, 1)}
        if log_path is not None:
            await admin.execute(f'ALTER DATABASE "{result["database"]}" RESET ALL')
            console_log = sum_log_durations(read_log_slice(log_path, off0, off1))
            dashboard_log = sum_log_durations(read_log_slice(log_path, off1, off2))
            c = console_log.get(CONSOLE_APP, {"ms": 0.0, "entries": 0, "top": []})
            d = dashboard_log.get(DASHBOARD_APP, {"ms": 0.0, "entries": 0, "top": []})
            console.update(
                db_ms=c["ms"],
                log_entries=c["entries"],
                top=c["top"],
                db_s_per_s=round(c["ms"] / 1000 / console_wall, 5),
                other_apps={k: v["ms"] for k, v in console_log.items() if k != CONSOLE_APP},
            )
            dashboard.update(
                db_ms=d["ms"],
                log_entries=d["entries"],
                top=d["top"],
                db_s_per_s=round(d["ms"] / 1000 / dashboard_wall, 5),
                other_apps={k: v["ms"] for k, v in dashboard_log.items() if k != DASHBOARD_APP},
            )
            if d["ms"] > 0:
                result["ratio_console_over_dashboard"] = round(c["ms"] / d["ms"], 1)
        result["console"] = console
        result["dashboard"] = dashboard
        return result
    finally:
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            await drop_database(server.dsn, dsn)


# -- main -----------------------------------------------------------------------------------------


async def run_all(cfg: Config, server: Server) -> dict[str, Any]:
    results: dict[str, Any] = {"config": asdict(cfg)}
    if not cfg.skip_latency:
        results["latency"] = await run_latency(cfg, server.dsn)
        report_latency(results["latency"])
    if not cfg.skip_cost:
        results["cost"] = await run_cost(cfg, server)
        report_cost(results["cost"])
    return results


def report_latency(r: dict[str, Any]) -> None:
    say(
        f"(a) commit -> row shown: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
        f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms ({r['seen']}/{r['probes']} seen, "
        f"{r['timeouts']} timeouts)"
    )
    say(
        f"(a) throughput over {r['window_s']}s: {r['jobs_per_s_log']:.0f} jobs/s (pgqueuer_log), "
        f"{r['jobs_per_s_workers']:.0f} jobs/s (worker counters), "
        f"produced {r['produced_per_s']:.0f}/s; backlog at end {r['backlog_at_end']}"
    )
    say(f"(a) console refresh timing: {r['console_refresh_timing']}")
    say(
        f"(a) overview query direct under load: {r['overview_query_ms_direct_under_load']} ms "
        f"with {r['unaggregated_at_explain']} unaggregated log rows"
    )
    say(
        f"(a) console: {r['console_refreshes_during']} refreshes, "
        f"{r['console_events_during']} NOTIFYs seen, status {r['console_status']}, "
        f"console process CPU {r['console_process_cpu_share']:.0%} of one core"
    )


def report_cost(r: dict[str, Any]) -> None:
    say(f"(b) data: {r['data']}; overview query direct: {r['overview_query_ms_direct']} ms")
    say(f"(b) method: {r['method']}")
    for who in ("console", "dashboard"):
        side = r[who]
        say(
            f"(b) {who}: {side.get('db_ms', 'n/a')} ms DB over {side['wall_s']} s "
            f"= {side.get('db_s_per_s', 'n/a')} DB-s/s ({side.get('log_entries', 0)} log entries)"
        )
        for ms, statement in side.get("top", [])[:4]:
            say(f"      {ms:>10.1f} ms  {statement}")
    say(f"(b) console status: {r['console_status']}")
    say(f"(b) ratio console/dashboard: {r.get('ratio_console_over_dashboard')}")


def main(argv: list[str] | None = None) -> int:
    cfg, dsn, json_path = parse_args(argv)
    started = time.perf_counter()
    say(f"config: {asdict(cfg)}")
    server = Server(dsn)
    results: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        server.start()
        say(f"server ready in {time.perf_counter() - t:.1f}s ({'--dsn' if dsn else 'pgserver'})")
        results = asyncio.run(run_all(cfg, server))
    finally:
        leftovers = [p for p in mp.active_children()]
        for proc in leftovers:
            proc.terminate()
        server.stop()
        remaining = server.postmaster_pids()
        say(
            f"cleanup: server stopped, leftover children {len(leftovers)}, "
            f"leftover postgres pids {remaining}"
        )
    results["total_s"] = round(time.perf_counter() - started, 1)
    say(f"total {results['total_s']}s")
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2, default=str))
        say(f"wrote {json_path}")
    if "latency" in results:
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the overview query during (a):\n")
        print(results["latency"]["explain_overview_under_load"])
    if "cost" in results:
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the overview query on the (b) data:\n")
        print(results["cost"]["explain_overview"])
        print("\npgq dashboard, first screen:\n")
        print(results["cost"]["dashboard_first_screen"])
        print("\nconsole, first row:", results["cost"]["console_first_row"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
