"""A small queue is counted directly; a large one is followed from the log; each switch starts
from an exact count, so the numbers never jump."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
from pgqueuer.models import Job, JobId
from pgqueuer.ports.repository import EntrypointExecutionParameter
from pgqueuer.queries import Queries

from pgq_console.core import depth as depth_module
from pgq_console.core.backend import Backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.overview.pacing import Pacer
from pgq_console.core.overview.tiers import OverviewTiers
from tests.helpers import backend_for as any_backend_for
from tests.helpers import enqueue, truth, wait_for


class HandClock(SystemClock):
    """Monotonic time moved by the test (the picked/held cadence), wall time real."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono


async def tiers_for(dsn: str) -> tuple[Backend, OverviewTiers, HandClock]:
    backend = await any_backend_for(dsn)
    assert isinstance(backend, Backend)
    clock = HandClock()
    tiers = OverviewTiers(
        backend,
        clock,
        Pacer(0.02, clock.monotonic()),
        interval_s=lambda: 2.0,
        on_exact=lambda: None,
    )
    return backend, tiers, clock


def shown(tiers: OverviewTiers) -> dict[str, dict[str, int]]:
    """What the overview would show: per entrypoint, the non-zero depths."""
    tracked = tiers.tracked
    assert tracked is not None
    out = {}
    for entrypoint, d in tracked.depth.items():
        row = {
            "ready": d.ready,
            "deferred": d.deferred,
            "picked": tracked.picked.get(entrypoint, 0),
            "held": tracked.held.get(entrypoint, 0),
        }
        if any(row.values()):
            out[entrypoint] = row
    return out


async def exact(dsn: str) -> dict[str, dict[str, int]]:
    out = {}
    for entrypoint, row in (await truth(dsn)).items():
        values = {k: row.get(k, 0) for k in ("ready", "deferred", "picked", "held")}
        if any(values.values()):
            out[entrypoint] = values
    return out


async def pick(queries: Queries, entrypoints: list[str], n: int) -> list[Job]:
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


async def test_a_small_queue_is_counted_directly_and_exactly(fresh_database: str) -> None:
    """Every read equals the table, also after changes the log does not show (rows written by
    hand), with no log followed; picked and held are read on their own cadence."""
    dsn = fresh_database
    await enqueue(dsn, "a", 20)
    await enqueue(dsn, "b", 5, execute_after=timedelta(hours=1))
    backend, tiers, clock = await tiers_for(dsn)
    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    tracker = tiers.tracker
    try:
        # As the refresher does: the depth, then the split (read by the deferred tier this
        # once: the exact count before the first direct read does not split them).
        await tiers.follow_depth()
        await tiers.read_deferred()
        assert tracker.direct and list(tracker.switches) == ["direct"]
        assert shown(tiers) == await exact(dsn)
        assert tiers.depth_note() is None  # exact

        async def check() -> None:
            clock.mono += 60  # the picked/held cadence is due
            await tiers.follow_depth()
            assert await tiers.read_deferred() == 0.0  # the direct read split them
            assert shown(tiers) == await exact(dsn)

        await enqueue(dsn, "a", 7)
        await enqueue(dsn, "c", 3)
        await check()
        jobs = await pick(queries, ["a", "c"], 10)
        await check()
        done: list[Any] = [(j, "successful", None) for j in jobs[:4]]
        await queries.log_jobs(done + [(j, "failed", None) for j in jobs[4:7]])
        await queries.retry_job(jobs[7], timedelta(0), None)
        await check()
        await queries.requeue_jobs([JobId(j.id) for j in jobs[4:6]])
        await check()
        # A reclaim (picked -> picked) and changes no log row records: a job failed by hand,
        # a job inserted by hand, a held failure deleted by hand.
        await connection.execute(
            "UPDATE pgqueuer SET heartbeat = now() - interval '1 hour' WHERE id = $1", jobs[9].id
        )
        assert jobs[9].id in {j.id for j in await pick(queries, [jobs[9].entrypoint], 100)}
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = $1", jobs[8].id)
        await connection.execute(
            "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', 'by_hand')"
        )
        await connection.execute("DELETE FROM pgqueuer WHERE id = $1", jobs[6].id)
        await check()
        # Without the picked/held cadence due, queued moves and picked/held stay as read.
        await enqueue(dsn, "d", 4)
        await check()
        await pick(queries, ["d"], 2)
        await tiers.follow_depth()
        assert shown(tiers)["d"] == {"ready": 2, "deferred": 0, "picked": 0, "held": 0}
        assert (await exact(dsn))["d"]["picked"] == 2
        await check()
        assert tracker.direct and tracker.deltas == 0 and tracker.resyncs == 1
        assert list(tracker.switches) == ["direct"]
    finally:
        await connection.close()
        await backend.close()


