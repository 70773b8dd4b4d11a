"""A no-op consumer started from the running console vs the same consumer run headless.

Each round queues JOBS no-op jobs and drains them twice, in alternating order, on the same
server, driver (asyncpg, one connection), batch size and timeouts:

- **headless**: a plain `QueueManager` script in its own process (what `pgq run` runs);
- **console**: the real Textual app (headless terminal, asyncpg pool, LISTEN on): `7` opens the
  consumers screen, `n` the form, the fields are filled, ctrl+s starts the consumer, then `1`
  returns to the overview, which keeps refreshing live while the consumer drains the queue.

Rate = jobs between the first and the last completion / the time between them. The reported
ratio is median(console) / median(headless); the target is >= 0.90. The bench also counts the
overview's refreshes (queries run and shown) while the console's consumer ran.

    .venv/bin/python bench/consumer_bench.py                    # 40,000 jobs x 5 rounds
    .venv/bin/python bench/consumer_bench.py --jobs 5000 --rounds 1      # smoke run
    .venv/bin/python bench/consumer_bench.py --dsn postgresql://...      # your server (CREATEDB)

Environment (the console runs in this process): CONSUMER_BENCH_PYSPY=<prefix> (py-spy raw
samples of each console drain), CONSUMER_BENCH_CPU=1 (CPU seconds of this process, of each
backend and of the headless worker), CONSUMER_BENCH_VARIANTS=paused,unpaced (extra console
drains per round: the overview paused; its events not paced by the consumers, as before 12-02).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENTRYPOINT = "bench_noop"


# -- the headless worker (runs in its own process) -----------------------------------------------


async def headless_worker(dsn: str, jobs: int, batch: int) -> None:
    connection = await asyncpg.connect(dsn)
    backend_pid = connection.get_server_pid()
    manager = QueueManager(Queries(AsyncpgDriver(connection)))
    done = 0
    first = last = 0.0

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        nonlocal done, first, last
        done += 1
        last = time.perf_counter()
        if done == 1:
            first = last
        if done >= jobs:
            manager.shutdown.set()

    cpu = (sum(os.times()[:2]), _proc_cpu(backend_pid))
    try:
        await manager.run(
            batch_size=batch,
            dequeue_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=30),
        )
    finally:
        cpu = (sum(os.times()[:2]) - cpu[0], _proc_cpu(backend_pid) - cpu[1])
        await connection.close()
    print(json.dumps({"done": done, "seconds": last - first, "cpu": cpu}), flush=True)


# -- the console ------------------------------------------------------------------------------


async def console_run(
    dsn: str, jobs: int, batch: int, variant: str = "console"
) -> tuple[float, int, int]:
    """(seconds from first to last completion, done, overview refreshes while it ran)."""
    from textual.widgets import Input

    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import Backend, open_backend
    from pgq_console.core.target import DriverKind, Installation
    from pgq_console.screens.consumer_form import ConsumerFormScreen
    from pgq_console.screens.consumers import ConsumersScreen
    from pgq_console.screens.overview import OverviewScreen

    async def open_() -> Backend:
        return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())

    app = PgqConsole(open_, refresh_interval=2.0)
    async with app.run_test(size=(120, 40)) as pilot:
        # As an operator would: the console is up (its startup work, screens built ahead and
        # the GC freeze, is done) before a consumer is started from it.
        while (
            not isinstance(app.screen, OverviewScreen)
            or app.screen.snapshot is None
            or not app.settled
        ):
            await pilot.pause(0.05)
        overview = app.screen
        await pilot.press("7")
        while not isinstance(app.screen, ConsumersScreen):
            await pilot.pause(0.02)
        await pilot.press("n")
        while not isinstance(app.screen, ConsumerFormScreen):
            await pilot.pause(0.02)
        form = app.screen
        form.query_one("#entrypoints", Input).value = ENTRYPOINT
        form.query_one("#batch_size", Input).value = str(batch)
        await pilot.press("ctrl+s")
        while not list(app.consumers):  # noqa: ASYNC110 - no event to wait on from outside
            await asyncio.sleep(0.01)
        consumer = next(iter(app.consumers))
        await pilot.press("1")  # back to the overview: it refreshes live while the consumer runs
        # The switch lands when the app gets to it (a loaded box: after press() returned).
        waited = time.monotonic()
        while app.screen is not overview:  # noqa: ASYNC110 - no event to wait on from outside
            assert time.monotonic() - waited < 30, f"still on {app.screen!r}"
            await asyncio.sleep(0.01)
        if variant == "paused" and overview.refresher is not None:  # no overview reads
            overview.refresher.set_paused(True)
        if variant == "unpaced" and overview.refresher is not None:  # as before 12-02
            overview.refresher.pacer.consumers_busy = lambda: False
        refreshes_before = overview.status.refreshes if overview.status else 0
        profiler = _start_profiler()
        cpu_before = await _cpu_sample(dsn)
        # Plain sleeps, not pilot.pause: the bench must not add work to the app's loop.
        while consumer.done < jobs:  # noqa: ASYNC110 - polling keeps the consumer untouched
            await asyncio.sleep(0.01)
        _stop_profiler(profiler)
        await _cpu_report(dsn, cpu_before)
        refreshes = (overview.status.refreshes if overview.status else 0) - refreshes_before
        assert consumer.first_done_mono is not None and consumer.last_done_mono is not None
        seconds = consumer.last_done_mono - consumer.first_done_mono
        done = consumer.done
        app.consumers.stop(consumer.id)
        await app.consumers.wait(consumer.id, within=30)
        await pilot.press("q")
        await pilot.pause(0.2)
    return seconds, done, refreshes


_profiles = 0


def _start_profiler() -> subprocess.Popen[bytes] | None:
    """CONSUMER_BENCH_PYSPY=<prefix>: py-spy samples this process (the console) during each
    console drain, raw output to <prefix>_<n>.txt (for `--format raw` flame folding)."""
    global _profiles
    prefix = os.environ.get("CONSUMER_BENCH_PYSPY")
    if not prefix:
        return None
    _profiles += 1
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(os.getpid()),
            "--format",
            "raw",
            "--threads",
            "--rate",
            "200",
            "-o",
            f"{prefix}_{_profiles}.txt",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cpu_sample(dsn: str) -> dict[Any, float] | None:
    """CONSUMER_BENCH_CPU=1: CPU seconds of this process and of every backend of the database
    (by pid and first query seen), to say where a drain's CPU went."""
    if not os.environ.get("CONSUMER_BENCH_CPU"):
        return None
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid, application_name, left(query, 50) AS query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    sample: dict[Any, float] = {("self", os.getpid(), ""): sum(os.times()[:2])}
    for row in rows:
        sample[("backend", row["pid"], f"{row['application_name']}: {row['query']}")] = _proc_cpu(
            row["pid"]
        )
    sample[("wall", 0, "")] = time.monotonic()
    return sample


