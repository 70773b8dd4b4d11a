"""The database health screen (key 6): tables, sessions holding back vacuum, lock waits, NOTIFY
queue, listeners, schema status, and guarded schema install/upgrade."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from textual.pilot import Pilot

from pgq_console.core.clock import SystemClock
from pgq_console.core.health import HealthSnapshot, fetch_health
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.health import HealthScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.screens_support import console, open_screen, run_sql, until


@pytest.fixture(scope="module")
def snapshot_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "health_snap")
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def _text(screen: HealthScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def _until_health(pilot: Pilot[Any]) -> None:
    screen = await open_screen(pilot, "6", HealthScreen)
    try:
        await until(pilot, lambda: screen.data is not None and len(screen.data.listeners) == 1)
    except AssertionError:
        raise AssertionError(
            f"listeners: {screen.data.listeners if screen.data else None}; "
            f"status {screen.poll_status}"
        ) from None
    await until(pilot, lambda: screen.query_one("#health-tables", LiveTable).row_count == 4)
    await pilot.pause()


SNAPSHOT_SERVER_VERSION = "16.2"


@pytest.fixture
def pinned_server_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot shows the same server version whichever PostgreSQL the tests run against."""

    async def fetch_with_pinned_version(backend: Any) -> HealthSnapshot:
        data = await fetch_health(backend)
        return dataclasses.replace(data, server_version=SNAPSHOT_SERVER_VERSION)

    monkeypatch.setattr("pgq_console.screens.health.fetch_health", fetch_with_pinned_version)


@pytest.mark.usefixtures("pinned_server_version")
def test_health_snapshot(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(100, 24), run_before=_until_health)


@pytest.mark.usefixtures("pinned_server_version")
def test_health_snapshot_80x24(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(80, 24), run_before=_until_health)


async def test_sessions_locks_listeners_and_schema(fresh_database: str) -> None:
    dsn = fresh_database
    idle = await asyncpg.connect(dsn, server_settings={"application_name": "forgot-to-commit"})
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "migration"})
    waiter = await asyncpg.connect(dsn, server_settings={"application_name": "blocked-worker"})
    blocked: asyncio.Task[Any] | None = None
    try:
        await idle.execute("BEGIN; SELECT txid_current()")
        app = console(dsn, clock=SystemClock())
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await open_screen(pilot, "6", HealthScreen)
            tables = screen.query_one("#health-tables", LiveTable)
            await until(pilot, lambda: tables.row_count == 4)
            assert set(tables.row_keys) == {
                "pgqueuer",
                "pgqueuer_log",
                "pgqueuer_statistics",
                "pgqueuer_schedules",
            }
            assert tables.get_cell("pgqueuer", "kind").plain == "logged"
            assert "up to date with pgqueuer" in _text(screen, "#health-schema")
            assert "0.0% used" in _text(screen, "#health-notify")
            await until(pilot, lambda: len(screen.data.listeners) == 1)
            assert "1 dedicated LISTEN" in _text(screen, "#health-listeners")
            sessions = screen.query_one("#health-sessions", LiveTable)
            idle_pid = idle.get_server_pid()
            await until(pilot, lambda: f"long-{idle_pid}" in _keys(sessions), within=40)
            assert sessions.get_cell(f"long-{idle_pid}", "kind").plain == "idle in xact"
            assert sessions.get_cell(f"long-{idle_pid}", "app").plain == "forgot-to-commit"

            # A long lock on the queue table: the waiter shows up, the screen stays usable.
            await holder.execute("BEGIN; LOCK TABLE pgqueuer IN ACCESS EXCLUSIVE MODE")
            blocked = asyncio.create_task(waiter.fetch("SELECT count(*) FROM pgqueuer"))
            waiter_pid = waiter.get_server_pid()
            await _until_waiting(holder, waiter_pid)
            screen.action_refresh_now()
            await until(pilot, lambda: f"lock-{waiter_pid}" in _keys(sessions), within=30)
            detail = sessions.get_cell(f"lock-{waiter_pid}", "detail").plain
            assert "pgqueuer" in detail and str(holder.get_server_pid()) in detail
            # The sizes waited for the lock until the statement timeout: waiting costs the
            # server nothing, so the screen keeps its interval instead of slowing to one read
            # every 100 s (5 s at its 5 % budget) exactly while the lock stalls the queue.
            await until(pilot, lambda: screen.poll_status.took_s > 4.0, within=30)
            assert screen.poll_status.slowed_to_s is None
            assert screen.poll_status.cost_s < 4.0
            assert screen.loop.timing.due_in() <= HealthScreen.interval_s
            await pilot.press("1")  # keys keep working while the database is stuck
            await until(pilot, lambda: app.screen.__class__.__name__ == "OverviewScreen")
            await holder.execute("ROLLBACK")
            await asyncio.wait_for(blocked, 10)
            await pilot.press("6")
            screen.action_refresh_now()
            await until(pilot, lambda: f"lock-{waiter_pid}" not in _keys(sessions), within=20)
    finally:
        if blocked is not None and not blocked.done():
            blocked.cancel()
        for connection in (idle, holder, waiter):
            connection.terminate()


async def _until_waiting(observer: asyncpg.Connection, pid: int) -> None:
    """Until session `pid` waits for a lock (its statement was sent and reached the lock)."""
    for _ in range(600):
        if await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {pid} never waited for a lock")


def _keys(table: LiveTable) -> set[str]:
    return set(table.row_keys)


async def _confirm(pilot: Pilot[Any]) -> int:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
    dialog = app.screen
    await until(pilot, lambda: dialog.preview is not None, within=30)  # type: ignore[attr-defined]
    count: int = dialog.preview.count  # type: ignore[attr-defined]
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, HealthScreen), within=60)
    return count


@pytest.fixture
def bare_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "health_install", install=False)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def test_schema_upgrade_and_install_are_guarded_actions(
    fresh_database: str, bare_dsn: str
) -> None:
    # An installation missing its slot index (an older schema): upgrade re-creates it.
    dsn = fresh_database
    await run_sql(dsn, "DROP INDEX pgqueuer_picked_slot_idx")
    app = console(dsn, clock=SystemClock())
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)
        await until(pilot, lambda: "changes" in _text(screen, "#health-schema"))
        await pilot.press("u")
        assert await _confirm(pilot) >= 1
        screen.action_refresh_now()
        await until(pilot, lambda: "up to date" in _text(screen, "#health-schema"), within=20)
        # Up to date now: the dialog says so (not "No job matches"), and offers no Apply.
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await until(pilot, lambda: getattr(dialog, "preview", None) is not None)
        said = str(dialog.query_one("#confirm-count").render())
        assert said == "The schema is up to date: nothing to do.", said
        assert dialog.query_one("#confirm-apply").disabled
        await pilot.press("escape")
    assert await run_sql(
        dsn, "SELECT 1 FROM pg_indexes WHERE indexname = $1", "pgqueuer_picked_slot_idx"
    )

    bare = bare_dsn
    app = console(bare, clock=SystemClock())
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)
        assert "not installed" in _text(screen, "#health-schema")
        await pilot.press("i")
        assert await _confirm(pilot) == 1
        screen.action_refresh_now()
        await until(pilot, lambda: "up to date" in _text(screen, "#health-schema"), within=20)
    assert await run_sql(bare, "SELECT 1 FROM pg_tables WHERE tablename = 'pgqueuer'")


@pytest.mark.usefixtures("pinned_server_version")
def test_health_snapshot_160x48(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(160, 48), run_before=_until_health)
