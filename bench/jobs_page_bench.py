"""Benchmark: one keyset page of the Jobs screen over a 5,000,000-row `pgqueuer` table.

Fills the queue table with --rows jobs (default 5,000,000: 8 entrypoints, 1 % picked, 1 % held
failed, priorities 0..9, 40-byte JSON payloads, created over the last 30 days), ANALYZEs it, then

(a) times `core.jobs.fetch_page` (the exact query the screen runs) for typical filters,
    --repeat times each, first page and a deep keyset page;
(b) times the real Textual app headless: from pressing `2` until a first page read after the key
    press is painted, and from submitting a filter until its page is painted.

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


class PaintProbe:
    """Times the app's path from an action to a *fresh* page painted.

    A page counts only when its query started after the action (a page the screen already held,
    or one whose query was in flight, does not), and only once the compositor has rendered a
    frame after the table took the rows (headless Textual renders the frame and skips only the
    terminal write). When the fresh rows change nothing in the table, the frame already painted
    since the action shows them: the page is on screen once both have happened.
    """

    def __init__(self, app: Any) -> None:
        import pgq_console.screens.jobs as jobs_screen
        from pgq_console.widgets.job_table import JobTable

        self.fetch_started: dict[int, float] = {}  # id(page.rows) -> when its query started
        # (query started, rows applied, whether the table changed)
        self.applied: list[tuple[float, float, bool]] = []
        self.painted: list[float] = []
        fetch, apply, display = jobs_screen.fetch_page, JobTable.apply_jobs, app._display

        async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            page = await fetch(*args, **kwargs)
            self.fetch_started[id(page.rows)] = started
            return page

        def timed_apply(table: Any, rows: Any, *args: Any, **kwargs: Any) -> None:
            updates = table.version  # goes up on every row added, changed, removed or moved
            apply(table, rows, *args, **kwargs)
            if rows and id(rows) in self.fetch_started:
                started = self.fetch_started.pop(id(rows))
                changed = table.version != updates
                self.applied.append((started, time.perf_counter(), changed))

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None:
                self.painted.append(time.perf_counter())

        jobs_screen.fetch_page = timed_fetch  # type: ignore[assignment]
        JobTable.apply_jobs = timed_apply  # type: ignore[method-assign]
        app._display = timed_display
        self._restore = lambda: (
            setattr(jobs_screen, "fetch_page", fetch),
            setattr(JobTable, "apply_jobs", apply),
        )

    async def fresh_page_painted(self, since: float, done: Any = lambda: True) -> float:
        """Seconds from `since` to the first frame showing rows whose query began after it."""
        while True:
            fresh = [(at, changed) for started, at, changed in self.applied if started >= since]
            if fresh and done():
                applied, changed = fresh[0]
                painted = [at for at in self.painted if at >= (applied if changed else since)]
                if painted:
                    return max(applied, painted[0]) - since
            await asyncio.sleep(0.001)

    def close(self) -> None:
        self._restore()


async def app_bench(dsn: str, repeat: int, settle: float) -> list[tuple[str, str]]:
    """The real app, headless; timed from the mode switch / filter change to a fresh page
    painted (direct calls, not Pilot key presses, whose idle-waiting would dominate)."""
    from pgq_console.app import PgqConsole
    from pgq_console.screens.jobs import JobsScreen
    from pgq_console.widgets.job_table import JobTable

    appear: list[float] = []
    refilter: list[float] = []
    for _ in range(repeat):

        async def opener() -> Any:
            return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", ())

        app = PgqConsole(opener, listen=False, refresh_interval=60)
        probe = PaintProbe(app)
        try:
            async with app.run_test(size=(160, 50)) as pilot:
                while app.backend is None or app.screen.id == "_default":
                    await pilot.pause(0.01)
                # Let the overview's first refresh of the big table finish: it holds pool
                # connections, and measuring it is the overview benchmark's job.
                await asyncio.sleep(settle)
                started = time.perf_counter()
                app.action_jump("2")  # what key 2 does
                appear.append(await probe.fresh_page_painted(started))
                screen = app.screen
                assert isinstance(screen, JobsScreen)
                table = screen.query_one(JobTable)
                for text, entrypoint in (("ep:webhook status:failed", "webhook"), ("", None)):
                    await asyncio.sleep(0.2)
                    started = time.perf_counter()
                    screen.set_filter(parse_filter(text))  # what enter on the filter line does
                    refilter.append(
                        await probe.fresh_page_painted(
                            started,
                            lambda e=entrypoint, t=table: (
                                t.row_count > 0
                                and (e is None or all(j.entrypoint == e for j in t.jobs.values()))
                            ),
                        )
                    )
        finally:
            probe.close()
    return [
        ("app: switch to Jobs (key 2) -> fresh first page painted", summary(appear)),
        ("app: new filter -> its page painted", summary(refilter)),
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
