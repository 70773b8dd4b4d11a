"""The console at scale: 10M queued jobs + 10M log rows, locally and 50 ms away.

One run compares two trees of the console side by side on the same data: `before` (a commit,
extracted with `git archive`, default 8ff1649) and `after` (this checkout). Each side is a
child process running the real app headless (Textual `run_test`, 160x50, asyncpg pool,
refresh 2 s), launched by this script, which measures:

- first numbers: from the child's launch (before importing the console) to the first overview
  row with a queued count on screen;
- refresh gaps after the first paint (including the first 10 s);
- probes during the window: a job for a new entrypoint until its row appears; a held failure
  (enqueue, pick, log as failed: UPDATEs, no NOTIFY) until the Held cell shows it;
- the console's database time in the window (server log, log_min_duration_statement = 0,
  summed for application_name pgq-console), as a fraction of one core;
- every screen (keys 2..8): from the key to the first frame after a read that started after
  the key (a polled screen's first visit, and the job detail: to the first frame after the
  screen has its data), and how many statements that took; the jobs page (key 2) and the job
  detail (the Jobs screen's action_open, as enter calls it, without Pilot's idle wait)
  repeated for p50/p95.

Light traffic runs meanwhile (a producer and a PgQueuer worker on one entrypoint, `bg`).
With `--rtt` each side also runs through `delay_proxy.DelayProxy` (that much added round trip).

    .venv/bin/python bench/scale_bench.py                        # 10M + 10M, both sides, ~15 min
    .venv/bin/python bench/scale_bench.py --rows 200000 --log-rows 200000 --window 20   # quick
    .venv/bin/python bench/scale_bench.py --rows 200000 --log-rows 200000 --window 0 \
        --keys-only --key-rounds 5 --before <commit>   # the keys only, side by side
    .venv/bin/python bench/scale_bench.py --dsn postgresql://...  # your server (CREATEDB)
    .venv/bin/python bench/scale_bench.py --reuse-dsn postgresql://... --rounds 2 --repeat 10
        # the screens part only, read-only, on a database loaded before (no load/traffic/probes)

Without --dsn a throwaway pgserver PostgreSQL is started and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overview_bench as ob  # noqa: E402
from delay_proxy import DelayProxy  # noqa: E402

CONSOLE_APP = "pgq-console"


# -- data -------------------------------------------------------------------------------------


async def load(dsn: str, rows: int, log_rows: int) -> dict[str, Any]:
    """10M+10M in minutes: indexes dropped during the INSERTs and rebuilt after."""
    import asyncpg

    admin = await asyncpg.connect(dsn, server_settings={"application_name": ob.ADMIN_APP})
    out: dict[str, Any] = {}
    try:
        await admin.execute("SET maintenance_work_mem = '512MB'")
        indexes = await admin.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('pgqueuer', 'pgqueuer_log') AND indexname NOT LIKE '%pkey'"
        )
        for r in indexes:
            await admin.execute(f'DROP INDEX "{r["indexname"]}"')
        entrypoints = list(ob.ENTRYPOINTS)
        t = time.perf_counter()
        await admin.execute(ob.LOAD_QUEUE_SQL, rows, entrypoints)
        out["load_queue_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        # As PgQueuer's workers leave them: aggregated into the statistics table.
        aggregated = ob.LOAD_LOG_SQL.replace("false\nFROM", "true\nFROM")
        assert aggregated != ob.LOAD_LOG_SQL
        await admin.execute(aggregated, log_rows, entrypoints)
        await admin.execute(
            """INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
            SELECT date_trunc('sec', created), count(*), priority, status, entrypoint
            FROM pgqueuer_log GROUP BY 1, 3, 4, 5"""
        )
        out["load_log_s"] = round(time.perf_counter() - t, 1)
        # New jobs must not reuse the job ids of the generated log history.
        await admin.execute(
            "SELECT setval(pg_get_serial_sequence('pgqueuer', 'id'), "
            "(SELECT max(job_id) + 1000 FROM pgqueuer_log))"
        )
        t = time.perf_counter()
        for r in indexes:
            await admin.execute(r["indexdef"])
        out["indexes_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        await admin.execute("VACUUM ANALYZE")
        out["vacuum_analyze_s"] = round(time.perf_counter() - t, 1)
        row = await admin.fetchrow(
            "SELECT (SELECT count(*) FROM pgqueuer) AS queue,"
            " (SELECT count(*) FROM pgqueuer WHERE status = 'queued') AS queued,"
            " (SELECT count(*) FROM pgqueuer_log) AS log,"
            " pg_size_pretty(pg_total_relation_size('pgqueuer')) AS queue_size,"
            " pg_size_pretty(pg_total_relation_size('pgqueuer_log')) AS log_size"
        )
        out["data"] = dict(row) if row else {}
    finally:
        await admin.close()
    return out


# -- traffic ----------------------------------------------------------------------------------


async def traffic(dsn: str, rate: float, stop: asyncio.Event) -> dict[str, int]:
    """A producer at `rate` jobs/s and a PgQueuer worker on entrypoint `bg`."""
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    counts = {"produced": 0, "done": 0}
    producer = await asyncpg.connect(dsn, server_settings={"application_name": ob.PRODUCER_APP})
    worker = await asyncpg.connect(dsn, server_settings={"application_name": ob.WORKER_APP})
    qm = QueueManager(Queries(AsyncpgDriver(worker)))

    @qm.entrypoint("bg")
    async def bg(job: Job) -> None:
        counts["done"] += 1

    async def produce() -> None:
        queries = Queries(AsyncpgDriver(producer))
        while not stop.is_set():
            await queries.enqueue("bg", b"x")
            counts["produced"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)

    async def stopper() -> None:
        await stop.wait()
        qm.shutdown.set()

    try:
        await asyncio.gather(
            produce(), qm.run(dequeue_timeout=timedelta(seconds=5), batch_size=10), stopper()
        )
    finally:
        await producer.close()
        await worker.close()
    return counts


# -- one side (child process) -----------------------------------------------------------------


async def child(
    dsn: str,
    window_s: float,
    launched: float,
    out_path: Path,
    screens: bool,
    read_only: bool = False,
    repeat: int = 8,
) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
    from pgqueuer.ports.repository import EntrypointExecutionParameter
    from pgqueuer.queries import Queries

    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind, Installation

    result: dict[str, Any] = {"imported_s": round(time.time() - launched, 3)}
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", (), read_only=read_only
    )
    app = PgqConsole(backend, refresh_interval=2.0, read_only=read_only)
    reads: list[tuple[float, float]] = []  # (started, ended) of every console read
    # Reads over half a second: (seconds after launch it began, seconds it took, statement head)
    slow_reads: list[tuple[float, float, str]] = []
    inflight: list[float] = []  # when each read under way started
    paints = Paints()
    original_read, original_heavy = backend.read, backend.read_heavy

    async def timed(fn: Any, sql: str, *args: object) -> Any:
        started = time.perf_counter()
        inflight.append(started)
        try:
            return await fn(sql, *args)
        finally:
            inflight.remove(started)
            ended = time.perf_counter()
            reads.append((started, ended))
            if os.environ.get("SCALE_KEY_TRACE"):
                READ_HEADS.append((started, ended, " ".join(sql.split())[:40]))
            if ended - started > 0.5:
                head = " ".join(sql.split())[:60]
                offset = time.time() - launched - (ended - started)
                slow_reads.append((round(offset, 2), round(ended - started, 2), head))

    backend.read = lambda sql, *a: timed(original_read, sql, *a)  # type: ignore[method-assign]
    backend.read_heavy = lambda sql, *a: timed(original_heavy, sql, *a)  # type: ignore[method-assign]
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> None:
        # Whether the frame shows what is waited for: asked before it is drawn (the state it
        # is drawn from is set by then: rendering the frame and writing it are one call).
        ready = paints.ready is not None and bool(paints.ready())
        display(screen, renderable)
        if renderable is not None:
            paints.add(time.perf_counter(), screen, ready)

    app._display = timed_display  # type: ignore[method-assign]

    def cell(entrypoint: str, column: str) -> str | None:
        table = ob.overview_table(app)
        if table is None:
            return None
        try:
            text = str(table.get_cell(entrypoint, column).plain).split()
        except Exception:
            return None
        return text[-1] if text else ""  # without the glyph of states needing action

    def first_numbers() -> bool:
        table = ob.overview_table(app)
        if table is None:
            return False
        # The project's LiveTable has `row_keys`; the DataTable of older trees `rows`.
        keys = (
            [str(k) for k in table.row_keys]
            if hasattr(table, "row_keys")
            else [str(k.value) for k in table.rows]
        )
        for key in keys:
            value = cell(key, "ready")
            if value not in (None, "", "0", "–"):
                return True
        return False

    probe = await asyncpg.connect(dsn, server_settings={"application_name": ob.ADMIN_APP})
    queries = Queries(AsyncpgDriver(probe))
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            t0 = time.perf_counter()
            wall0 = time.time()
            while not first_numbers():
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("no numbers within 120 s")
                await asyncio.sleep(0.005)
            first = time.time()
            result["first_numbers_s"] = round(first - launched, 3)
            result["first_numbers_after_app_start_s"] = round(first - wall0, 3)
            samples: list[tuple[float, float, float]] = []
            ob.sample_refreshes(app, samples)
            errors: list[str] = []

            async def watch_errors() -> None:
                while True:
                    status = ob.refresher_status(app)
                    if status is not None and status.error and status.error not in errors:
                        errors.append(status.error)
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch_errors())

            async def debug() -> None:
                last = -1
                while True:
                    r = getattr(app.screen, "refresher", None)
                    if r is not None and r.status.refreshes != last:
                        last = r.status.refreshes
                        now = r.clock.monotonic()
                        print(
                            f"DEBUG {time.perf_counter() - t0:6.2f} n={last} "
                            f"gap={r.pacer.depth_gap():.3f} over={r.pacer.over_budget(now)} "
                            f"due_in={r.timing.due_in():.2f} fail={r.timing.failures} "
                            f"log_tiers_due={r.tiers.log_tiers_due(now)}",
                            file=sys.stderr,
                            flush=True,
                        )
                    await asyncio.sleep(0.01)

            debugger = asyncio.create_task(debug()) if os.environ.get("SCALE_DEBUG") else None
            warmup = float(os.environ.get("SCALE_WARMUP_S", "0"))
            if warmup > 0:  # steady state: the startup's one-off reads land before the window
                await asyncio.sleep(warmup)
                samples.clear()
            result["warmup_s"] = warmup
            print("PHASE window-start", flush=True)
            window_start = time.perf_counter()
            result["window_start_after_launch_s"] = round(time.time() - launched, 2)
            new_ep: list[float] = []
            held: list[float] = []
            n = 0
            held_count = 0
            held_name = f"probe_held_{os.getpid()}"
            while time.perf_counter() - window_start < window_s:
                n += 1
                name = f"probe_{n}_{os.getpid()}"
                t = time.perf_counter()
                await queries.enqueue(name, b"p")
                while cell(name, "ready") != "1":
                    if time.perf_counter() - t > 30:
                        break
                    await asyncio.sleep(0.005)
                else:
                    new_ep.append(time.perf_counter() - t)
                # A held failure: UPDATEs only (pick, then hold): no NOTIFY.
                await queries.enqueue(held_name, b"h")
                picked = await queries.dequeue(
                    batch_size=1,
                    entrypoints={QueueEntrypoint(held_name): EntrypointExecutionParameter(0)},
                    queue_manager_id=QueueManagerId(uuid.uuid4()),
                    global_concurrency_limit=None,
                    heartbeat_timeout=timedelta(seconds=30),
                )
                await queries.log_jobs([(job, "failed", None) for job in picked])
                held_count += 1
                t = time.perf_counter()
                while cell(held_name, "held") != str(held_count):
                    if time.perf_counter() - t > 30:
                        break
                    await asyncio.sleep(0.005)
                else:
                    held.append(time.perf_counter() - t)
                await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - t)))
            print("PHASE window-end", flush=True)
            watcher.cancel()
            if debugger is not None:
                debugger.cancel()
            result["errors"] = errors[:10]
            result["slow_reads"] = slow_reads[:40]
            gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
            result["window_s"] = round(time.perf_counter() - window_start, 1)
            result["refreshes"] = len(samples)
            result["gap_s_max"] = round(max(gaps), 3) if gaps else None
            result["gap_s_p95"] = round(ob.percentile(gaps, 95), 3) if len(gaps) > 2 else None
            status = ob.refresher_status(app)
            result["status"] = ob.status_dict(status)
            tracker = getattr(getattr(app.screen, "refresher", None), "tracker", None)
            if tracker is not None:
                result["tracker"] = {
                    "resyncs": tracker.resyncs,
                    "reasons": tracker.resync_reasons,
                    "deltas": tracker.deltas,
                    "rows_applied": tracker.rows_applied,
                    # Counted directly (a small queue) or followed from the log, and the
                    # switches between the two ("direct", "follow", "restart"), in order.
                    "direct": getattr(tracker, "direct", None),
                    "direct_reads": getattr(tracker, "direct_reads", None),
                    "switches": list(getattr(tracker, "switches", ())),
                }
            result["new_entrypoint_s"] = _summary(new_ep)
            result["held_probe_s"] = _summary(held)
            _write_json(out_path, result)  # the window's numbers, whatever the screens do
            if screens:
                try:
                    result["screens"] = await _screens(app, pilot, reads, inflight, paints, repeat)
                except Exception as exc:
                    result["screens_error"] = repr(exc)
    finally:
        await probe.close()
        await backend.close()
    _write_json(out_path, result)


class Paints(list[float]):
    """The frames drawn (their times), the screen each was drawn for, and the times of those
    drawn while `ready()` held (set by the one waiting; None: not asked).

    Screens are held weakly: until 12-02 this list kept every screen ever drawn (every job
    detail opened) alive in the bench's console, and their growing heap made its full GC
    collections slower than a real console's."""

    def __init__(self) -> None:
        super().__init__()
        self.screens: list[weakref.ref[Any]] = []
        self.ready: Any = None
        self.ready_at: list[float] = []

    def add(self, at: float, screen: Any, ready: bool) -> None:
        self.append(at)
        self.screens.append(weakref.ref(screen))
        if ready:
            self.ready_at.append(at)