async def test_crossing_the_threshold_follows_the_log_and_falling_back_counts_again(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = fresh_database
    monkeypatch.setattr(depth_module, "FOLLOW_ABOVE", 20)
    monkeypatch.setattr(depth_module, "FOLLOW_BELOW", 10)
    await enqueue(dsn, "a", 12)
    await enqueue(dsn, "b", 2, execute_after=timedelta(hours=1))
    backend, tiers, clock = await tiers_for(dsn)
    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    tracker = tiers.tracker
    try:
        await tiers.follow_depth()
        await tiers.read_deferred()
        assert tracker.direct
        jobs = await pick(queries, ["a"], 2)
        await queries.log_jobs([(jobs[0], "failed", None)])  # a held failure
        clock.mono += 60
        await tiers.follow_depth()
        assert shown(tiers) == await exact(dsn)
        resyncs = tracker.resyncs

        # 10 + 2 queued, 12 more: 24 >= 20. The read that sees it takes an exact count (the log
        # position with it) and shows that: the truth, no jump.
        await enqueue(dsn, "a", 12)
        await tiers.follow_depth()
        assert not tracker.direct and list(tracker.switches) == ["direct", "follow"]
        assert tracker.resyncs == resyncs + 1
        assert tiers.depth_paces is False  # a one-off read, not the pace of the next ones
        assert shown(tiers) == await exact(dsn)
        assert tiers.depth_note() is None
        # From here the log is followed: a change no log row records is not seen.
        deltas = tracker.deltas
        await enqueue(dsn, "a", 3)
        await connection.execute(
            "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', 'by_hand')"
        )
        await tiers.follow_depth()
        assert tracker.deltas == deltas + 1
        assert "by_hand" not in shown(tiers)
        await connection.execute("DELETE FROM pgqueuer WHERE entrypoint = 'by_hand'")
        assert shown(tiers) == await exact(dsn)
        await tiers.read_deferred()  # the split is followed too
        assert shown(tiers)["b"] == (await exact(dsn))["b"]

        # Above FOLLOW_BELOW still: following goes on, no exact count asked for.
        picked = await pick(queries, ["a"], 10)  # 27 - 10 = 17 queued
        await queries.log_jobs([(j, "successful", None) for j in picked])
        await tiers.follow_depth()
        assert not tracker.direct and not tracker.resync_requested
        assert shown(tiers) == await exact(dsn)

        # Under it (17 - 9 = 8): an exact count aside, and with it, direct counts again.
        picked = await pick(queries, ["a"], 9)
        await queries.log_jobs([(j, "successful", None) for j in picked])
        await tiers.follow_depth()
        assert shown(tiers) == await exact(dsn)  # the followed numbers, meanwhile
        await wait_for(lambda: tracker.direct, what="direct counts again")
        assert list(tracker.switches) == ["direct", "follow", "direct"]
        assert shown(tiers) == await exact(dsn)  # the exact count's numbers: the same
        deltas = tracker.deltas
        await enqueue(dsn, "a", 1)
        await tiers.follow_depth()
        assert tracker.deltas == deltas and tracker.direct
        assert shown(tiers) == await exact(dsn)
    finally:
        await tiers.close()
        await connection.close()
        await backend.close()


async def test_a_log_that_jumped_starts_over_with_the_first_look(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More log rows since the last direct read than JUMP_LOG_ROWS: the queue may be huge, so
    it is not counted directly; the first look decides again."""
    dsn = fresh_database
    monkeypatch.setattr(depth_module, "FOLLOW_ABOVE", 20)
    monkeypatch.setattr(depth_module, "FOLLOW_BELOW", 10)
    monkeypatch.setattr(depth_module, "JUMP_LOG_ROWS", 25)
    await enqueue(dsn, "a", 3)
    backend, tiers, _clock = await tiers_for(dsn)
    tracker = tiers.tracker
    try:
        await tiers.follow_depth()
        assert tracker.direct
        await enqueue(dsn, "a", 30)  # 30 log rows at once
        await tiers.follow_depth()
        assert list(tracker.switches) == ["direct", "restart"]
        assert not tracker.direct and tracker.cursor is not None
        assert tracker.resync_reasons.get("log jumped") == 1
        assert shown(tiers) == await exact(dsn)
        # A small one (log rows, few jobs left) comes back to direct counts the same way.
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("DELETE FROM pgqueuer WHERE entrypoint = 'a'")
        finally:
            await connection.close()
        tracker.request_resync()
        await tiers.follow_depth()
        await wait_for(lambda: tracker.direct, what="direct counts again")
        await tiers.follow_depth()
        assert shown(tiers) == await exact(dsn) == {}
    finally:
        await tiers.close()
        await backend.close()


async def test_the_direct_statement_skips_the_count_after_a_jump(fresh_database: str) -> None:
    """The guard is a one-time filter: the queued rows are not read at all."""
    backend, tiers, _clock = await tiers_for(fresh_database)
    try:
        sql = depth_module.direct_sql(backend.installation, picked_held=True)
        connection = await asyncpg.connect(fresh_database)
        try:
            plan = "\n".join(
                r[0] for r in await connection.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", 0, -1)
            )
        finally:
            await connection.close()
        assert "One-Time Filter" in plan
        assert "never executed" in plan
    finally:
        await backend.close()
