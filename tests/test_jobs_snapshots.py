"""SVG snapshots of the Jobs, Failures, Job detail and confirm screens (fixed data and clock).

The behaviour behind each is asserted in tests/test_jobs_screens.py; `run_before` here waits for
the data, so an empty screen cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.core.actions import ids_predicate, requeue
from pgq_console.core.backend import Backend
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import console_of, wait_until
from tests.jobs_seed import seed
from tests.test_jobs_screens import console


@pytest.fixture(scope="module")
def snap_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "jobs_snapshots")
    asyncio.run(seed(dsn))
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def _wait(pilot: Pilot[Any], predicate: Any) -> None:
    await wait_until(pilot, predicate, what="the screen with its data")
    await pilot.pause()


async def _to_mode(pilot: Pilot[Any], key: str, selector: str, rows: int) -> None:
    app = console_of(pilot)
    await _wait(pilot, lambda: app.backend is not None and app.screen.id != "_default")
    # A snapshot is of the settled console (the screens built ahead are built).
    await _wait(pilot, lambda: app.settled)
    await pilot.press(key)
    await _wait(
        pilot,
        lambda: (
            bool(app.screen.query(selector))
            and app.screen.query_one(selector, LiveTable).row_count == rows
        ),
    )


def test_jobs(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "2", "#jobs-table", 36)

    assert snap_compare(console(snap_dsn), terminal_size=(120, 30), run_before=before)


def test_jobs_80x24_read_only(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "2", "#jobs-table", 36)

    app = console(snap_dsn, read_only=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_failures(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "3", "#held-table", 4)
        await _wait(
            pilot, lambda: pilot.app.screen.query_one("#group-table", LiveTable).row_count == 3
        )

    assert snap_compare(console(snap_dsn), terminal_size=(130, 36), run_before=before)


def test_failures_80x24_groups_focused(snap_compare: Any, snap_dsn: str) -> None:
    """The groups table with its cursor; the sample below is the highlighted group's."""

    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "3", "#held-table", 4)
        await _wait(
            pilot, lambda: pilot.app.screen.query_one("#group-table", LiveTable).row_count == 3
        )
        await pilot.press("tab", "j")

    assert snap_compare(console(snap_dsn), terminal_size=(80, 24), run_before=before)


def test_job_detail_hostile(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = console_of(pilot)
        await _to_mode(pilot, "2", "#jobs-table", 36)
        assert isinstance(app.backend, Backend)
        app.push_screen(JobDetailScreen(app.backend, app.clock, 35))
        await _wait(pilot, lambda: getattr(app.screen, "detail", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(110, 50), run_before=before)


def test_job_detail_80x24(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await _to_mode(pilot, "2", "#jobs-table", 36)
        assert isinstance(app, PgqConsole) and isinstance(app.backend, Backend)
        app.push_screen(JobDetailScreen(app.backend, app.clock, 31))
        await _wait(pilot, lambda: getattr(app.screen, "detail", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(80, 24), run_before=before)


def test_confirm_requeue(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = console_of(pilot)
        await _to_mode(pilot, "3", "#held-table", 4)
        backend = app.backend
        assert isinstance(backend, Backend)
        app.push_screen(ActionConfirmScreen(backend, requeue(backend, ids_predicate([31, 32, 35]))))
        await _wait(pilot, lambda: getattr(app.screen, "preview", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(120, 40), run_before=before)


def test_confirm_requeue_80x24(snap_compare: Any, snap_dsn: str) -> None:
    """On a small terminal the count, reason and buttons stay visible (the statement is cut)."""

    async def before(pilot: Pilot[Any]) -> None:
        app = console_of(pilot)
        await _to_mode(pilot, "3", "#held-table", 4)
        backend = app.backend
        assert isinstance(backend, Backend)
        app.push_screen(ActionConfirmScreen(backend, requeue(backend, ids_predicate([31, 32, 35]))))
        await _wait(pilot, lambda: getattr(app.screen, "preview", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(80, 24), run_before=before)


def test_jobs_160x48(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "2", "#jobs-table", 36)

    assert snap_compare(console(snap_dsn), terminal_size=(160, 48), run_before=before)


def test_failures_160x48(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_mode(pilot, "3", "#held-table", 4)
        await _wait(
            pilot, lambda: pilot.app.screen.query_one("#group-table", LiveTable).row_count == 3
        )

    assert snap_compare(console(snap_dsn), terminal_size=(160, 48), run_before=before)


def test_job_detail_160x48(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = console_of(pilot)
        await _to_mode(pilot, "2", "#jobs-table", 36)
        assert isinstance(app.backend, Backend)
        app.push_screen(JobDetailScreen(app.backend, app.clock, 31))
        await _wait(pilot, lambda: getattr(app.screen, "detail", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(160, 48), run_before=before)


def test_confirm_requeue_160x48(snap_compare: Any, snap_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = console_of(pilot)
        await _to_mode(pilot, "3", "#held-table", 4)
        backend = app.backend
        assert isinstance(backend, Backend)
        app.push_screen(ActionConfirmScreen(backend, requeue(backend, ids_predicate([31, 32, 35]))))
        await _wait(pilot, lambda: getattr(app.screen, "preview", None) is not None)

    assert snap_compare(console(snap_dsn), terminal_size=(160, 48), run_before=before)
