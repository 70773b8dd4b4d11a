"""Actions against real PgQueuer workers, and read-only mode proving nothing can be written."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from pgq_console.core import actions, audit
from pgq_console.core.actions import Predicate, ids_predicate
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import DriverKind, Installation
from tests.helpers import backend_for, enqueue
from tests.test_actions_core import hold, statuses


async def test_cancel_of_a_running_job_is_observed_by_the_handler(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    qm = QueueManager(Queries(AsyncpgDriver(connection)))
    started = asyncio.Event()
    observed = asyncio.Event()

    @qm.entrypoint("slow")
    async def slow(job: Job) -> None:
        ctx = qm.get_context(job.id)
        started.set()
        with ctx.cancellation:
            await asyncio.sleep(30)
        observed.set()

    [job_id] = await enqueue(fresh_database, "slow")
    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=1)))
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        await asyncio.wait_for(started.wait(), 15)
        action = actions.cancel(backend, ids_predicate([job_id]))
        preview = await action.preview(backend)
        assert preview.sample[0][2] == "picked"
        result = await actions.execute(backend, action, preview)
        assert result.changed == 1
        await asyncio.wait_for(observed.wait(), 10)  # ctx.cancellation was cancelled
    finally:
        qm.shutdown.set()
        await asyncio.wait_for(task, 20)
        await connection.close()
        await backend.close()


async def test_requeue_and_cancel_racing_a_real_worker_lose_and_double_nothing(
    fresh_database: str,
) -> None:
    """Held jobs are requeued while a worker consumes; queued ones cancelled meanwhile.
    Every job ends exactly once: processed, or cancelled, never both, none lost."""
    held = await enqueue(fresh_database, "work", 60)
    await hold(fresh_database, held)
    processed: list[int] = []
    connection = await asyncpg.connect(fresh_database)
    qm = QueueManager(Queries(AsyncpgDriver(connection)))

    @qm.entrypoint("work", concurrency_limit=4)
    async def work(job: Job) -> None:
        await asyncio.sleep(0.01)
        processed.append(int(job.id))

    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=30), batch_size=5))
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        requeue = actions.requeue(backend, Predicate("job.entrypoint = $1", ("work",), "ep:work"))
        preview = await requeue.preview(backend)
        assert preview.count == 60
        result = await actions.execute(backend, requeue, preview)
        assert result.changed == 60
        # The synthetic table_changed_event wakes the idle worker at once (not after 30 s).
        for _ in range(100):
            if processed:
                break
            await asyncio.sleep(0.05)
        assert processed, "the requeue did not wake the worker"
        cancel = actions.cancel(backend, Predicate("job.entrypoint = $1", ("work",), "ep:work"))
        cancel_preview = await cancel.preview(backend)
        cancelled = await actions.execute(
            backend, cancel, cancel_preview, typed=str(cancel_preview.count)
        )
        for _ in range(200):
            if not await statuses(fresh_database, held):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the worker's log buffer flushes about every 0.1 s
        assert len(processed) == len(set(processed)), "a job ran twice"
        assert set(processed) | set(cancelled.ids) == set(held), "a job was lost"
        # A job running while cancelled may finish its body (cancellation is cooperative), but
        # each job ends exactly once in the log: 'successful' or 'canceled', never both.
        connection2 = await asyncpg.connect(fresh_database)
        terminal = await connection2.fetch(
            "SELECT job_id, array_agg(status::text) AS ends FROM pgqueuer_log "
            "WHERE status IN ('successful', 'canceled') GROUP BY job_id"
        )
        await connection2.close()
        ends = {int(r["job_id"]): list(r["ends"]) for r in terminal}
        assert set(ends) == set(held)
        assert all(len(v) == 1 for v in ends.values()), ends
        assert {i for i, v in ends.items() if v == ["canceled"]} == set(cancelled.ids)
    finally:
        qm.shutdown.set()
        await asyncio.wait_for(task, 20)
        await connection.close()
        await backend.close()


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_read_only_every_action_is_refused_and_nothing_changes(
    fresh_database: str, kind: DriverKind
) -> None:
    ids = await enqueue(fresh_database, "ep", 3)
    await hold(fresh_database, ids[:1])
    before = await statuses(fresh_database, ids)
    backend = await open_backend(kind, fresh_database, Installation(), "ro", (), read_only=True)
    assert isinstance(backend, Backend) and backend.read_only
    try:
        builders = (actions.requeue, actions.cancel, actions.copy)
        for build in builders:
            for predicate in (ids_predicate(ids), Predicate("TRUE", (), "everything")):
                action = build(backend, predicate)
                preview = await action.preview(backend)  # reading is fine
                with pytest.raises(ConsoleError, match="read-only"):
                    await actions.execute(backend, action, preview, typed=str(preview.count))
                # Even a bug that skipped every check: the server refuses the write.
                backend.read_only = False
                try:
                    with pytest.raises(ConsoleError, match="read-only"):
                        await actions.execute(backend, action, preview, typed=str(preview.count))
                finally:
                    backend.read_only = True
        assert await statuses(fresh_database, ids) == before
        connection = await asyncpg.connect(fresh_database)
        assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 3
        await connection.close()
        assert audit.read_records() == []
    finally:
        await backend.close()
