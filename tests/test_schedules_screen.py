"""The schedules screen (key 5): next/last run, overdue flagged, run now and remove (guarded)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Schedule
from pgqueuer.queries import Queries
from pgqueuer.sm import SchedulerManager
from textual.pilot import Pilot

from pgq_console.core.clock import SystemClock
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.schedules import SchedulesScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.screens_support import FIXED_NOW, console, open_screen, run_sql, seed, until

SCHEDULES_SEED = """
INSERT INTO pgqueuer_schedules (expression, entrypoint, next_run, last_run, status, heartbeat)
VALUES
    ('*/5 * * * *', 'build_report', $1::timestamptz - interval '25 minutes',
        $1::timestamptz - interval '30 minutes', 'queued', $1::timestamptz - interval '30 minutes'),
    ('* * * * *', 'send_digest', $1::timestamptz + interval '40 seconds',
        $1::timestamptz - interval '20 seconds', 'queued', $1::timestamptz - interval '20 seconds'),
    ('0 3 * * *', 'nightly_cleanup', $1::timestamptz + interval '15 hours', NULL, 'queued',
        $1::timestamptz - interval '9 hours'),
    ('*/2 * * * *', 'sync_crm', $1::timestamptz + interval '10 seconds',
        $1::timestamptz - interval '3 minutes', 'picked', $1::timestamptz - interval '2 minutes')