class JobsPageProbe:
    """The Jobs screen's fresh first page on screen, timed as `jobs_page_bench.PaintProbe`
    times it: rows whose query began after the key, applied to the table, then the first frame
    of the Jobs screen drawn after them (after the key when they changed nothing). Replaces
    `_fresh` for key 2: its `pilot.pause()` waits for an idle CPU (up to 1 s), and a console
    following 10M rows is rarely idle: the late frames it caught were that wait."""

    def __init__(self, paints: Paints) -> None:
        import pgq_console.screens.jobs as jobs_screen
        from pgq_console.widgets.job_table import JobTable

        self.paints = paints
        # id(page.rows) -> (when its query started, the rows). The rows are held: a page whose
        # rows were never applied (a read cut short, a stale message) must not leave its id to
        # another screen's rows (Failures' JobTable) once freed, as a bare id would (that is
        # how this probe first timed Failures' table, which had no frame: no result).
        self.fetch_started: dict[int, tuple[float, Any]] = {}
        self.applied: list[tuple[float, float, bool, Any]] = []  # started, applied, changed, table
        fetch, apply = jobs_screen.fetch_page, JobTable.apply_jobs

        async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            page = await fetch(*args, **kwargs)
            old = started - 60
            for key in [k for k, (at, _) in self.fetch_started.items() if at < old]:
                del self.fetch_started[key]
            self.fetch_started[id(page.rows)] = (started, page.rows)
            return page

        def timed_apply(table: Any, rows: Any, *args: Any, **kwargs: Any) -> None:
            updates = table.version
            apply(table, rows, *args, **kwargs)
            entry = self.fetch_started.get(id(rows))
            if entry is not None and entry[1] is rows:
                del self.fetch_started[id(rows)]
                started = entry[0]
                self.applied.append((started, time.perf_counter(), table.version != updates, table))

        jobs_screen.fetch_page = timed_fetch  # type: ignore[assignment]
        JobTable.apply_jobs = timed_apply  # type: ignore[method-assign]

    async def shown(self, since: float, deadline_s: float = 30.0) -> float:
        deadline = max(since, time.perf_counter()) + deadline_s
        while time.perf_counter() < deadline:
            fresh = [
                (at, changed, t) for started, at, changed, t in self.applied if started >= since
            ]
            if fresh:
                applied, changed, table = fresh[0]
                screen = table.screen
                after = applied if changed else since
                frames = [
                    at
                    for at, s in zip(self.paints, self.paints.screens, strict=True)
                    if at >= after and s() is screen
                ]
                if frames:
                    return max(applied, frames[0]) - since
            await asyncio.sleep(0.002)
        if os.environ.get("SCALE_DEBUG"):
            print(
                "DEBUG nan",
                [
                    (round(a - since, 3), round(b - since, 3), c, id(t.screen), id(t))
                    for a, b, c, t in self.applied
                    if a >= since
                ][:4],
                [
                    (round(at - since, 3), type(s()).__name__, id(s()))
                    for at, s in zip(self.paints, self.paints.screens, strict=True)
                    if at >= since - 1
                ][:20],
                file=sys.stderr,
                flush=True,
            )
        return float("nan")

    def debug_state(self, app: Any, since: float, label: str) -> None:
        if not os.environ.get("SCALE_DEBUG"):
            return
        screen = app.screen
        loop = getattr(screen, "loop", None)
        print(
            f"DEBUG {label} {time.perf_counter() - since:.3f} {type(screen).__name__}",
            getattr(screen, "error", None),
            loop and (loop.failures, round(loop.due_in(), 3), loop._requested, loop._rounds),
            file=sys.stderr,
            flush=True,
        )


