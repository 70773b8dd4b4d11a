"""The overview against real PostgreSQL and a real PgQueuer worker: numbers equal the truth."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job, JobId
from pgqueuer.queries import Queries
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.screens.overview import OverviewScreen
from tests.helpers import (
    backend_for,
    cell,
    enqueue,
    has_row,
    number,
    overview_of,
    table_of,
    truth,
    wait_until,
)


async def run_worker_until(dsn: str, processed_target: int) -> int:
    """A real QueueManager: `ok` succeeds, `boom` fails and is held for requeue."""
    connection = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(connection)))
    processed = 0

    def count() -> None:
        nonlocal processed
        processed += 1
        if processed >= processed_target:
            qm.shutdown.set()

    @qm.entrypoint("ok")
    async def ok(job: Job) -> None:
        count()

    @qm.entrypoint("boom", on_failure="hold")
    async def boom(job: Job) -> None:
        count()
        raise RuntimeError("boom [bold]not markup[/]")

    try:
        await asyncio.wait_for(
            qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=10), timeout=60
        )
    finally:
        await connection.close()
    return processed


async def test_counts_equal_database_truth_after_a_real_worker(fresh_database: str) -> None:
    await enqueue(fresh_database, "ok", 40)
    await enqueue(fresh_database, "boom", 6)
    await enqueue(fresh_database, "later", 5, execute_after=timedelta(hours=1))
    assert await run_worker_until(fresh_database, 46) == 46
    await enqueue(fresh_database, "ok", 7)  # stay queued: no worker runs now

    expected = await truth(fresh_database)
    assert expected["ok"] == {
        "ready": 7,
        "deferred": 0,
        "picked": 0,
        "held": 0,
        "done_1h": 40,
        "err_1h": 0,
    }
    assert expected["boom"]["held"] == 6 and expected["boom"]["err_1h"] == 6

    backend = await backend_for(fresh_database)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "later") and has_row(app, "boom"))
            # Log rows aggregate asynchronously; wait until the windows caught up.
            await wait_until(pilot, lambda: number(app, "ok", "done_1h") == "40", what="done_1h")
            for entrypoint, numbers in expected.items():
                for column, value in numbers.items():
                    assert number(app, entrypoint, column) == str(value), (entrypoint, column)
            assert number(app, "later", "deferred") == "5"
            assert cell(app, "ok", "oldest") != "–"
            assert cell(app, "later", "oldest") == "–"  # deferred jobs are not waiting yet
            totals = str(app.screen.query_one("#totals-line").render())
            assert "queued 12 (ready 7, deferred 5)" in totals and "held 6" in totals
            # p50/p95 come from pgqueuer's percentile query over the log, read right after
            # the first paint.
            await wait_until(pilot, lambda: cell(app, "ok", "p50") != "–", what="p50")
    finally:
        await backend.close()


async def test_notify_triggers_a_refresh_long_before_the_timer(database_dsn: str) -> None:
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=60.0)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            screen = overview_of(app)
            await wait_until(pilot, lambda: bool(screen.status and screen.status.listening))
            await wait_until(pilot, lambda: bool(screen.status and screen.status.refreshes >= 1))
            before = screen.status.refreshes if screen.status else 0
            await enqueue(database_dsn, "notified", 3)
            # Within half the 60 s timer: only the NOTIFY can have brought the row.
            await wait_until(pilot, lambda: has_row(app, "notified"), within=30)
            assert number(app, "notified", "ready") == "3"
            assert screen.status is not None
            assert screen.status.refreshes > before
            assert screen.status.events_seen >= 1
            assert screen.status.last_event_latency_s is not None
            assert "last event" in str(app.screen.query_one("#live-line").render())
    finally:
        await backend.close()


async def refreshes_settled(pilot: Pilot[Any], screen: OverviewScreen) -> int:
    """The hidden overview's refresh count once a refresh under way when it was hidden landed."""
    assert screen.refresher is not None
    while True:
        count = screen.refresher.status.refreshes
        await pilot.pause(0.6)
        if screen.refresher.status.refreshes == count:
            return count


async def test_a_hidden_overview_idles_and_refreshes_as_soon_as_it_is_back(
    database_dsn: str,
) -> None:
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            screen = overview_of(app)
            await wait_until(pilot, lambda: bool(screen.status and screen.status.listening))
            await wait_until(pilot, lambda: bool(screen.status and screen.status.refreshes >= 2))
            await pilot.press("2")  # the jobs screen: the overview is out of view
            await wait_until(pilot, lambda: app.screen is not screen)
            hidden_at = await refreshes_settled(pilot, screen)
            await enqueue(database_dsn, "while_hidden", 2)  # a NOTIFY, and timer ticks pass
            await pilot.pause(1.5)
            assert screen.refresher is not None
            assert screen.refresher.status.refreshes == hidden_at
            assert screen.refresher.status.events_seen >= 1  # still listening meanwhile
            await pilot.press("1")
            await wait_until(pilot, lambda: has_row(app, "while_hidden"))
            assert number(app, "while_hidden", "ready") == "2"
    finally:
        await backend.close()


