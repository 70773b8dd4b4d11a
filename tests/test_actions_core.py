"""core/actions.py against real PostgreSQL: preview, confirm, one transaction, re-check, audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from pgq_console.core import actions, audit
from pgq_console.core.actions import Predicate, ids_predicate
from pgq_console.core.backend import Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import DriverKind
from tests.helpers import backend_for, enqueue


async def hold(dsn: str, ids: list[int], message: str = "boom") -> None:
    """Mark jobs held as failed the way a worker with on_failure='hold' does (log_jobs)."""
    from pgqueuer.domain.models import TracebackRecord
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        jobs = [j for j in await queries.browse_queue(limit=10_000) if j.id in set(ids)]
        await queries.log_jobs(
            [
                (
                    job,
                    "failed",
                    TracebackRecord(
                        job_id=job.id,
                        timestamp=job.created,
                        exception_type="ValueError",
                        exception_message=message,
                        traceback="Traceback (most recent call last):\nValueError: " + message,
                        additional_context=None,
                    ),
                )
                for job in jobs
            ]
        )
    finally:
        await connection.close()


async def statuses(dsn: str, ids: list[int]) -> dict[int, str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text FROM pgqueuer WHERE id = ANY($1::bigint[])", ids
        )
        return {int(r["id"]): str(r["status"]) for r in rows}
    finally:
        await connection.close()


async def log_statuses(dsn: str, job_id: int) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT status::text FROM pgqueuer_log WHERE job_id = $1 ORDER BY id", job_id
        )
        return [str(r["status"]) for r in rows]
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_requeue_marked_jobs_previews_then_changes_exactly_those(
    fresh_database: str, kind: DriverKind
) -> None:
    ids = await enqueue(fresh_database, "send_email", 4)
    await hold(fresh_database, ids[:3])
    backend = await backend_for(fresh_database, kind)
    assert isinstance(backend, Backend)
    try:
        # The marked set includes a queued job: the status predicate leaves it out.
        action = actions.requeue(backend, ids_predicate([ids[0], ids[1], ids[3]]))
        preview = await action.preview(backend)
        assert preview.count == 2 and preview.ids == (ids[0], ids[1])
        assert preview.columns[0] == "id" and preview.sample[0][0] == str(ids[0])
        assert "UPDATE pgqueuer" in preview.statement and "SKIP LOCKED" in preview.statement
        assert "held (failed)" in preview.predicate
        result = await actions.execute(backend, action, preview, reason="fixed SMTP")
        assert (result.previewed, result.changed) == (2, 2)
        assert result.summary == "requeue: previewed 2, changed 2"
        assert await statuses(fresh_database, ids) == {
            ids[0]: "queued",
            ids[1]: "queued",
            ids[2]: "failed",
            ids[3]: "queued",
        }
        assert await log_statuses(fresh_database, ids[0]) == ["queued", "failed", "queued"]
        [record] = audit.read_records()
        assert record["action"] == "requeue" and record["job_ids"] == [ids[0], ids[1]]
        assert record["reason"] == "fixed SMTP" and record["count"] == 2
        assert record["user"] and record["host"] and record["time"]
    finally:
        await backend.close()


async def test_the_audit_file_lives_under_the_isolated_state_dir(tmp_path: Path) -> None:
    assert str(audit.audit_log_path()).startswith(str(tmp_path / "state"))


async def test_apply_rechecks_the_predicate_rows_changed_since_the_preview_are_left_alone(
    fresh_database: str,
) -> None:
    ids = await enqueue(fresh_database, "ep", 3)
    await hold(fresh_database, ids)
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("job.entrypoint = $1", ("ep",), "ep:ep"))
        preview = await action.preview(backend)
        assert preview.count == 3
        # Meanwhile: one job requeued elsewhere, one deleted.
        connection = await asyncpg.connect(fresh_database)
        await connection.execute("UPDATE pgqueuer SET status = 'queued' WHERE id = $1", ids[0])
        await connection.execute("DELETE FROM pgqueuer WHERE id = $1", ids[1])
        await connection.close()
        result = await actions.execute(backend, action, preview)
        assert (result.previewed, result.changed, result.ids) == (3, 1, (ids[2],))
        assert "left alone" in result.summary
        # The externally requeued job was not touched twice: one log row only from us.
        assert (await log_statuses(fresh_database, ids[2]))[-1] == "queued"
        assert (await log_statuses(fresh_database, ids[0])) == ["queued", "failed"]
    finally:
        await backend.close()


async def test_rows_locked_by_a_worker_are_skipped_not_waited_for(fresh_database: str) -> None:
    ids = await enqueue(fresh_database, "ep", 2)
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    worker = await asyncpg.connect(fresh_database)
    try:
        action = actions.cancel(backend, ids_predicate(ids))
        preview = await action.preview(backend)
        assert preview.count == 2
        async with worker.transaction():
            await worker.execute("SELECT 1 FROM pgqueuer WHERE id = $1 FOR UPDATE", ids[0])
            result = await asyncio.wait_for(actions.execute(backend, action, preview), 10)
        assert (result.previewed, result.changed) == (2, 1)
        assert await statuses(fresh_database, ids) == {ids[0]: "queued"}
    finally:
        await worker.close()
        await backend.close()


async def test_cancel_deletes_logs_canceled_and_sends_pgqueuers_cancellation_event(
    fresh_database: str,
) -> None:
    from pgqueuer.domain.models import AnyEvent

    ids = await enqueue(fresh_database, "ep", 2)
    await hold(fresh_database, ids[1:])  # a held job is not cancellable
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    listener = await asyncpg.connect(fresh_database)
    received: list[str] = []
    audit_seen: list[str] = []
    await listener.add_listener("ch_pgqueuer", lambda *a: received.append(a[3]))
    await listener.add_listener("ch_pgqueuer_console", lambda *a: audit_seen.append(a[3]))
    try:
        action = actions.cancel(backend, ids_predicate(ids))
        preview = await action.preview(backend)
        assert preview.ids == (ids[0],)
        result = await actions.execute(backend, action, preview)
        assert result.changed == 1
        assert await statuses(fresh_database, ids) == {ids[1]: "failed"}
        assert (await log_statuses(fresh_database, ids[0]))[-1] == "canceled"
        for _ in range(100):
            if received and audit_seen:
                break
            await asyncio.sleep(0.05)
        events = [AnyEvent.model_validate_json(p).root for p in received]  # pgqueuer parses ours
        cancellations = [e for e in events if e.type == "cancellation_event"]
        assert cancellations and cancellations[0].ids == [ids[0]]
        announcement = audit.parse_announcement(audit_seen[0])
        assert announcement is not None and announcement.action == "cancel"
        assert announcement.count == 1 and announcement.own
    finally:
        await listener.close()
        await backend.close()


async def test_requeue_wakes_workers_with_a_table_changed_event(fresh_database: str) -> None:
    from pgqueuer.domain.models import AnyEvent

    ids = await enqueue(fresh_database, "ep", 1)
    await hold(fresh_database, ids)
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    listener = await asyncpg.connect(fresh_database)
    received: list[str] = []
    await listener.add_listener("ch_pgqueuer", lambda *a: received.append(a[3]))
    try:
        action = actions.requeue(backend, ids_predicate(ids))
        await actions.execute(backend, action, await action.preview(backend))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        event = AnyEvent.model_validate_json(received[0]).root
        assert event.type == "table_changed_event" and event.table == "pgqueuer"
    finally:
        await listener.close()
        await backend.close()


async def test_copy_enqueues_same_entrypoint_payload_headers_priority(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    [original] = await connection.fetch(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, headers, status, dedupe_key) "
        "VALUES (7, 'ep', '\\x00ff'::bytea, '{\"k\": \"v\"}', 'failed', 'key-1') RETURNING id"
    )
    await connection.close()
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.copy(backend, ids_predicate([original["id"]]))
        result = await actions.execute(backend, action, await action.preview(backend))
        assert result.changed == 1 and result.ids[0] != original["id"]
        connection = await asyncpg.connect(fresh_database)
        row = await connection.fetchrow("SELECT * FROM pgqueuer WHERE id = $1", result.ids[0])
        await connection.close()
        assert row is not None
        assert (row["entrypoint"], row["priority"], row["payload"]) == ("ep", 7, b"\x00\xff")
        assert json.loads(row["headers"]) == {"k": "v"}
        # Not the original's key: one of the console's own, per submission (idempotency).
        assert row["status"] == "queued"
        assert row["dedupe_key"] == f"{action.key_prefix}{original['id']}"
    finally:
        await backend.close()


async def test_requeue_leaves_a_job_whose_dedupe_key_is_taken_again(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    rows = await connection.fetch(
        "INSERT INTO pgqueuer (priority, entrypoint, status, dedupe_key) VALUES "
        "(0, 'ep', 'failed', 'k1'), (0, 'ep', 'queued', 'k1'), (0, 'ep', 'failed', 'k2'), "
        "(0, 'ep', 'failed', 'k2'), (0, 'ep', 'failed', NULL) RETURNING id"
    )
    await connection.close()
    ids = [int(r["id"]) for r in rows]
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("TRUE", (), "everything"))
        preview = await action.preview(backend)
        assert preview.count == 4
        result = await actions.execute(backend, action, preview)
        # k1 is taken by a queued job; of the two k2 the older goes; the NULL key goes.
        assert result.ids == (ids[2], ids[4])
    finally:
        await backend.close()


async def test_more_than_100_rows_needs_the_typed_count(fresh_database: str) -> None:
    ids = await enqueue(fresh_database, "bulk", 101)
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.cancel(backend, Predicate("job.entrypoint = $1", ("bulk",), "ep:bulk"))
        preview = await action.preview(backend)
        assert preview.count == 101 and preview.needs_typed_confirmation
        for typed in (None, "", "100", "yes"):
            with pytest.raises(ConsoleError, match="type 101 to confirm"):
                await actions.execute(backend, action, preview, typed=typed)
        assert len(await statuses(fresh_database, ids)) == 101
        result = await actions.execute(backend, action, preview, typed="101")
        assert result.changed == 101
    finally:
        await backend.close()


async def test_nothing_matching_is_refused_and_not_audited(fresh_database: str) -> None:
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, ids_predicate([123456]))
        preview = await action.preview(backend)
        assert preview.count == 0
        with pytest.raises(ConsoleError, match="nothing to do"):
            await actions.execute(backend, action, preview)
        assert audit.read_records() == []
    finally:
        await backend.close()


async def test_a_database_error_is_one_line_and_rolls_everything_back(fresh_database: str) -> None:
    ids = await enqueue(fresh_database, "ep", 2)
    await hold(fresh_database, ids)
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)

    class Broken(actions.RequeueAction):
        async def after_write(self, tx: object, changed: tuple[int, ...]) -> None:
            await tx.execute("SELECT 1/0")  # type: ignore[attr-defined]

    try:
        action = Broken.build(backend, ids_predicate(ids))
        preview = await action.preview(backend)
        with pytest.raises(ConsoleError, match="nothing was changed: division by zero"):
            await actions.execute(backend, action, preview)
        assert await statuses(fresh_database, ids) == {i: "failed" for i in ids}
        assert audit.read_records() == []
    finally:
        await backend.close()
