"""Reclaim against real PgQueuer workers: a worker process is SIGKILLed mid-job, its jobs are
reclaimed through the guarded action, and another worker completes each job exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from pgq_console.core import actions
from pgq_console.core.backend import Backend
from pgq_console.core.workers import ReclaimAction, fetch_workers
from tests.helpers import backend_for, enqueue

# A worker that records each start in `executions`, then works "forever" (until killed).
DOOMED_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main(dsn):
        connection = await asyncpg.connect(dsn)
        marks = await asyncpg.create_pool(dsn, min_size=1, max_size=5)  # handlers run at once
        qm = QueueManager(Queries(AsyncpgDriver(connection)))

        @qm.entrypoint("slow")
        async def slow(job):
            await marks.execute(
                "INSERT INTO executions (job_id, worker) VALUES ($1, 'doomed')", job.id
            )
            await asyncio.sleep(3600)

        await qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=10)

    asyncio.run(main(sys.argv[1]))
    """
)


async def _executions(dsn: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT job_id, worker FROM executions ORDER BY job_id")
        return [(int(r["job_id"]), str(r["worker"])) for r in rows]
    finally:
        await connection.close()


async def _sql(dsn: str, statement: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


async def _wait_for(predicate: object, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.1)


async def test_killed_worker_jobs_are_reclaimed_and_complete_exactly_once(
    fresh_database: str,
) -> None:
    dsn = fresh_database
    await _sql(dsn, "CREATE TABLE executions (job_id bigint, worker text)")
    ids = await enqueue(dsn, "slow", 5)

    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DOOMED_WORKER,
        dsn,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def all_started() -> bool:
            return len(await _executions(dsn)) == 5

        await _wait_for(all_started)
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), 10)
    assert doomed.returncode == -signal.SIGKILL

    picked = await _sql(dsn, "SELECT id, queue_manager_id::text AS qm FROM pgqueuer")
    assert sorted(r["id"] for r in picked) == sorted(ids)
    (dead_worker,) = {r["qm"] for r in picked}

    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    try:
        await asyncio.sleep(1.5)  # heartbeats are frozen: older than the 1 s threshold now
        snapshot = await fetch_workers(backend, timedelta(seconds=1))
        (worker,) = snapshot.workers
        assert worker.queue_manager_id == dead_worker and worker.picked == 5 and worker.stale == 5
        assert {job.id for job in snapshot.stale_of(dead_worker)} == set(ids)

        action = ReclaimAction.for_worker(backend, dead_worker, timedelta(seconds=1))
        preview = await action.preview(backend)
        assert preview.count == 5 and set(preview.ids) == set(ids)

        # Between preview and commit, one job's worker "beats" again: the re-check skips it.
        revived = ids[0]
        await _sql(dsn, "UPDATE pgqueuer SET heartbeat = now() WHERE id = $1", revived)
        result = await actions.execute(backend, action, preview)
        assert result.previewed == 5 and result.changed == 4
        assert revived not in result.ids

        states = await _sql(dsn, "SELECT id, status::text AS s FROM pgqueuer ORDER BY id")
        assert [(r["id"], r["s"]) for r in states] == [
            (i, "picked" if i == revived else "queued") for i in sorted(ids)
        ]

        # A live worker that never re-picks stale jobs on its own (1 h heartbeat timeout) and
        # polls only once a minute: it takes the 4 queued jobs, then idles.
        survivor = asyncio.create_task(_run_survivor(dsn, expected=5))

        async def four_done() -> bool:
            return len([r for r in await _executions(dsn) if r[1] == "survivor"]) == 4

        await _wait_for(four_done)
        # Once the revived job is stale again, a second reclaim gets it, and its NOTIFY wakes
        # the idle worker long before its one-minute poll.
        await asyncio.sleep(1.2)
        again = ReclaimAction.for_worker(backend, dead_worker, timedelta(seconds=1))
        second = await actions.execute(backend, again, await again.preview(backend))
        assert second.ids == (revived,)
        await asyncio.wait_for(survivor, timeout=30)
        logged = await _sql(
            dsn,
            "SELECT job_id FROM pgqueuer_log WHERE status = 'queued' AND job_id = ANY($1)"
            " GROUP BY job_id HAVING count(*) = 2",
            ids,
        )
        assert len(logged) == 5  # enqueued once, reclaimed once
    finally:
        await backend.close()

    successful = await _sql(
        dsn,
        "SELECT job_id, count(*) AS n FROM pgqueuer_log WHERE status = 'successful'"
        " GROUP BY job_id",
    )
    assert {r["job_id"]: r["n"] for r in successful} == dict.fromkeys(ids, 1)
    runs = await _executions(dsn)
    assert sorted(job for job, who in runs if who == "survivor") == sorted(ids)
    assert await _sql(dsn, "SELECT id FROM pgqueuer") == []


async def _run_survivor(dsn: str, expected: int) -> None:
    connection = await asyncpg.connect(dsn)
    marks = await asyncpg.create_pool(dsn, min_size=1, max_size=5)  # handlers run at once
    qm = QueueManager(Queries(AsyncpgDriver(connection)))
    done = 0

    @qm.entrypoint("slow")
    async def slow(job: Job) -> None:
        nonlocal done
        await marks.execute(
            "INSERT INTO executions (job_id, worker) VALUES ($1, 'survivor')", job.id
        )
        done += 1
        if done >= expected:
            qm.shutdown.set()

    try:
        await asyncio.wait_for(
            qm.run(
                dequeue_timeout=timedelta(seconds=60),
                batch_size=10,
                heartbeat_timeout=timedelta(hours=1),
            ),
            timeout=90,
        )
    finally:
        await connection.close()
        await marks.close()