def _input(app: Any) -> None:
    """What a key's input event tells the console before its action runs (the bench calls
    actions directly, without Pilot's idle waits): from 12-02 the GC pacer keeps full
    collections out of the next quarter second (pgq_console/gc_pacer.py). Older trees have
    no pacer."""
    pacer = getattr(app, "gc_pacer", None)
    if pacer is not None:
        pacer.note_activity()


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(ob.percentile(values, 50), 3),
        "p95": round(ob.percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


async def _fresh(
    screen: Any, since: float, reads: list[Any], inflight: list[float], paints: list[float]
) -> tuple[float, int]:
    """Seconds from `since` to the first frame after the reads begun since then have all ended
    (one at least) and the messages they posted to `screen` were handled; and how many reads
    began in that time.

    (It took the first frame after Pilot's `pause()` once the first read ended: `pause` waits
    up to 1 s for an idle CPU, which a live console rarely has, and a screen reading twice in
    turn posts its rows after the second read, not the first.)"""
    deadline = since + 30
    while time.perf_counter() < deadline:
        done = [end for start, end in reads if start >= since]
        if done and not [start for start in inflight if start >= since]:
            handled = asyncio.Event()
            screen.call_later(handled.set)  # after the messages already posted to it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handled.wait(), max(0.1, deadline - time.perf_counter()))
            mark = time.perf_counter()
            # Paints are recorded, not signalled: poll them. Rows that read the same as shown
            # change nothing on screen, and Textual then paints nothing: the screen was fresh
            # when the rows were handled (a changed screen paints within a frame or two).
            until = min(deadline, mark + FRESH_PAINT_WAIT_S)
            while not [p for p in paints if p >= mark] and time.perf_counter() < until:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            later = [p for p in paints if p >= mark]
            painted = min(later) if later else mark
            await asyncio.sleep(0.3)  # let the screen's other reads for this key land
            count = len([1 for start, _ in reads if since <= start <= painted + 0.3])
            return painted - since, count
        await asyncio.sleep(0.002)
    return float("nan"), 0


# How long `_fresh` waits for a frame after the rows were handled (see there).
FRESH_PAINT_WAIT_S = 0.25


async def _shown(
    ready: Any, since: float, reads: list[Any], paints: Paints, polled: list[float] | None = None
) -> tuple[float, int]:
    """Seconds from `since` to the first frame drawn while `ready()` held (asked as each frame
    is drawn), and how many reads began in that time.

    For screens that say when they have their data: `_fresh` takes the first frame after
    Pilot's idle wait, and when the data's own frame was drawn during that wait, the next one
    comes with the next poll (the Database screen: 5.1 s measured for 60 ms of reads) or the
    next clock tick (the job detail: 1.01 s for a 22 ms read). Until 12-01 this polled
    `ready()` every 2 ms and took the first frame after the poll saw it: on a busy loop the poll
    runs late and the frame that already showed the data was missed (one frame too late)."""
    deadline = since + 30
    paints.ready = ready
    seen: float | None = None  # when the 2 ms poll saw `ready()`: the timing until 12-01
    try:
        while time.perf_counter() < deadline:
            if seen is None and ready():
                seen = time.perf_counter()
            later = [p for p in paints.ready_at if p >= since]
            after_seen = [p for p in paints if seen is not None and p >= seen]
            if later and (polled is None or after_seen):
                if polled is not None:
                    polled.append(min(after_seen) - since)
                painted = min(later)
                await asyncio.sleep(0.3)  # let the screen's other reads for this key land
                count = len([1 for start, _ in reads if since <= start <= painted + 0.3])
                return painted - since, count
            await asyncio.sleep(0.002)
    finally:
        paints.ready = None
    return float("nan"), 0


async def _jumped(
    app: Any,
    key: str,
    reads: list[Any],
    inflight: list[float],
    paints: Paints,
    jobs_probe: JobsPageProbe,
) -> tuple[float, int]:
    """Key to the first frame with the screen's data: the Jobs page by `JobsPageProbe`, a
    polled screen (it keeps its last result in `data`) by `_shown`, any other by `_fresh`."""
    below = app.screen
    t = time.perf_counter()
    app.action_jump(key)
    if key == "2":
        took = await jobs_probe.shown(t)
        await asyncio.sleep(0.3)  # let the screen's other reads for this key land
        return took, len([1 for start, _ in reads if t <= start <= t + took + 0.3])
    while app.screen is below and time.perf_counter() < t + 5:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    screen = app.screen
    if screen is not below and hasattr(screen, "data"):
        # A polled screen: each reading is a new `data` object, posted when it is complete
        # (not every statement of a reading goes through `Backend.read`: PgQueuer's own
        # catalog queries did not, so `_fresh` saw the old Database screen settled early).
        before = screen.data

        def ready() -> bool:
            error = getattr(getattr(screen, "poll_status", None), "error", None)
            if error and error not in POLL_ERRORS:
                POLL_ERRORS.append(error)  # a failed read is retried after a backoff
            return screen.data is not None and screen.data is not before

        return _traced(key, t, await _shown(ready, t, reads, paints))
    return _traced(key, t, await _fresh(screen, t, reads, inflight, paints))


# With SCALE_KEY_TRACE=1: every read (started, ended, statement head), and each key's reads
# printed (DEBUG lines, on the parent's stderr): which statements a key waited for, in turn or
# at once.
READ_HEADS: list[tuple[float, float, str]] = []


def _traced(key: str, since: float, result: tuple[float, int]) -> tuple[float, int]:
    if os.environ.get("SCALE_KEY_TRACE"):
        took = result[0]
        reads = [
            f"{(a - since) * 1000:.0f}-{(b - since) * 1000:.0f}ms {head}"
            for a, b, head in READ_HEADS
            if since <= a <= since + took + 0.3
        ]
        print(f"DEBUG key {key} {took * 1000:.0f}ms:", " | ".join(reads), file=sys.stderr)
    return result


# What polled screens said went wrong while a key waited for them (reported with the keys).
POLL_ERRORS: list[str] = []


KEYS = ("2", "3", "4", "5", "6", "8", "1")


async def _screens(
    app: Any, pilot: Any, reads: list[Any], inflight: list[float], paints: Paints, repeat: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    jobs_probe = JobsPageProbe(paints)
    for key in KEYS:
        took, statements = await _jumped(app, key, reads, inflight, paints, jobs_probe)
        out[f"key {key}"] = {"s": round(took, 3), "reads": statements}
        await asyncio.sleep(1.0)
    # `SCALE_KEY_ROUNDS` > 1 (`--key-rounds`): every key again, each screen built and visited.
    again: dict[str, list[tuple[float, int]]] = {key: [] for key in KEYS}
    for _ in range(int(os.environ.get("SCALE_KEY_ROUNDS", "1")) - 1):
        for key in KEYS:
            again[key].append(await _jumped(app, key, reads, inflight, paints, jobs_probe))
            await asyncio.sleep(0.5)
    for key, runs in again.items():
        if runs:
            out[f"key {key} again"] = {
                **_summary([took for took, _ in runs]),
                "reads_max": max(n for _, n in runs),
            }
    if POLL_ERRORS:
        out["poll errors"] = POLL_ERRORS[:5]
    if os.environ.get("SCALE_KEYS_ONLY") == "1":
        return out
    jobs: list[float] = []
    for _ in range(repeat):
        app.action_jump("1")
        await asyncio.sleep(1.0)
        t = time.perf_counter()
        app.action_jump("2")
        jobs.append(await jobs_probe.shown(t))
    out["jobs page (key 2)"] = _summary(jobs)
    out["jobs page (key 2), raw s"] = [round(x, 3) for x in jobs]
    await asyncio.sleep(1.0)
    # The screen's own action, as `enter` would call it: Pilot's press() waits up to 1 s for
    # an idle CPU (textual's wait_for_idle), which a console following 10M rows never has.
    # Timed to the first frame after the detail screen has its job (`detail`; see `_shown`).
    jobs_screen = app.screen
    detail: list[float] = []
    detail_polled: list[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        _input(app)  # enter's key event, which calling the action skips
        jobs_screen.action_open()
        took, _ = await _shown(
            lambda: app.screen is not jobs_screen and getattr(app.screen, "detail", None),
            t,
            reads,
            paints,
            detail_polled,
        )
        detail.append(took)
        await asyncio.sleep(0.5)
        if app.screen is not jobs_screen:
            _input(app)  # escape's key event
            await app.screen.dismiss(None)  # escape's action_back, without the idle wait
        await asyncio.sleep(0.5)
    out["job detail (action_open)"] = _summary(detail)
    out["job detail raw s"] = [round(x, 3) for x in detail]
    # As timed until 12-01: the first frame after a 2 ms poll saw the job (one frame late when
    # the poll runs late and the frame that showed it came first).
    out["job detail, old timing (polled)"] = _summary(detail_polled)
    return out


# -- parent -----------------------------------------------------------------------------------


def _take_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    finally:
        path.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))


def extract(ref: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix=f"pgqc-scale-{ref}-"))
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


