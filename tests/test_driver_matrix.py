"""The driver matrix: every driver of the contract runs the same scenario, enqueue
from the form's path, consume into held failures, requeue, consume again, while the overview's
reads run on the same backend; the database is checked after each step. psycopg-sync is the
contract's enqueue-only driver: it enqueues, and a consumer is refused with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from pgq_console.core import actions
from pgq_console.core.actions import Predicate
from pgq_console.core.backend import Backend, Capabilities, SyncPsycopgBackend
from pgq_console.core.clock import SystemClock
from pgq_console.core.consumers import ConsumerSupervisor, parse_consumer_form
from pgq_console.core.enqueue import Enqueuer, EnqueueRequest
from pgq_console.core.errors import ConsoleError
from pgq_console.core.stats import fetch_depth, fetch_windows
from pgq_console.core.target import DriverKind
from tests.helpers import LIVENESS_STRETCH, backend_for

JOBS = 12


async def queue_rows(dsn: str, entrypoint: str) -> dict[int, tuple[str, int]]:
    """id -> (status, attempts) of the entrypoint's rows still in the queue table."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text, attempts FROM pgqueuer WHERE entrypoint = $1", entrypoint
        )
        return {int(r["id"]): (str(r["status"]), int(r["attempts"])) for r in rows}
    finally:
        await connection.close()


async def log_statuses(dsn: str, entrypoint: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT status::text, count(*) AS n FROM pgqueuer_log WHERE entrypoint = $1 GROUP BY 1",
            entrypoint,
        )
        return {str(r["status"]): int(r["n"]) for r in rows}
    finally:
        await connection.close()


async def until(check: Callable[[], object], within: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within * LIVENESS_STRETCH
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.05)


async def consume(
    supervisor: ConsumerSupervisor,
    backend: Backend,
    entrypoint: str,
    handler: str,
    finished: Callable[[], Awaitable[bool]],
) -> None:
    """Run a consumer until the database shows `finished`, then stop it gracefully."""
    spec = parse_consumer_form(
        {"handler": handler, "entrypoints": entrypoint, "on_failure": "hold", "batch_size": "5"}
    )
    consumer = await supervisor.start(backend, spec)
    await until(finished)
    supervisor.stop(consumer.id)
    assert await supervisor.wait(consumer.id, within=30)


@pytest.mark.parametrize(
    "kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG], ids=str
)
async def test_enqueue_consume_requeue_on_every_async_driver(
    fresh_database: str, kind: DriverKind
) -> None:
    entrypoint = f"matrix_{kind.name.lower()}"
    backend = await backend_for(fresh_database, kind)
    assert isinstance(backend, Backend)
    parallel = 2 if kind is DriverKind.ASYNCPG_POOL else 1
    assert backend.capabilities == Capabilities(parallel_enqueue=parallel)
    supervisor = ConsumerSupervisor({}, SystemClock())
    stop_reading = asyncio.Event()
    read_errors: list[Exception] = []

    async def overview() -> None:  # the overview refreshing on the same backend throughout
        while not stop_reading.is_set():
            try:
                await fetch_depth(backend)
                await fetch_windows(backend)
            except Exception as exc:
                read_errors.append(exc)
            await asyncio.sleep(0.01)

    reader = asyncio.ensure_future(overview())
    try:
        # 1. Enqueue, as the form does: every reported id is a queued row.
        result = await Enqueuer(backend, batch_size=5).enqueue(
            EnqueueRequest(entrypoint=entrypoint, payload=b"{}", copies=JOBS)
        )
        assert result.error is None and len(result.ids) == JOBS
        assert await queue_rows(fresh_database, entrypoint) == {
            i: ("queued", 0) for i in result.ids
        }

        # 2. A consumer whose handler fails holds every job.
        async def all_held() -> bool:
            rows = await queue_rows(fresh_database, entrypoint)
            return {status for status, _ in rows.values()} == {"failed"}

        await consume(supervisor, backend, entrypoint, "fail", all_held)
        rows = await queue_rows(fresh_database, entrypoint)
        assert set(rows) == set(result.ids)
        assert {status for status, _ in rows.values()} == {"failed"}

        # 3. Requeue the held failures: queued again, attempts reset, logged 'queued'.
        action = actions.requeue(
            backend, Predicate("job.entrypoint = $1", (entrypoint,), entrypoint)
        )
        preview = await action.preview(backend)
        assert preview.count == JOBS
        applied = await actions.execute(backend, action, preview, typed=str(JOBS))
        assert applied.changed == JOBS
        assert await queue_rows(fresh_database, entrypoint) == {
            i: ("queued", 0) for i in result.ids
        }

        # 4. A no-op consumer finishes them: the queue is empty, the log has them all.
        await consume(
            supervisor, backend, entrypoint, "noop", lambda: _empty(fresh_database, entrypoint)
        )
        assert (await log_statuses(fresh_database, entrypoint)).get("successful") == JOBS

        stop_reading.set()
        await asyncio.wait_for(reader, 30)
        assert read_errors == []
        # The shared connection is still healthy.
        assert (await asyncio.wait_for(fetch_depth(backend), 10)).depth == {}
    finally:
        stop_reading.set()
        supervisor.close()
        await backend.close()


async def _empty(dsn: str, entrypoint: str) -> bool:
    return await queue_rows(dsn, entrypoint) == {}


async def test_psycopg_sync_enqueues_and_refuses_consumers(fresh_database: str) -> None:
    entrypoint = "matrix_psycopg_sync"
    backend = await backend_for(fresh_database, DriverKind.PSYCOPG_SYNC)
    assert isinstance(backend, SyncPsycopgBackend)
    supervisor = ConsumerSupervisor({}, SystemClock())
    try:
        result = await Enqueuer(backend, batch_size=5).enqueue(
            EnqueueRequest(entrypoint=entrypoint, copies=JOBS)
        )
        assert result.error is None and len(result.ids) == JOBS
        assert await queue_rows(fresh_database, entrypoint) == {
            i: ("queued", 0) for i in result.ids
        }
        with pytest.raises(ConsoleError) as refused:
            await supervisor.start(
                backend, parse_consumer_form({"handler": "noop", "entrypoints": entrypoint})
            )
        assert "\n" not in str(refused.value)
        assert len(await queue_rows(fresh_database, entrypoint)) == JOBS  # nothing consumed
        # What it cannot do it says up front, and refuses with the reason if asked anyway.
        assert backend.capabilities == Capabilities(
            can_read=False, can_listen=False, can_run_consumers=False
        )
        for attempt in (
            lambda: backend.read("SELECT 1"),
            lambda: backend.new_connection(),
            lambda: backend.listen(lambda event: None),
        ):
            with pytest.raises(ConsoleError, match="psycopg-sync can only enqueue"):
                await attempt()
        depth = await backend.queue_size()
        assert sum(stat.count for stat in depth if stat.entrypoint == entrypoint) == JOBS
    finally:
        supervisor.close()
        await backend.close()
