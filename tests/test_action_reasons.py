"""Dedupe conflicts named in preview and result, and reasons made plain (typed reasons
recorded, schedule ids recorded as such, dialogs that say what they act on)."""

from __future__ import annotations

import asyncpg

from pgq_console.core import actions
from pgq_console.core.actions import Predicate
from pgq_console.core.backend import Backend
from tests.helpers import backend_for


async def test_requeue_names_dedupe_conflicts_in_preview_and_result(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    rows = await connection.fetch(
        "INSERT INTO pgqueuer (priority, entrypoint, status, dedupe_key) VALUES "
        "(0, 'ep', 'failed', 'k1'), (0, 'ep', 'queued', 'k1'), (0, 'ep', 'failed', 'k2'), "
        "(0, 'ep', 'failed', NULL), (0, 'ep', 'failed', NULL) RETURNING id"
    )
    await connection.close()
    ids = [int(r["id"]) for r in rows]
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("TRUE", (), "everything"))
        preview = await action.preview(backend)
        assert preview.count == 4
        assert preview.blocked_by_dedupe == 1
        assert "4 held, 1 blocked by a live job with the same dedupe key" in preview.notes
        result = await actions.execute(backend, action, preview)
        assert result.ids == (ids[2], ids[3], ids[4])
        assert result.blocked_by_dedupe == 1
        assert "1 blocked by a live job with the same dedupe key" in result.summary
        assert "had changed" not in result.summary
    finally:
        await backend.close()


async def test_requeue_counts_a_sibling_holding_the_same_key_as_blocked(
    fresh_database: str,
) -> None:
    connection = await asyncpg.connect(fresh_database)
    await connection.execute(
        "INSERT INTO pgqueuer (priority, entrypoint, status, dedupe_key) VALUES "
        "(0, 'ep', 'failed', 'k2'), (0, 'ep', 'failed', 'k2'), (0, 'ep', 'failed', 'k2')"
    )
    await connection.close()
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("TRUE", (), "everything"))
        preview = await action.preview(backend)
        assert (preview.count, preview.blocked_by_dedupe) == (3, 2)
        result = await actions.execute(backend, action, preview)
        assert (result.changed, result.blocked_by_dedupe) == (1, 2)
        assert result.summary == (
            "requeue: previewed 3, changed 1 (2 blocked by a live job with the same dedupe key)"
        )
    finally:
        await backend.close()


async def test_a_reason_typed_in_a_small_dialog_is_recorded(database_dsn: str) -> None:
    """≤ 100 rows: type a reason and press Enter, as the dialog invites (it was dropped)."""
    from pgq_console.core import audit
    from pgq_console.screens.action_confirm import ActionConfirmScreen
    from pgq_console.screens.jobs import JobsScreen
    from tests.helpers import wait_until
    from tests.jobs_seed import seed
    from tests.test_jobs_screens import console, ids_shown, open_jobs, table

    await seed(database_dsn)
    app = console(database_dsn)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(30))
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        await pilot.pause()
        # The dismiss button says what it does: nothing is cancelled by it.
        back = str(modal.query_one("#confirm-cancel").label)  # type: ignore[attr-defined]
        assert "cancel" not in back.lower() and back
        await pilot.press(*"customer asked", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        [record] = audit.read_records()
        assert record["action"] == "cancel" and record["job_ids"] == [30]
        assert record["reason"] == "customer asked"


async def test_schedule_removal_records_schedule_ids_and_says_schedule(
    fresh_database: str,
) -> None:
    from textual.widgets import Input, Static

    from pgq_console.core import audit
    from pgq_console.screens.action_confirm import ActionConfirmScreen
    from pgq_console.screens.schedules import SchedulesScreen
    from pgq_console.widgets.live_table import LiveTable
    from tests.screens_support import console, open_screen, run_sql, until

    await run_sql(
        fresh_database,
        "INSERT INTO pgqueuer_schedules (expression, entrypoint, next_run, status) "
        "VALUES ('* * * * *', 'tick', now() + interval '1 minute', 'queued')",
    )
    (row,) = await run_sql(fresh_database, "SELECT id FROM pgqueuer_schedules")
    schedule_id = int(row["id"])
    app = console(fresh_database)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "5", SchedulesScreen)
        table = screen.query_one("#schedules-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        count = str(modal.query_one("#confirm-count", Static).render())
        assert "1 schedule" in count and "job" not in count
        assert "job" not in modal.query_one("#confirm-typed", Input).placeholder
        modal.query_one("#confirm-reason", Input).focus()
        await pilot.press(*"retired", "enter")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
    [record] = audit.read_records()
    assert record["action"] == "schedule-remove"
    assert record["schedule_ids"] == [schedule_id] and record["job_ids"] == []
    assert record["reason"] == "retired"
    # The typed-confirmation message speaks of schedules too.
    big = actions.ActionPreview(
        action="schedule-remove",
        title="Remove schedules",
        verb="remove",
        count=101,
        matching=101,
        ids=tuple(range(101)),
        columns=(),
        sample=(),
        statement="",
        predicate="",
        noun="schedule",
    )
    assert actions.confirmation_problem(big, "") == "type 101 to confirm remove of 101 schedules"


async def test_a_nul_in_the_reason_does_not_fail_the_write(fresh_database: str) -> None:
    from pgq_console.core import audit
    from pgq_console.core.actions import ids_predicate

    connection = await asyncpg.connect(fresh_database)
    [job] = await connection.fetch(
        "INSERT INTO pgqueuer (priority, entrypoint, status) VALUES (0, 'ep', 'queued') "
        "RETURNING id"
    )
    await connection.close()
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.cancel(backend, ids_predicate([int(job["id"])]))
        result = await actions.execute(
            backend, action, await action.preview(backend), reason="bad\x00byte"
        )
        assert result.changed == 1
    finally:
        await backend.close()
    [record] = audit.read_records()
    assert record["reason"] == "bad\x00byte"  # the file keeps what was typed