async def test_updates_which_never_notify_are_caught_by_the_timer(database_dsn: str) -> None:
    ids = await enqueue(database_dsn, "held_then_requeued", 2)
    connection = await asyncpg.connect(database_dsn)
    try:
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = ANY($1)", ids)
        backend = await backend_for(database_dsn)
        app = PgqConsole(backend, refresh_interval=0.5)
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "held_then_requeued"))
            await wait_until(pilot, lambda: number(app, "held_then_requeued", "held") == "2")
            # requeue_jobs is an UPDATE: no NOTIFY; the 0.5 s timer must still show it.
            await Queries.from_asyncpg_connection(connection).requeue_jobs([JobId(i) for i in ids])
            await wait_until(pilot, lambda: number(app, "held_then_requeued", "ready") == "2")
            # Held failures are counted with the slower tier (no index covers them).
            await wait_until(pilot, lambda: number(app, "held_then_requeued", "held") == "0")
        await backend.close()
    finally:
        await connection.close()


async def test_rows_update_in_place_and_the_cursor_stays(fresh_database: str) -> None:
    database_dsn = fresh_database
    for name in ("alpha", "bravo", "charlie"):
        await enqueue(database_dsn, name)
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=0.25)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "charlie"))
            table = table_of(app)
            table.move_cursor(row=table.get_row_index("bravo"))
            await pilot.pause()
            await enqueue(database_dsn, "bravo", 4)
            await enqueue(database_dsn, "delta")
            await wait_until(
                pilot, lambda: has_row(app, "delta") and number(app, "bravo", "ready") == "5"
            )
            row_key = table.selected_key
            assert row_key == "bravo"
            order = table.row_keys
            assert order == ["alpha", "bravo", "charlie", "delta"]
    finally:
        await backend.close()


async def test_pause_and_interval_keys(database_dsn: str) -> None:
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=2.0)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            screen = overview_of(app)
            await wait_until(
                pilot, lambda: screen.refresher is not None and screen.status is not None
            )
            await pilot.press("plus")
            await wait_until(
                pilot, lambda: screen.status is not None and screen.status.interval_s == 1.0
            )
            await pilot.press("minus", "minus")
            await wait_until(
                pilot, lambda: screen.status is not None and screen.status.interval_s == 5.0
            )
            await pilot.press("p")
            await wait_until(pilot, lambda: screen.status is not None and screen.status.paused)
            assert "paused" in str(screen.query_one("#live-line").render())
            assert screen.status is not None
            paused_at = screen.status.refreshes
            await enqueue(database_dsn, "while_paused")
            await pilot.pause(0.6)
            assert screen.status.refreshes == paused_at
            assert not has_row(app, "while_paused")
            await pilot.press("p")
            await wait_until(pilot, lambda: has_row(app, "while_paused"))
    finally:
        await backend.close()


async def test_untrusted_entrypoint_names_are_shown_literally(database_dsn: str) -> None:
    hostile = ["[bold]x[/]", "[@click=app.quit]q[/]", "esc\x1b[31mred", "nul\x00byte"]
    connection = await asyncpg.connect(database_dsn)
    try:
        # NUL cannot be stored in text; the others go in as entrypoint names.
        for name in hostile[:3]:
            await connection.execute(
                "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', $1)", name
            )
    finally:
        await connection.close()
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: all(has_row(app, name) for name in hostile[:3]))
            assert cell(app, "[bold]x[/]", "entrypoint") == "[bold]x[/]"
            assert cell(app, "[@click=app.quit]q[/]", "entrypoint") == "[@click=app.quit]q[/]"
            assert cell(app, "esc\x1b[31mred", "entrypoint") == "esc\\x1b[31mred"
            rendered = table_of(app).get_cell("[bold]x[/]", "entrypoint")
            assert rendered.spans == []  # no style was parsed out of the name
            assert app.is_running  # the click action did not fire
    finally:
        await backend.close()


async def test_overview_works_for_a_read_only_role(database_dsn: str) -> None:
    await enqueue(database_dsn, "readable", 2)
    connection = await asyncpg.connect(database_dsn)
    try:
        await connection.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqc_reader') "
            "THEN CREATE ROLE pgqc_reader LOGIN; END IF; END $$"
        )
        await connection.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgqc_reader")
        before = await connection.fetchval("SELECT count(*) FROM pgqueuer_statistics")
    finally:
        await connection.close()
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_dsn)
    netloc = "pgqc_reader@" + parts.netloc.rsplit("@", 1)[-1]
    reader_dsn = urlunsplit(parts._replace(netloc=netloc))
    backend = await backend_for(reader_dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "readable"))
            assert number(app, "readable", "ready") == "2"
            screen = overview_of(app)
            assert screen.status is not None and screen.status.error is None
    finally:
        await backend.close()
    connection = await asyncpg.connect(database_dsn)
    try:
        after = await connection.fetchval("SELECT count(*) FROM pgqueuer_statistics")
    finally:
        await connection.close()
    assert after == before  # reading never aggregated the log