async def run_side(
    side: str, tree: Path, dsn: str, args: argparse.Namespace, log_path: Path | None
) -> dict[str, Any]:
    out_path = Path(tempfile.mkstemp(prefix=f"pgqc-scale-{side}-", suffix=".json")[1])
    env = dict(
        os.environ,
        PYTHONPATH=str(tree),
        SCALE_WARMUP_S=str(args.warmup),
        SCALE_KEY_ROUNDS=str(args.key_rounds),
        SCALE_KEYS_ONLY="1" if args.keys_only else "0",
    )
    offsets: dict[str, int] = {"launch": ob.log_size(log_path)}
    launched = time.time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "scale_bench.py"),
        "--child",
        "--dsn",
        dsn,
        "--window",
        str(args.window),
        "--launched",
        repr(launched),
        "--out",
        str(out_path),
        *(["--screens"] if not args.skip_screens else []),
        *(["--read-only"] if args.reuse_dsn else []),
        "--repeat",
        str(args.repeat),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    while True:
        line = await proc.stdout.readline()
        if not line:
            break
        text = line.decode(errors="replace").rstrip()
        if text.startswith("PHASE "):
            offsets[text.split()[1]] = ob.log_size(log_path)
            offsets[text.split()[1] + "_t"] = int(time.time())
        elif text.startswith("DEBUG"):
            print(text, file=sys.stderr, flush=True)
        else:
            tail = (tail + [text])[-20:]
    await proc.wait()
    offsets["exit"] = ob.log_size(log_path)
    result: dict[str, Any] = {"side": side, "rc": proc.returncode}
    try:
        result.update(_take_json(out_path))
    except Exception:
        result["output_tail"] = tail
    if log_path is not None and "window-start" in offsets and "window-end" in offsets:
        text = ob.read_log_slice(log_path, offsets["window-start"], offsets["window-end"])
        console = ob.sum_log_durations(text).get(CONSOLE_APP, {"ms": 0.0, "entries": 0, "top": []})
        window = result.get("window_s") or args.window
        result["db_window"] = {
            "ms": console["ms"],
            "statements": console["entries"],
            "core_fraction": round(console["ms"] / 1000 / window, 5) if window else None,
            "top": console["top"][:4],
        }
        text = ob.read_log_slice(log_path, offsets["launch"], offsets["window-start"])
        startup = ob.sum_log_durations(text).get(CONSOLE_APP, {"ms": 0.0, "entries": 0})
        result["db_startup_ms"] = startup["ms"]
    return result


