"""The log-following depth tracker equals an exact count after every kind of transition."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueManagerId
from pgqueuer.models import Job, JobId
from pgqueuer.queries import Queries

from pgq_console.core import depth as depth_module
from pgq_console.core.backend import Backend
from pgq_console.core.depth import DepthTracker
from tests.helpers import backend_for as any_backend_for
from tests.helpers import enqueue, truth


async def backend_for(dsn: str) -> Backend:
    backend = await any_backend_for(dsn)
    assert isinstance(backend, Backend)
    return backend


def _tracked(tracker: DepthTracker) -> dict[str, dict[str, int]]:
    reading = tracker.reading(None)
    out: dict[str, dict[str, int]] = {}
    for entrypoint, d in reading.depth.items():
        row = {
            "queued": d.ready + d.deferred,
            "picked": reading.picked[entrypoint],
            "held": reading.held[entrypoint],
        }
        if any(row.values()):
            out[entrypoint] = row
    return out


async def _exact(dsn: str) -> dict[str, dict[str, int]]:
    out = {}
    for entrypoint, row in (await truth(dsn)).items():
        values = {
            "queued": row.get("ready", 0) + row.get("deferred", 0),
            "picked": row.get("picked", 0),
            "held": row.get("held", 0),
        }
        if any(values.values()):
            out[entrypoint] = values
    return out


async def _pick(queries: Queries, entrypoints: list[str], n: int) -> list[Job]:
    from pgqueuer.domain.types import QueueEntrypoint
    from pgqueuer.ports.repository import EntrypointExecutionParameter

    params = {
        QueueEntrypoint(e): EntrypointExecutionParameter(concurrency_limit=0) for e in entrypoints
    }
    return await queries.dequeue(
        batch_size=n,
        entrypoints=params,
        queue_manager_id=QueueManagerId(uuid.uuid4()),
        global_concurrency_limit=None,
        heartbeat_timeout=timedelta(seconds=30),
    )


async def test_follows_every_transition(fresh_database: str) -> None:
    dsn = fresh_database
    backend = await backend_for(dsn)
    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    tracker = DepthTracker(backend.installation)
    try:
        await enqueue(dsn, "a", 20)
        await enqueue(dsn, "b", 5, execute_after=timedelta(hours=1))
        await tracker.resync(backend)
        assert _tracked(tracker) == await _exact(dsn)

        async def check() -> None:
            await tracker.advance(backend)
            await tracker.refresh_deferred(backend)
            assert not tracker.resync_requested
            assert _tracked(tracker) == await _exact(dsn)

        await enqueue(dsn, "a", 7)
        await enqueue(dsn, "c", 3)  # a new entrypoint
        await check()

        jobs = await _pick(queries, ["a", "c"], 10)
        assert len(jobs) == 10
        await check()

        # Complete some, hold some as failed (on_failure="hold"), retry one.
        done: list[Any] = [(j, "successful", None) for j in jobs[:4]]
        held = [(j, "failed", None) for j in jobs[4:7]]
        await queries.log_jobs(done + held)
        await queries.retry_job(jobs[7], timedelta(0), None)
        await check()

        # Requeue held failures (failed -> queued), cancel queued and picked jobs.
        await queries.requeue_jobs([JobId(j.id) for j in jobs[4:6]])
        await check()
        queued_ids = [
            JobId(r["id"])
            for r in await connection.fetch(
                "SELECT id FROM pgqueuer WHERE status = 'queued' AND entrypoint = 'a' LIMIT 3"
            )
        ]
        await queries.mark_job_as_cancelled([*queued_ids, JobId(jobs[8].id)])
        await check()

        # A reclaim: a picked job whose heartbeat is old is picked again (picked -> picked).
        await connection.execute(
            "UPDATE pgqueuer SET heartbeat = now() - interval '1 hour' WHERE id = $1", jobs[9].id
        )
        again = await _pick(queries, [jobs[9].entrypoint], 100)
        assert jobs[9].id in {j.id for j in again}
        await check()

        # Deleting queued jobs of one entrypoint is logged ('deleted').
        await queries.clear_queue("c")
        await check()
        assert tracker.resyncs == 1  # all of the above without a single exact re-count
    finally:
        await connection.close()
        await backend.close()


async def test_out_of_order_commit_is_counted_once(fresh_database: str) -> None:
    """A log row whose transaction commits after a later row's is still read, exactly once."""
    dsn = fresh_database
    backend = await backend_for(dsn)
    slow = await asyncpg.connect(dsn)
    tracker = DepthTracker(backend.installation)
    try:
        await tracker.resync(backend)
        transaction = slow.transaction()
        await transaction.start()
        await Queries(AsyncpgDriver(slow)).enqueue("late", b"x")  # takes a lower log id
        await enqueue(dsn, "early", 2)  # commits first, with higher ids
        await tracker.advance(backend)
        assert (
            _tracked(tracker)
            == await _exact(dsn)
            == {"early": {"queued": 2, "picked": 0, "held": 0}}
        )
        await transaction.commit()
        await tracker.advance(backend)
        await tracker.advance(backend)  # read again: nothing twice
        assert _tracked(tracker) == await _exact(dsn)
        assert _tracked(tracker)["late"]["queued"] == 1
    finally:
        await slow.close()
        await backend.close()


