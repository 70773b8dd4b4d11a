"""Newest-first lists follow their top: new held failures (Failures, key 3) and new jobs (Jobs,
key 2) show at the top while the cursor is on the first row; a cursor moved down stays on its
job, and the screen says how many newer rows are scrolled out of view above it."""

from __future__ import annotations

from typing import Any

import asyncpg
from textual.widgets import Static

from pgq_console.screens.failures import FailuresScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.widgets.job_table import JobTable
from tests.helpers import wait_until
from tests.jobs_seed import FIXED_NOW
from tests.test_jobs_screens import console, open_jobs, seeded, table

__all__ = ["seeded"]  # the fixture, used by name


async def add_jobs(dsn: str, count: int, status: str) -> list[int]:
    """`count` new jobs (ids above every other), newest last."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            """INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated,
                heartbeat, execute_after, attempts)
            SELECT 0, $2::pgqueuer_status, 'charge_card', convert_to('{}', 'UTF8'), $1, $1, $1,
                $1, 1
            FROM generate_series(1, $3::int) RETURNING id""",
            FIXED_NOW,
            status,
            count,
        )
        return sorted(int(row["id"]) for row in rows)
    finally:
        await connection.close()


def plain(widget: Static) -> str:
    return str(widget.render())


async def open_failures(pilot: Any) -> FailuresScreen:
    app = pilot.app
    await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
    await pilot.press("3")
    await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
    screen = app.screen
    assert isinstance(screen, FailuresScreen)
    await wait_until(pilot, lambda: table(app, "#held-table").row_count == 4)
    return screen


async def test_the_held_list_follows_its_top_and_says_newer_rows_above(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_failures(pilot)
        held = table(app, "#held-table")
        section = screen.query_one("#held-section", Static)
        assert held.selected_key == "35" and held.cursor_row == 0  # the newest held job

        # The cursor on the first row: new held failures show at the top, the cursor with them.
        first = await add_jobs(seeded, 12, "failed")
        screen.request_refresh()
        await wait_until(pilot, lambda: held.row_count == 16, what="16 held")
        assert held.row_keys[0] == str(first[-1])
        assert held.selected_key == str(first[-1]) and held.cursor_row == 0
        assert held.rows_above == 0 and held.scroll_y == 0
        assert plain(section) == "Held failures (status failed)"

        # Moved down: the cursor stays on its job as newer ones push it down, out of the rows
        # that were in view; the line above the table says how many are above.
        await pilot.press("down", "down")
        chosen = held.selected_key
        assert chosen == str(first[-3])
        second = await add_jobs(seeded, 20, "failed")
        screen.request_refresh()
        await wait_until(pilot, lambda: held.row_count == 36, what="36 held")
        assert held.selected_key == chosen and held.cursor_row == 22
        above = held.rows_above
        assert 0 < above <= 22 and above == int(held.scroll_y)
        await wait_until(pilot, lambda: f"↑ {above} newer above (g: top)" in plain(section))
        assert held.row_keys[0] == str(second[-1])

        # g: back on the newest, the line says nothing is above.
        await pilot.press("g")
        await wait_until(pilot, lambda: plain(section) == "Held failures (status failed)")
        assert held.selected_key == str(second[-1]) and held.rows_above == 0


async def test_the_jobs_list_follows_its_top_and_says_newer_rows_above(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_jobs(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        jobs = screen.query_one(JobTable)
        header = screen.query_one("#jobs-header", Static)
        assert jobs.selected_key == "36" and jobs.cursor_row == 0

        first = await add_jobs(seeded, 5, "queued")
        screen.request_refresh()
        await wait_until(pilot, lambda: jobs.row_count == 41, what="41 jobs")
        assert jobs.selected_key == str(first[-1]) and jobs.cursor_row == 0
        assert "above" not in plain(header)

        await pilot.press("down")
        chosen = jobs.selected_key
        second = await add_jobs(seeded, 30, "queued")
        screen.request_refresh()
        await wait_until(pilot, lambda: jobs.row_count == 71, what="71 jobs")
        assert jobs.selected_key == chosen and jobs.cursor_row == 31
        above = jobs.rows_above
        assert above > 0
        await wait_until(pilot, lambda: f"↑ {above} newer above (g: top)" in plain(header))
        assert jobs.row_keys[0] == str(second[-1])