async def _cpu_report(dsn: str, before: dict[Any, float] | None) -> None:
    if before is None:
        return
    wall = time.monotonic() - before[("wall", 0, "")]
    print(f"  cpu over {wall:.1f}s wall:", flush=True)
    for key, start in before.items():
        kind, pid, what = key
        if kind == "wall":
            continue
        now = sum(os.times()[:2]) if kind == "self" else _proc_cpu(pid)
        print(f"    {kind:7} {pid:>7} {now - start:6.2f}s  {what!r}", flush=True)


# -- orchestration ---------------------------------------------------------------------------


async def queue_jobs(dsn: str, jobs: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        queries = Queries.from_asyncpg_connection(connection)
        for start in range(0, jobs, 5000):
            size = min(5000, jobs - start)
            await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
        await connection.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await connection.close()


async def left(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM pgqueuer"))
    finally:
        await connection.close()


def headless_run(dsn: str, jobs: int, batch: int) -> tuple[float, int]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", dsn, str(jobs), str(batch)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if os.environ.get("CONSUMER_BENCH_CPU"):
        own, backend = result["cpu"]
        print(f"  cpu: worker process {own:.2f}s, its backend {backend:.2f}s", flush=True)
    return float(result["seconds"]), int(result["done"])


async def run(dsn: str, jobs: int, rounds: int, batch: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"headless": [], "console": []}
    refreshes: list[int] = []
    for index in range(rounds):
        order: tuple[str, ...] = (
            ("headless", "console") if index % 2 == 0 else ("console", "headless")
        )
        # CONSUMER_BENCH_VARIANTS=paused,unpaced: more console rounds, each alternating too:
        # the overview paused, or its events not paced by the consumer's work (before 12-02).
        for extra in filter(None, os.environ.get("CONSUMER_BENCH_VARIANTS", "").split(",")):
            order = (*order, extra) if index % 2 == 0 else (extra, *order)
        for which in order:
            await queue_jobs(dsn, jobs)
            if which == "headless":
                seconds, done = await asyncio.to_thread(headless_run, dsn, jobs, batch)
            else:  # console or paused
                seconds, done, seen = await console_run(dsn, jobs, batch, which)
                refreshes.append(seen)
            remaining = await left(dsn)
            assert done >= jobs and remaining == 0, f"{which}: done {done}, left {remaining}"
            rate = (jobs - 1) / seconds
            rates.setdefault(which, []).append(rate)
            extra = f"  overview refreshes meanwhile {refreshes[-1]}" if which != "headless" else ""
            print(
                f"round {index + 1} {which:8}  {jobs:,} jobs in {seconds:6.2f}s  "
                f"{rate:8,.0f} jobs/s{extra}",
                flush=True,
            )
    headless = statistics.median(rates["headless"])
    console = statistics.median(rates["console"])
    for extra, extra_rates in rates.items():
        if extra not in ("headless", "console"):
            median = statistics.median(extra_rates)
            print(f"\nmedian {extra} {median:,.0f} jobs/s  ratio {median / headless:.2f}", end="")
    print(
        f"\nmedian headless {headless:,.0f} jobs/s  median console {console:,.0f} jobs/s  "
        f"ratio {console / headless:.2f} (target >= 0.90)"
    )
    return {
        "jobs": jobs,
        "rounds": rounds,
        "batch": batch,
        "headless_jobs_per_s": rates["headless"],
        "console_jobs_per_s": rates["console"],
        "median_headless": headless,
        "median_console": console,
        "ratio": console / headless,
        "overview_refreshes_during_console_runs": refreshes,
        "variants_jobs_per_s": {k: v for k, v in rates.items() if k not in ("headless", "console")},
    }


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def prepare(server: str) -> str:
    name = f"pgqc_consumer_bench_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(server, name)
    connection = await asyncpg.connect(dsn)
    try:
        await Queries.from_asyncpg_connection(connection).install()
    finally:
        await connection.close()
    return dsn


async def drop(server: str, dsn: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        name = urlsplit(dsn).path.lstrip("/")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        asyncio.run(headless_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="server to use (default: a throwaway embedded PostgreSQL)")
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="dequeue batch size (pgq run: 10)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()

    server_handle = None
    server = args.dsn
    if server is None:
        from pgq_console.core.embedded import EmbeddedPostgres

        server_handle = EmbeddedPostgres()
        server = server_handle.start()
    try:
        dsn = asyncio.run(prepare(server))
        try:
            summary = asyncio.run(run(dsn, args.jobs, args.rounds, args.batch))
        finally:
            asyncio.run(drop(server, dsn))
    finally:
        if server_handle is not None:
            server_handle.stop()
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
