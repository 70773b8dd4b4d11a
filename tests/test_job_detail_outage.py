"""An open job detail says when its data is no longer current: the server goes away while it is
shown (its own throwaway server: a stop would hurt the shared one)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from textual.widgets import Static

from pgq_console.core.clock import SystemClock
from pgq_console.core.target import DriverKind
from pgq_console.screens import job_detail as detail_module
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.widgets.job_table import JobTable
from tests.resilience_support import install, restartable_server
from tests.screens_support import until
from tests.test_resilience import LABEL, banner_of, live_overview, resilient_console


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_an_open_job_detail_says_when_the_connection_is_lost_and_freezes_its_ages(
    kind: DriverKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It showed no banner and its ages ticked on as if live until the next read (it reads
    once: a detail does not poll). The closed LISTEN connection tells it: it reads again, and
    the failed read shows the outage line with the ages held at the last good read."""
    monkeypatch.setattr(detail_module, "DETAIL_RETRY_S", 0.5)
    with restartable_server() as server:
        dsn = server.database("detail_outage")
        await install(dsn)
        connection = await asyncpg.connect(dsn)
        try:
            job_id = await connection.fetchval(
                "INSERT INTO pgqueuer (priority, status, entrypoint, payload)"
                " VALUES (0, 'queued', 'detail_outage', '{}'::bytea) RETURNING id"
            )
        finally:
            await connection.close()
        app = resilient_console(dsn, kind)
        async with app.run_test(size=(120, 40)) as pilot:
            await live_overview(pilot)
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen), within=30)
            jobs = app.screen.query_one(JobTable)
            await until(pilot, lambda: job_id in jobs.jobs, within=30)
            jobs.move_cursor(row=jobs.get_row_index(str(job_id)))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), within=30)
            screen = app.screen
            assert isinstance(screen, JobDetailScreen)
            await until(pilot, lambda: screen.detail is not None, within=30)
            assert app.backend is not None and app.backend.listener_alive()

            def said() -> str:  # everything the screen shows
                return "\n".join(str(widget.render()) for widget in screen.query(Static))

            assert "lost the connection" not in said()

            await asyncio.to_thread(server.stop)
            await until(pilot, lambda: "lost the connection" in said(), 30)
            text = banner_of(screen, "#detail-banner")
            read_at = screen.read_at
            assert read_at is not None and LABEL in text and "retry" in text
            assert f"numbers below are from {read_at:%H:%M:%S}" in text

            def fields() -> str:
                return str(screen.query_one("#detail-fields", Static).render())

            assert f"ages as of {read_at:%H:%M:%S}" in fields()
            # Later ticks leave the ages as they were read.
            frozen = fields()
            clock = SystemClock()
            await until(pilot, lambda: clock.now() > read_at + timedelta(seconds=2.5), 30)
            screen._tick()
            assert fields() == frozen

            # The server is back: the next retry reads the job; the banner goes.
            await asyncio.to_thread(server.start)
            await until(pilot, lambda: banner_of(screen, "#detail-banner") == "", within=90)
            assert screen.read_at is not None and screen.read_at > read_at
            assert "ages as of" not in fields()
