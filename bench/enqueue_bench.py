"""Bulk enqueue from the console's form vs a plain pgqueuer batch-enqueue script, side by side.

Each round enqueues JOBS jobs twice on the same server, in alternating order:

- **plain**: an asyncpg connection and `Queries.enqueue(lists...)` in batches of BATCH — the
  script a developer would write;
- **form**: the real Textual app (headless, overview live on the asyncpg pool, as `pgq-console`
  starts), `e` opens the form, the fields are filled, ctrl+s submits; timed from the key press
  until the form shows its result (progress bar and all).

The queue is truncated between runs so both paths insert into the same state. The reported
ratio is median(form rate) / median(plain rate); the target is >= 0.80.

    .venv/bin/python bench/enqueue_bench.py                 # 100,000 jobs x 3 rounds
    .venv/bin/python bench/enqueue_bench.py --jobs 20000 --rounds 1   # smoke run
    .venv/bin/python bench/enqueue_bench.py --dsn postgresql://...    # your server (needs CREATEDB)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgqueuer.queries import Queries

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgq_console.app import PgqConsole  # noqa: E402
from pgq_console.core.backend import Backend, open_backend  # noqa: E402
from pgq_console.core.enqueue import DEFAULT_BATCH_SIZE  # noqa: E402
from pgq_console.core.target import DriverKind, Installation  # noqa: E402
from pgq_console.screens.enqueue_form import EnqueueFormScreen  # noqa: E402
from pgq_console.screens.overview import OverviewScreen  # noqa: E402

ENTRYPOINT = "bench_enqueue"
PAYLOAD = '{"user": 42, "action": "bench"}'


async def truncate(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        await connection.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await connection.close()


async def count(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM pgqueuer"))
    finally:
        await connection.close()


async def plain(dsn: str, jobs: int, batch: int) -> float:
    """The plain script: one connection, pgqueuer's batch enqueue. Returns seconds."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        started = time.perf_counter()
        done = 0
        while done < jobs:
            size = min(batch, jobs - done)
            await queries.enqueue([ENTRYPOINT] * size, [PAYLOAD.encode()] * size, [0] * size)
            done += size
        return time.perf_counter() - started
    finally:
        await connection.close()


async def form(dsn: str, jobs: int, batch: int) -> tuple[float, int]:
    """The console's form, driven by keys. Returns (seconds, overview snapshots meanwhile)."""

    async def open_() -> Backend:
        return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())

    app = PgqConsole(open_, refresh_interval=2.0)
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, OverviewScreen) or app.screen.snapshot is None:
            await pilot.pause(0.05)
        overview = app.screen
        await pilot.press("e")
        while not isinstance(app.screen, EnqueueFormScreen):
            await pilot.pause(0.02)
        screen = app.screen
        screen.enqueuer.batch_size = batch
        from textual.widgets import Input

        screen.query_one("#entrypoint", Input).value = ENTRYPOINT
        screen.query_one("#payload", Input).value = PAYLOAD
        screen.query_one("#copies", Input).value = str(jobs)
        snapshots = []

        started = time.perf_counter()
        await pilot.press("ctrl+s")
        while screen.result is None:
            # Plain sleeps, not pilot.pause: the bench must not add work to the app's loop.
            snapshots.append(id(overview.snapshot))
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        assert screen.result.complete, screen.result.summary()
        await pilot.press("escape")
    return elapsed, len(set(snapshots))


async def run(dsn: str, jobs: int, rounds: int, batch: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {"plain": [], "form": []}
    refreshes: list[int] = []
    for index in range(rounds):
        order = ("plain", "form") if index % 2 == 0 else ("form", "plain")
        for which in order:
            await truncate(dsn)
            if which == "plain":
                seconds = await plain(dsn, jobs, batch)
            else:
                seconds, seen = await form(dsn, jobs, batch)
                refreshes.append(seen)
            written = await count(dsn)
            assert written == jobs, f"{which} wrote {written} of {jobs}"
            results[which].append(jobs / seconds)
            print(
                f"round {index + 1} {which:5}  {jobs:,} jobs in {seconds:6.2f}s  "
                f"{jobs / seconds:9,.0f} jobs/s",
                flush=True,
            )
    plain_rate = statistics.median(results["plain"])
    form_rate = statistics.median(results["form"])
    summary = {
        "jobs": jobs,
        "rounds": rounds,
        "batch": batch,
        "plain_jobs_per_s": results["plain"],
        "form_jobs_per_s": results["form"],
        "median_plain": plain_rate,
        "median_form": form_rate,
        "ratio": form_rate / plain_rate,
        "overview_snapshots_seen_during_form_runs": refreshes,
    }
    print(
        f"\nmedian plain {plain_rate:,.0f} jobs/s  median form {form_rate:,.0f} jobs/s  "
        f"ratio {form_rate / plain_rate:.2f} (target >= 0.80)"
    )
    return summary


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def prepare(server: str) -> str:
    name = f"pgqc_enqueue_bench_{uuid.uuid4().hex[:6]}"
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="server to use (default: a throwaway embedded PostgreSQL)")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE)
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