async def reuse(args: argparse.Namespace) -> dict[str, Any]:
    """The screens part only, on a database loaded before (`--reuse-dsn`): no load, no
    traffic, no probes (they write), the console read-only; sides alternate (before, after,
    before, ...) `--rounds` times so a noisy machine hits both alike; locally, then through
    the delay proxy with `--rtt` (0: local only)."""
    results: dict[str, Any] = {"args": vars(args), "load_before": os.getloadavg()}
    trees: dict[str, Path] = {"after": HERE.parent}
    if "before" in args.sides:
        trees["before"] = extract(args.before)
    scenarios = _scenarios(args)
    try:
        for scenario, rtt in scenarios:
            for n in range(args.rounds):
                for side in args.sides:
                    ob.say(f"reuse, {scenario}, round {n + 1}: {side}")
                    if rtt > 0:
                        async with DelayProxy(args.reuse_dsn, rtt) as proxy:
                            r = await run_side(side, trees[side], proxy.dsn, args, None)
                    else:
                        r = await run_side(side, trees[side], args.reuse_dsn, args, None)
                    r["load_avg"] = os.getloadavg()
                    results[f"{scenario} / {side} / {n + 1}"] = r
                    ob.say(json.dumps(r.get("screens", r), default=str)[:3000])
    finally:
        for side, tree in trees.items():
            if side != "after":
                shutil.rmtree(tree, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    return results


async def parent(args: argparse.Namespace) -> dict[str, Any]:
    server = ob.Server(args.dsn)
    server.start()
    results: dict[str, Any] = {"args": vars(args), "load_before": os.getloadavg()}
    dsn = ""
    trees: dict[str, Path] = {"after": HERE.parent}
    try:
        if "before" in args.sides:
            trees["before"] = extract(args.before)
        dsn = await ob.create_database(server.dsn, "scale")
        ob.say(f"loading {args.rows:,} jobs + {args.log_rows:,} log rows")
        results["load"] = await load(dsn, args.rows, args.log_rows)
        ob.say(f"loaded: {results['load']}")
        log_path = server.log_path
        if log_path is not None:
            await ob.admin_execute(
                server.dsn,
                f"ALTER SYSTEM SET log_line_prefix = '{ob.LOG_PREFIX}'",
                "ALTER SYSTEM SET lc_messages = 'C'",
                "SELECT pg_reload_conf()",
            )
            name = dsn.split("?")[0].rsplit("/", 1)[-1]
            await ob.admin_execute(
                server.dsn, f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0'
            )
        stop = asyncio.Event()
        load_task = asyncio.create_task(traffic(dsn, args.rate, stop))
        scenarios = _scenarios(args)
        for scenario, rtt in scenarios:
            for side in args.sides:
                ob.say(f"{scenario}: {side}")
                if rtt > 0:
                    async with DelayProxy(dsn, rtt) as proxy:
                        r = await run_side(side, trees[side], proxy.dsn, args, log_path)
                else:
                    r = await run_side(side, trees[side], dsn, args, log_path)
                r["load_avg"] = os.getloadavg()
                results[f"{scenario} / {side}"] = r
                ob.say(json.dumps(r, default=str)[:1500])
        stop.set()
        results["traffic"] = await asyncio.wait_for(load_task, 30)
    finally:
        if dsn and not args.keep:
            with contextlib.suppress(Exception):
                await ob.drop_database(server.dsn, dsn)
        server.stop()
        for side, tree in trees.items():
            if side != "after":
                shutil.rmtree(tree, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    return results


def _scenarios(args: argparse.Namespace) -> list[tuple[str, float]]:
    """(name, added RTT) of each scenario asked for (`--scenarios`; rtt only with `--rtt`)."""
    scenarios: list[tuple[str, float]] = []
    if "local" in args.scenarios:
        scenarios.append(("local", 0.0))
    if args.rtt > 0 and "rtt" in args.scenarios:
        scenarios.append((f"rtt {args.rtt * 1000:g} ms", args.rtt))
    return scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--log-rows", type=int, default=10_000_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of probes per side")
    parser.add_argument("--rate", type=float, default=20.0, help="background jobs/s (20)")
    parser.add_argument("--rtt", type=float, default=0.05, help="remote scenario RTT (0: none)")
    parser.add_argument("--before", default="8ff1649", help="the commit for the before side")
    parser.add_argument("--sides", default="before,after")
    parser.add_argument("--skip-screens", action="store_true")
    parser.add_argument(
        "--scenarios", default="local,rtt", help="local and/or rtt (the --rtt one): local,rtt"
    )
    parser.add_argument(
        "--key-rounds",
        type=int,
        default=1,
        help="visit every screen's key this many times (later visits: 'key N again')",
    )
    parser.add_argument(
        "--keys-only", action="store_true", help="screens' keys only: no jobs page/detail runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (with --dsn)")
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds after first numbers, before the window"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--reuse-dsn",
        help="a database loaded before (read-only use): the screens part only, no load/traffic",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --reuse-dsn: rounds of sides")
    parser.add_argument("--repeat", type=int, default=8, help="jobs page / detail timings (8)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--read-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--screens", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(
            child(
                args.dsn,
                args.window,
                args.launched,
                args.out,
                args.screens,
                args.read_only,
                args.repeat,
            )
        )
        return
    args.sides = [s for s in args.sides.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if args.reuse_dsn:
        args.window = 0.0  # the probes write: none on a shared database
        args.skip_screens = False
        results = asyncio.run(reuse(args))
    else:
        results = asyncio.run(parent(args))
    text = json.dumps(results, indent=1, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