"""


@pytest.fixture(scope="module")
def snapshot_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "schedules_snap")
    seed(dsn, SCHEDULES_SEED, FIXED_NOW)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def _until_schedules(pilot: Pilot[Any]) -> None:
    screen = await open_screen(pilot, "5", SchedulesScreen)
    await until(pilot, lambda: screen.query_one("#schedules-table", LiveTable).row_count == 4)
    await pilot.pause()


def test_schedules_snapshot(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(100, 24), run_before=_until_schedules)


def test_schedules_snapshot_80x24(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(80, 24), run_before=_until_schedules)


async def _register_with_a_real_scheduler(dsn: str) -> None:
    """A real SchedulerManager registers its schedule, then stops (as a crashed scheduler would)."""
    connection = await asyncpg.connect(dsn)
    try:
        sm = SchedulerManager(Queries(AsyncpgDriver(connection)))

        @sm.schedule("real_tick", "* * * * *")
        async def tick(schedule: Schedule) -> None:
            pass

        task = asyncio.create_task(sm.run())
        for _ in range(100):
            rows = await run_sql(
                dsn, "SELECT 1 FROM pgqueuer_schedules WHERE entrypoint = $1", "real_tick"
            )
            if rows:
                break
            await asyncio.sleep(0.1)
        sm.shutdown.set()
        await asyncio.wait_for(task, 20)
    finally:
        await connection.close()


async def _apply(pilot: Pilot[Any], expected: int) -> None:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
    dialog = app.screen
    await until(pilot, lambda: dialog.preview is not None)  # type: ignore[attr-defined]
    assert dialog.preview.count == expected  # type: ignore[attr-defined]
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))


async def test_overdue_flagged_run_now_and_remove(fresh_database: str) -> None:
    dsn = fresh_database
    (row,) = await run_sql(dsn, "SELECT now() AS now")
    await run_sql(dsn, SCHEDULES_SEED, row["now"])
    await _register_with_a_real_scheduler(dsn)
    app = console(dsn, clock=SystemClock())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "5", SchedulesScreen)
        table = screen.query_one("#schedules-table", LiveTable)
        await until(pilot, lambda: table.row_count == 5)
        ids = {
            str(r["entrypoint"]): str(r["id"])
            for r in await run_sql(dsn, "SELECT id, entrypoint FROM pgqueuer_schedules")
        }
        assert table.get_cell(ids["build_report"], "problem").plain == "overdue"
        assert table.get_cell(ids["build_report"], "next").plain.endswith("ago")
        assert table.get_cell(ids["sync_crm"], "problem").plain == "scheduler died"
        assert table.get_cell(ids["nightly_cleanup"], "last").plain == "never"
        assert table.get_cell(ids["send_digest"], "problem").plain == ""
        assert table.get_cell(ids["real_tick"], "expression").plain == "* * * * *"
        assert table.get_cell(ids["real_tick"], "problem").plain == ""
        summary = str(screen.query_one("#schedules-summary").render())
        assert "5 schedules" in summary and "2 need attention" in summary

        # Run now: the schedule is made due for its own scheduler; no ordinary job is enqueued.
        table.move_cursor(row=table.get_row_index(ids["nightly_cleanup"]))
        await pilot.press("n")
        await _apply(pilot, expected=1)
        assert await run_sql(dsn, "SELECT 1 FROM pgqueuer") == []
        (due,) = await run_sql(
            dsn,
            "SELECT next_run <= now() AS due FROM pgqueuer_schedules WHERE entrypoint = $1",
            "nightly_cleanup",
        )
        assert due["due"]
        # A running schedule (picked) is not touched: nothing to do.
        table.move_cursor(row=table.get_row_index(ids["sync_crm"]))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await until(pilot, lambda: dialog.preview is not None)  # type: ignore[attr-defined]
        assert dialog.preview.count == 0  # type: ignore[attr-defined]
        assert "running now" in " ".join(dialog.preview.notes)  # type: ignore[attr-defined]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))

        # Remove (guarded): the row is gone, and so is it from the table.
        table.move_cursor(row=table.get_row_index(ids["sync_crm"]))
        await pilot.press("d")
        await _apply(pilot, expected=1)
        left = await run_sql(dsn, "SELECT entrypoint FROM pgqueuer_schedules")
        assert "sync_crm" not in {r["entrypoint"] for r in left} and len(left) == 4
        await until(pilot, lambda: table.row_count == 4)

        # Cancel leaves everything as it was.
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        assert len(await run_sql(dsn, "SELECT 1 FROM pgqueuer_schedules")) == 4


async def test_run_now_is_run_by_the_schedules_own_scheduler(fresh_database: str) -> None:
    """A yearly schedule, `n`: its running SchedulerManager runs it at its next wake-up (here
    within seconds: its other schedule runs every 2 s, cron's optional sixth field), records
    last_run and moves next_run back to next year."""
    dsn = fresh_database
    ran: list[str] = []
    connection = await asyncpg.connect(dsn)
    sm = SchedulerManager(Queries(AsyncpgDriver(connection)))

    @sm.schedule("yearly_report", "0 0 1 1 *")
    async def yearly(schedule: Schedule) -> None:
        ran.append("yearly_report")

    @sm.schedule("often", "* * * * * */2")
    async def often(schedule: Schedule) -> None:
        pass

    task = asyncio.create_task(sm.run())
    try:
        app = console(dsn, clock=SystemClock())
        async with app.run_test(size=(120, 30)) as pilot:
            screen = await open_screen(pilot, "5", SchedulesScreen)
            table = screen.query_one("#schedules-table", LiveTable)
            await until(pilot, lambda: table.row_count == 2, within=30)
            (row,) = await run_sql(
                dsn, "SELECT id FROM pgqueuer_schedules WHERE entrypoint = $1", "yearly_report"
            )
            key = str(row["id"])
            assert table.get_cell(key, "last").plain == "never"
            table.move_cursor(row=table.get_row_index(key))
            await pilot.press("n")
            await _apply(pilot, expected=1)
            await until(pilot, lambda: ran == ["yearly_report"], within=120)
            assert await run_sql(dsn, "SELECT 1 FROM pgqueuer") == []  # no ordinary job
            screen.loop.request_refresh()
            await until(pilot, lambda: table.get_cell(key, "last").plain != "never", within=30)
            (after,) = await run_sql(
                dsn,
                "SELECT next_run > now() + interval '1 day' AS later, last_run IS NOT NULL AS ran"
                " FROM pgqueuer_schedules WHERE entrypoint = $1",
                "yearly_report",
            )
            assert after["later"] and after["ran"]
    finally:
        sm.shutdown.set()
        await asyncio.wait_for(task, 30)
        await connection.close()


def test_schedules_snapshot_160x48(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(160, 48), run_before=_until_schedules)
