"""A reply lost after COMMIT was sent is an unknown outcome, said as such.

A `LossyProxy` (tests/lossy_proxy.py) lets the COMMIT through, throws the server's answer away
and drops the connection. The console must say the outcome is unknown, re-read what is now
true, audit it with `outcome: "unknown"`, and a retry of the same submission must not write
twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from pgq_console.core import actions, audit
from pgq_console.core.actions import ids_predicate
from pgq_console.core.backend import Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import DriverKind
from tests.helpers import backend_for
from tests.lossy_proxy import LossyProxy


async def _insert(dsn: str, status: str, count: int, entrypoint: str = "ep") -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "INSERT INTO pgqueuer (priority, entrypoint, status, payload) "
            "SELECT 0, $1, $2::pgqueuer_status, 'p' FROM generate_series(1, $3) "
            "RETURNING id",
            entrypoint,
            status,
            count,
        )
        return sorted(int(r["id"]) for r in rows)
    finally:
        await connection.close()


async def _rows(dsn: str) -> dict[int, tuple[str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, entrypoint, status::text AS s FROM pgqueuer")
        return {int(r["id"]): (str(r["entrypoint"]), str(r["s"])) for r in rows}
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_requeue_with_a_lost_commit_reply_says_unknown_and_what_is_true(
    fresh_database: str, kind: DriverKind
) -> None:
    ids = await _insert(fresh_database, "failed", 3)
    async with LossyProxy(fresh_database) as proxy:
        backend = await backend_for(proxy.dsn, kind)
        assert isinstance(backend, Backend)
        try:
            action = actions.requeue(backend, ids_predicate(ids))
            preview = await action.preview(backend)
            assert preview.count == 3
            proxy.arm()
            with pytest.raises(ConsoleError) as caught:
                await actions.execute(backend, action, preview, reason="retry after fix")
            assert proxy.dropped == 1
        finally:
            await backend.close()
    message = str(caught.value)
    assert "nothing was changed" not in message
    assert "outcome is unknown" in message
    assert "now 3 of 3 are queued or picked" in message
    assert {i: s for i, (_, s) in (await _rows(fresh_database)).items()} == dict.fromkeys(
        ids, "queued"
    )
    [record] = audit.read_records()
    assert record["outcome"] == "unknown" and record["action"] == "requeue"
    assert record["job_ids"] == ids and record["reason"] == "retry after fix"
    assert "3 of 3 are queued or picked" in record["found"]


async def test_cancel_with_a_lost_commit_reply_says_unknown(fresh_database: str) -> None:
    ids = await _insert(fresh_database, "queued", 2)
    async with LossyProxy(fresh_database) as proxy:
        backend = await backend_for(proxy.dsn)
        assert isinstance(backend, Backend)
        try:
            action = actions.cancel(backend, ids_predicate(ids))
            preview = await action.preview(backend)
            proxy.arm()
            with pytest.raises(ConsoleError) as caught:
                await actions.execute(backend, action, preview)
            assert proxy.dropped == 1
            # Applying the same preview again touches nothing: the rows are gone.
            again = await actions.execute(backend, action, preview)
            assert again.changed == 0
        finally:
            await backend.close()
    assert "outcome is unknown" in str(caught.value)
    assert "now 2 of 2 are cancelled" in str(caught.value)
    assert await _rows(fresh_database) == {}
    [record] = audit.read_records()
    assert record["outcome"] == "unknown" and record["job_ids"] == ids


async def test_copy_with_a_lost_commit_reply_is_not_copied_twice_on_retry(
    fresh_database: str,
) -> None:
    [source] = await _insert(fresh_database, "failed", 1, entrypoint="copy_me")
    async with LossyProxy(fresh_database) as proxy:
        backend = await backend_for(proxy.dsn)
        assert isinstance(backend, Backend)
        try:
            action = actions.copy(backend, ids_predicate([source]))
            preview = await action.preview(backend)
            proxy.arm()
            with pytest.raises(ConsoleError) as caught:
                await actions.execute(backend, action, preview)
            assert proxy.dropped == 1
            # The operator retries the same submission: the idempotency token refuses a
            # second copy while the first is queued.
            retry = await actions.execute(backend, action, preview)
            assert retry.changed == 0
        finally:
            await backend.close()
    assert "outcome is unknown" in str(caught.value)
    rows = await _rows(fresh_database)
    copies = [i for i, (ep, s) in rows.items() if ep == "copy_me" and i != source]
    assert len(copies) == 1, rows
    assert f"now 1 of 1 copies are queued (job {copies[0]})" in str(caught.value)
    record = audit.read_records()[0]
    assert record["outcome"] == "unknown" and record["job_ids"] == copies


async def test_form_enqueue_with_a_lost_reply_says_unknown_and_a_retry_writes_once(
    fresh_database: str,
) -> None:
    from pgq_console.core.enqueue import Enqueuer, parse_enqueue_form

    request = parse_enqueue_form(
        {"entrypoint": "form_ep", "payload_kind": "text", "payload": "hi", "copies": "5"},
        datetime.now(UTC),
    )
    async with LossyProxy(fresh_database) as proxy:
        backend = await backend_for(proxy.dsn)
        assert isinstance(backend, Backend)
        try:
            enqueuer = Enqueuer(backend, batch_size=2)
            submission = "test-submission-1"
            proxy.arm("INSERT INTO")
            first = await enqueuer.enqueue(request, submission=submission)
            assert proxy.dropped == 1
            assert first.error is not None and "outcome is unknown" in first.error
            assert "are in the queue" in first.error  # the re-read found the lost batch
            # The operator submits the same form again: nothing is written twice.
            retry = await enqueuer.enqueue(request, submission=submission)
            assert retry.error is None, retry.summary()
        finally:
            await backend.close()
    rows = await _rows(fresh_database)
    assert sum(1 for ep, _ in rows.values() if ep == "form_ep") == 5, rows
    unknown = [r for r in audit.read_records() if r.get("outcome") == "unknown"]
    assert len(unknown) == 1 and unknown[0]["action"] == "enqueue"
    assert "are in the queue" in unknown[0]["found"]


async def test_confirm_dialog_says_the_outcome_is_unknown(fresh_database: str) -> None:
    """Jobs screen, `c` on a job, the reply to COMMIT lost: the dialog and a toast say so."""
    from textual.widgets import Static

    from pgq_console.screens.action_confirm import ActionConfirmScreen
    from tests.helpers import wait_until
    from tests.test_jobs_screens import console, open_jobs  # noqa: F401

    ids = await _insert(fresh_database, "queued", 3, entrypoint="send")
    async with LossyProxy(fresh_database) as proxy:
        app = console(proxy.dsn)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
            await pilot.press("2")
            from pgq_console.screens.jobs import JobsScreen

            await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
            screen = app.screen
            await wait_until(pilot, lambda: len(screen.job_table().jobs) == 3)  # type: ignore[attr-defined]
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
            modal = app.screen
            try:
                await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
            except AssertionError as exc:
                said = modal.query_one("#confirm-error", Static).render()
                count = modal.query_one("#confirm-count", Static).render()
                raise AssertionError(f"no preview: {count!s} / {said!s}") from exc
            proxy.arm(after="DELETE FROM")
            await pilot.press("enter")
            await wait_until(
                pilot,
                lambda: (
                    "outcome is unknown" in str(modal.query_one("#confirm-error", Static).render())
                ),
                within=30,
                what="the unknown outcome in the dialog",
            )
            assert proxy.dropped == 1
            assert any("outcome is unknown" in n.message for n in app._notifications)
            assert "now 1 of 1 are cancelled" in str(modal.query_one("#confirm-error").render())
            await pilot.press("escape")
    assert len(await _rows(fresh_database)) == 2
    [record] = audit.read_records()
    assert record["outcome"] == "unknown" and record["job_ids"] == [ids[-1]]
