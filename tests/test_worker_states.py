"""Worker states (busy / idle / dead) from heartbeats and picked jobs, with real PgQueuer workers:
one killed with SIGKILL mid-job shows dead, a healthy consumer between short jobs stays busy,
and the summary never counts a dead worker as busy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.widgets import Static

from pgq_console.core.clock import SystemClock
from pgq_console.core.workers import (
    BUSY_GRACE,
    WorkerMemory,
    WorkerRow,
    WorkersSnapshot,
    WorkerState,
)
from pgq_console.screens.workers import WorkersScreen
from pgq_console.widgets.live_table import LiveTable
from tests.helpers import LIVENESS_STRETCH, enqueue, wait_until
from tests.screens_support import console, open_screen, run_sql, until

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STALE = timedelta(seconds=90)


def snapshot(*workers: WorkerRow) -> WorkersSnapshot:
    return WorkersSnapshot(T0, STALE, workers, (), 0)


def holding(worker: str, heartbeat: datetime) -> WorkerRow:
    return WorkerRow(worker, ("e",), 1, 0, heartbeat, heartbeat)


def state_of(merged: WorkersSnapshot, worker: str, now: datetime) -> WorkerState:
    (row,) = [w for w in merged.workers if w.queue_manager_id == worker]
    return row.state(now, STALE)


def test_between_short_jobs_a_worker_stays_busy_then_goes_idle() -> None:
    memory = WorkerMemory()
    assert state_of(memory.merge(snapshot(holding("w", T0)), T0), "w", T0) is WorkerState.BUSY
    # Next reads find it holding nothing (between jobs): busy, not a flicker to idle.
    later = T0 + timedelta(seconds=5)
    assert state_of(memory.merge(snapshot(), later), "w", later) is WorkerState.BUSY
    quiet = T0 + BUSY_GRACE + timedelta(seconds=1)
    assert state_of(memory.merge(snapshot(), quiet), "w", quiet) is WorkerState.IDLE


def test_a_dead_worker_whose_jobs_were_taken_over_stays_dead() -> None:
    memory = WorkerMemory()
    now = T0 + timedelta(minutes=3)
    merged = memory.merge(snapshot(holding("w", T0)), now)
    assert state_of(merged, "w", now) is WorkerState.DEAD
    # Another worker re-picked its stale jobs: it holds nothing now, but it did not come back.
    after = now + timedelta(seconds=40)
    assert state_of(memory.merge(snapshot(), after), "w", after) is WorkerState.DEAD


def test_a_worker_that_finished_is_not_dead_when_the_next_read_comes_late() -> None:
    """Seen holding a fresh job, then holding nothing at a read that comes after more than the
    threshold (a slow read on a starved machine): it finished its job, it did not die."""
    memory = WorkerMemory()
    assert state_of(memory.merge(snapshot(holding("w", T0)), T0), "w", T0) is WorkerState.BUSY
    late = T0 + STALE + timedelta(seconds=5)
    merged = memory.merge(snapshot(), late)
    assert state_of(merged, "w", late) is WorkerState.IDLE  # nothing for over BUSY_GRACE
    (row,) = merged.workers
    assert not row.gone_dead


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main(dsn, entrypoint, seconds):
        connection = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(connection)))

        @qm.entrypoint(entrypoint)
        async def work(job):
            await asyncio.sleep(float(seconds))

        await qm.run(
            dequeue_timeout=timedelta(seconds=0.5),
            batch_size=1,
            heartbeat_timeout=timedelta(seconds=2),
        )

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def start_worker(dsn: str, entrypoint: str, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        dsn,
        entrypoint,
        str(seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def holder_of(dsn: str, entrypoint: str) -> str | None:
    rows = await run_sql(
        dsn,
        "SELECT queue_manager_id::text AS qm FROM pgqueuer WHERE status = 'picked' "
        "AND entrypoint = $1",
        entrypoint,
    )
    return str(rows[0]["qm"]) if rows else None


async def test_killed_worker_is_dead_healthy_one_stays_busy(fresh_database: str) -> None:
    dsn = fresh_database
    doomed = await start_worker(dsn, "export", 3600)
    healthy = await start_worker(dsn, "email", 0.3)
    feeding: asyncio.Task[Any] | None = None
    try:
        await enqueue(dsn, "export", 1)
        # Twenty 0.3 s jobs: the healthy worker holds one for seconds, not for one 0.3 s window
        # the poll below could miss on a busy machine (then it never saw both picked).
        await enqueue(dsn, "email", 20)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60 * LIVENESS_STRETCH
        while (await holder_of(dsn, "export")) is None:
            assert loop.time() < deadline, "the doomed worker never picked its job"
            await asyncio.sleep(0.05)
        # Beside a CPU hog the doomed worker can take longer to start than the healthy one takes
        # for all twenty: keep some queued until the healthy one is seen holding one.
        while (await holder_of(dsn, "email")) is None:
            assert loop.time() < deadline, "the healthy worker never picked a job"
            queued = await run_sql(
                dsn,
                "SELECT count(*) AS n FROM pgqueuer WHERE status = 'queued' AND entrypoint = $1",
                "email",
            )
            if not queued[0]["n"]:
                await enqueue(dsn, "email", 20)
            await asyncio.sleep(0.05)
        dead_id = await holder_of(dsn, "export")
        healthy_id = await holder_of(dsn, "email")
        os.kill(doomed.pid, signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), 10)

        async def feed() -> None:  # short jobs with gaps: most reads find it holding nothing
            while True:
                await asyncio.sleep(1.5)
                await enqueue(dsn, "email", 1)

        feeding = asyncio.create_task(feed())
        app = console(dsn, clock=SystemClock())
        async with app.run_test(size=(120, 30)) as pilot:
            screen = await open_screen(pilot, "4", WorkersScreen)
            screen.stale_after = timedelta(seconds=4)  # the healthy worker beats every 0.25 s
            screen.loop.set_interval(0.5)
            screen.loop.request_refresh()
            table = screen.query_one("#workers-table", LiveTable)

            def state(worker: str | None) -> str:
                try:
                    return str(table.get_cell(str(worker), "state").plain)
                except Exception:
                    return ""

            await until(pilot, lambda: state(dead_id) == "DEAD", within=60)
            # A worker is known once a read finds it holding a job (PgQueuer lists none): a
            # burst keeps it holding one for seconds now that the screen reads every 0.5 s (on
            # a starved machine the first twenty can be done before the screen's first read).
            await enqueue(dsn, "email", 20)
            try:
                await wait_until(pilot, lambda: state(healthy_id) == "busy", within=60)
            except AssertionError as exc:
                held = await holder_of(dsn, "email")
                raise AssertionError(
                    f"{exc}; the healthy worker shows {state(healthy_id)!r}, holds {held!r}"
                ) from None
            seen: list[str] = []
            summaries: list[str] = []
            last = screen.data
            while len(seen) < 8:
                previous = last
                await until(pilot, lambda: screen.data is not previous, within=30)  # noqa: B023
                last = screen.data
                await pilot.pause()
                seen.append(state(healthy_id))
                summaries.append(str(screen.query_one("#workers-summary", Static).render()))
                assert state(dead_id) == "DEAD"
            assert seen == ["busy"] * 8, seen
            assert all("1 busy, 0 idle" in s and "1 dead" in s for s in summaries), summaries
    finally:
        if feeding is not None:
            feeding.cancel()
        for process in (doomed, healthy):
            if process.returncode is None:
                process.kill()
                await process.wait()


def test_workers_past_a_capped_read_are_not_taken_for_idle_ones() -> None:
    """A read listing some of the workers holding jobs (its limit): the others are not
    'finished' (idle), they are past the limit; listed again when the read is complete."""
    memory = WorkerMemory()
    memory.merge(snapshot(holding("w1", T0), holding("w2", T0)), T0)
    later = T0 + BUSY_GRACE + timedelta(seconds=5)
    capped = WorkersSnapshot(T0, STALE, (holding("w1", later),), (), 0, holding_total=2)
    merged = memory.merge(capped, later)
    assert [w.queue_manager_id for w in merged.workers] == ["w1"]
    assert {w.queue_manager_id for w in memory.known()} == {"w1", "w2"}
    # Complete again, w2 holding nothing any more: now it is the idle one it is.
    merged = memory.merge(snapshot(holding("w1", later)), later)
    assert state_of(merged, "w2", later) is WorkerState.IDLE