async def test_what_the_log_misses_asks_for_an_exact_count(fresh_database: str) -> None:
    dsn = fresh_database
    backend = await backend_for(dsn)
    tracker = DepthTracker(backend.installation)
    connection = await asyncpg.connect(dsn)
    try:
        await enqueue(dsn, "a", 5)
        await tracker.resync(backend)
        # Rows deleted by hand: no log rows, and the log was emptied too (retention).
        await connection.execute("DELETE FROM pgqueuer_log")
        await connection.execute("DELETE FROM pgqueuer")
        await tracker.advance(backend)
        assert tracker.resync_requested
        await tracker.resync(backend)
        assert _tracked(tracker) == await _exact(dsn) == {}
    finally:
        await connection.close()
        await backend.close()


async def test_first_look_caps_and_says_so(fresh_database: str, monkeypatch: Any) -> None:
    dsn = fresh_database
    monkeypatch.setattr(depth_module, "FIRST_LOOK_CAP", 10)
    backend = await backend_for(dsn)
    tracker = DepthTracker(backend.installation)
    try:
        await enqueue(dsn, "big", 25)
        await enqueue(dsn, "small", 3)
        await tracker.first_look(backend)
        reading = tracker.reading(None)
        assert reading.capped == {"big"} and not reading.exact and not reading.held_known
        assert reading.depth["big"].ready == 10 and reading.depth["small"].ready == 3
        await tracker.resync(backend)
        reading = tracker.reading(None)
        assert reading.exact and reading.capped == frozenset()
        assert reading.depth["big"].ready == 25
    finally:
        await backend.close()


async def test_first_look_reads_a_bounded_number_of_picked_jobs(
    fresh_database: str, monkeypatch: Any
) -> None:
    """Picked rows lie one per heap page (100,000 of them were 0.45 s of a 0.49 s first look
    at 10M rows): the first look reads up to a cap of them and says the picked counts are lower
    bounds until the exact count; under the cap they are exact."""
    dsn = fresh_database
    monkeypatch.setattr(depth_module, "FIRST_LOOK_PICKED_CAP", 4)
    backend = await backend_for(dsn)
    tracker = DepthTracker(backend.installation)
    connection = await asyncpg.connect(dsn)
    try:
        await enqueue(dsn, "a", 5)
        await enqueue(dsn, "b", 5)
        queries = Queries(AsyncpgDriver(connection))
        await _pick(queries, ["a", "b"], 3)
        await tracker.first_look(backend)
        under = tracker.reading(None)
        assert not under.picked_capped and sum(under.picked.values()) == 3

        await _pick(queries, ["a", "b"], 4)  # 7 picked now, over the cap of 4
        await tracker.first_look(backend)
        capped = tracker.reading(None)
        assert capped.picked_capped
        assert sum(capped.picked.values()) == 4  # the first 4 read, no more
        await tracker.resync(backend)
        exact = tracker.reading(None)
        assert not exact.picked_capped and exact.exact
        assert sum(exact.picked.values()) == 7
        assert _tracked(tracker) == await _exact(dsn)
    finally:
        await connection.close()
        await backend.close()


async def test_below_zero_on_first_look_numbers_asks_for_no_second_exact_count(
    fresh_database: str, monkeypatch: Any
) -> None:
    """A job finishing whose pick the capped first look did not count takes its entrypoint's
    picked count below zero: expected of lower bounds, and the exact count under way corrects
    it, so no second one is asked for (at 10M rows each took 4-5 s); after the exact count a
    count below zero still asks for one (the log missed something)."""
    dsn = fresh_database
    monkeypatch.setattr(depth_module, "FIRST_LOOK_PICKED_CAP", 1)
    backend = await backend_for(dsn)
    tracker = DepthTracker(backend.installation)
    connection = await asyncpg.connect(dsn)
    try:
        await enqueue(dsn, "a", 3)
        queries = Queries(AsyncpgDriver(connection))
        picked = await _pick(queries, ["a"], 3)
        await tracker.first_look(backend)
        assert tracker.reading(None).picked_capped
        await queries.log_jobs([(job, "successful", None) for job in picked])
        await tracker.advance(backend)
        assert tracker.reading(None).picked["a"] == 0  # 1 - 3, held at zero
        assert "below zero" not in tracker.resync_reasons

        # The log says job 999 was picked, the table never had it (a hand-made row): the exact
        # count has no such pick, and its end in the log takes picked below zero.
        log = "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint) VALUES "
        await connection.execute(log + "(999, 'picked', 0, 'a')")
        await tracker.resync(backend)
        await connection.execute(log + "(999, 'successful', 0, 'a')")
        await tracker.advance(backend)
        assert tracker.resync_reasons.get("below zero") == 1
        assert tracker.resync_requested
    finally:
        await connection.close()
        await backend.close()


async def test_an_unlogged_change_shows_as_an_impossible_transition(fresh_database: str) -> None:
    """A job failed by hand (no log row) then requeued logs queued -> queued: count again."""
    dsn = fresh_database
    backend = await backend_for(dsn)
    tracker = DepthTracker(backend.installation)
    connection = await asyncpg.connect(dsn)
    try:
        ids = await enqueue(dsn, "a", 2)
        await tracker.resync(backend)
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = ANY($1)", ids)
        await Queries(AsyncpgDriver(connection)).requeue_jobs([JobId(i) for i in ids])
        await tracker.advance(backend)
        assert tracker.resync_requested
        await tracker.resync(backend)
        assert _tracked(tracker) == await _exact(dsn)
    finally:
        await connection.close()
        await backend.close()
