"""`E` on a job that finished before the copy reached it: copied from its log row (when the
list showed it without a payload), and the result names the new job. Real PostgreSQL, jobs
finished through PgQueuer's own `log_jobs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from textual.widgets import Static

from pgq_console.app import PgqConsole
from pgq_console.core import actions
from pgq_console.core.actions import COPY_KEY_PREFIX
from pgq_console.core.backend import Backend
from pgq_console.core.target import DriverKind
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.widgets.job_table import JobTable
from tests.helpers import backend_for, enqueue, wait_until


async def finish(dsn: str, ids: list[int]) -> None:
    """The jobs complete as a worker completes them: deleted and logged 'successful'."""
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        jobs = [j for j in await queries.browse_queue(limit=10_000) if j.id in set(ids)]
        assert len(jobs) == len(ids)
        await queries.log_jobs([(job, "successful", None) for job in jobs])
    finally:
        await connection.close()


async def insert(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def queue_row(dsn: str, job_id: int) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow("SELECT * FROM pgqueuer WHERE id = $1", job_id)
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_a_finished_job_is_copied_from_its_log_row(
    fresh_database: str, kind: DriverKind
) -> None:
    dsn = fresh_database
    plain = await insert(
        dsn,
        "INSERT INTO pgqueuer (priority, entrypoint, status) "
        "VALUES (7, 'nightly', 'queued') RETURNING id",
    )
    loaded = await insert(
        dsn,
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status) "
        "VALUES (0, 'nightly', 'abc'::bytea, 'queued') RETURNING id",
    )
    await finish(dsn, [plain, loaded])
    backend = await backend_for(dsn, kind)
    assert isinstance(backend, Backend)
    try:
        action = actions.copy_jobs(backend, {plain: 0})
        preview = await action.preview(backend)
        assert preview.count == 1 and preview.ids == (plain,)
        assert any("Already finished" in note for note in preview.notes)
        assert preview.sample[0][:4] == (str(plain), "nightly", "7", "successful")
        result = await actions.execute(backend, action, preview)
        assert result.changed == 1
        (new_id,) = result.ids
        assert f"(new job {new_id})" in result.summary
        row = await queue_row(dsn, new_id)
        assert (row["entrypoint"], row["priority"], row["status"]) == ("nightly", 7, "queued")
        assert row["payload"] is None
        assert row["dedupe_key"].startswith(COPY_KEY_PREFIX)
        # The same submission again (a retry after a lost reply) copies nothing more.
        again = await actions.execute(backend, action, preview)
        assert again.changed == 0

        # One the list showed with a payload: the log does not keep it, so no copy.
        refused = actions.copy_jobs(backend, {loaded: 3})
        nothing = await refused.preview(backend)
        assert nothing.count == 0
        assert "payload the log does not keep" in nothing.nothing_to_do
        assert any(f"job {loaded} had a payload" in note for note in nothing.notes)

        # Its payload and headers read before it finished (the detail screen): copied whole.
        whole = actions.copy_jobs(backend, {loaded: 3}, {loaded: (b"abc", '{"k": 1}')})
        result = await actions.execute(backend, whole, await whole.preview(backend))
        (copied,) = result.ids
        row = await queue_row(dsn, copied)
        assert row["payload"] == b"abc" and json.loads(row["headers"]) == {"k": 1}
    finally:
        await backend.close()


async def test_a_queued_job_is_still_copied_from_the_queue(fresh_database: str) -> None:
    dsn = fresh_database
    job = await insert(
        dsn,
        "INSERT INTO pgqueuer (priority, entrypoint, payload, headers, status) "
        "VALUES (2, 'ep', 'xyz'::bytea, '{\"k\": 1}', 'queued') RETURNING id",
    )
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    try:
        action = actions.copy_jobs(backend, {job: 3})
        preview = await action.preview(backend)
        result = await actions.execute(backend, action, preview)
        (new_id,) = result.ids
        row = await queue_row(dsn, new_id)
        assert row["payload"] == b"xyz"  # the queue's copy keeps payload and headers
        assert f"(new job {new_id})" in result.summary
    finally:
        await backend.close()


class NotedConsole(PgqConsole):
    """The console, keeping the text of every toast it shows."""

    CSS_PATH = str(Path(__file__).resolve().parent.parent / "pgq_console" / "app.tcss")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.toasts: list[str] = []

    def notify(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.toasts.append(str(message))
        super().notify(message, *args, **kwargs)


async def test_E_on_a_row_whose_job_just_finished(fresh_database: str) -> None:
    dsn = fresh_database
    [job] = await enqueue(dsn, "finishes_fast", 1)
    await insert(dsn, f"UPDATE pgqueuer SET payload = NULL WHERE id = {int(job)} RETURNING id")
    backend = await backend_for(dsn)
    app = NotedConsole(backend, refresh_interval=60.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.screen.id != "_default", what="the first screen")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        table = app.screen.query_one(JobTable)
        await wait_until(pilot, lambda: table.current_id == job, what="the job's row")
        await finish(dsn, [job])  # a worker takes it before the operator presses E
        table.focus()
        await pilot.press("E")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await wait_until(pilot, lambda: getattr(dialog, "preview", None) is not None)
        count = str(dialog.query_one("#confirm-count", Static).render())
        assert "1 job" in count, count
        assert "Already finished" in str(dialog.query_one("#confirm-notes", Static).render())
        await pilot.press("enter")  # the reason field has the focus: Enter applies
        await wait_until(
            pilot,
            lambda: any("new job" in toast for toast in app.toasts),
            what="the result naming the new job",
        )
        message = next(toast for toast in app.toasts if "new job" in toast)
        new_id = int(message.rsplit("new job ", 1)[1].rstrip(")"))
        row = await queue_row(dsn, new_id)
        assert row is not None and row["entrypoint"] == "finishes_fast"


async def test_a_finished_job_copies_whole_from_what_its_detail_read(fresh_database: str) -> None:
    """Opened (payload and headers read), finished, then E: the copy has them."""
    from pgq_console.screens.job_detail import JobDetailScreen

    dsn = fresh_database
    job = await insert(
        dsn,
        "INSERT INTO pgqueuer (priority, entrypoint, payload, headers, status) "
        'VALUES (4, \'with_payload\', \'{"to": "a@b"}\'::bytea, \'{"trace": "t-1"}\', '
        "'queued') RETURNING id",
    )
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    app = NotedConsole(backend, refresh_interval=60.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.screen.id != "_default", what="the first screen")
        app.push_screen(JobDetailScreen(backend, app.clock, job))
        await wait_until(pilot, lambda: getattr(app.screen, "detail", None) is not None)
        await finish(dsn, [job])
        await pilot.press("E")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await wait_until(pilot, lambda: getattr(dialog, "preview", None) is not None)
        assert "1 job" in str(dialog.query_one("#confirm-count", Static).render())
        notes = str(dialog.query_one("#confirm-notes", Static).render())
        assert "payload and headers as this console read them" in notes
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: any("new job" in toast for toast in app.toasts), what="the result"
        )
        message = next(toast for toast in app.toasts if "new job" in toast)
        new_id = int(message.rsplit("new job ", 1)[1].rstrip(")"))
    row = await queue_row(dsn, new_id)
    assert (row["entrypoint"], row["priority"]) == ("with_payload", 4)
    assert row["payload"] == b'{"to": "a@b"}'
    assert json.loads(row["headers"]) == {"trace": "t-1"}


async def test_the_cursor_stays_on_a_job_that_left_the_list(fresh_database: str) -> None:
    """On a busy queue the job under the cursor finishes and the next read no longer finds it:
    its row stays (status gone) with the cursor on it, instead of the cursor landing on another
    job that E, r or c would then act on; E copies it from its log row. Once the cursor moves,
    the next read drops the row."""
    dsn = fresh_database
    ids = await enqueue(dsn, "busy", 6)
    await insert(dsn, "UPDATE pgqueuer SET payload = NULL RETURNING 1")
    backend = await backend_for(dsn)
    app = NotedConsole(backend, refresh_interval=60.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.screen.id != "_default", what="the first screen")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        table = screen.query_one(JobTable)
        await wait_until(pilot, lambda: set(table.jobs) == set(ids), what="the jobs")
        table.focus()
        await pilot.press("down", "down")
        chosen = table.current_id
        assert chosen is not None
        await finish(dsn, [chosen])
        generation = screen.query_one(JobTable).jobs
        screen.request_refresh()
        await wait_until(pilot, lambda: table.jobs is not generation, what="a fresh read")
        assert table.current_id == chosen
        assert str(table.get_cell(str(chosen), "status").plain) == "gone"
        await pilot.press("E")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await wait_until(pilot, lambda: getattr(dialog, "preview", None) is not None)
        assert "1 job" in str(dialog.query_one("#confirm-count", Static).render())
        assert "Already finished" in str(dialog.query_one("#confirm-notes", Static).render())
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: any("new job" in toast for toast in app.toasts), what="the result"
        )
        message = next(toast for toast in app.toasts if "new job" in toast)
        new_id = int(message.rsplit("new job ", 1)[1].rstrip(")"))
        row = await queue_row(dsn, new_id)
        assert row is not None and row["entrypoint"] == "busy"
        await wait_until(pilot, lambda: app.screen is screen, what="back on Jobs")
        table.focus()
        await pilot.press("down")
        assert table.current_id != chosen
        screen.request_refresh()
        await wait_until(pilot, lambda: chosen not in table.jobs, what="the gone row dropped")
        assert new_id in table.jobs
