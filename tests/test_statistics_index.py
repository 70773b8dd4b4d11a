"""The statistics table's index on created (PgQueuer has none, and nothing prunes the table):
previewed with the plan of the overview's hour read, created CONCURRENTLY as a guarded, audited
action on the Database screen (key s), the hour read then uses it. Real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from textual.geometry import Region
from textual.widgets import Static

from pgq_console.core import actions, audit
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.health import fetch_health
from pgq_console.core.index_cache import STATISTICS_LARGE_ROWS
from pgq_console.core.indexes import (
    INDEX_BUILDS,
    StatisticsIndexAction,
    fetch_statistics_index,
)
from pgq_console.core.models import RefreshStatus
from pgq_console.core.overview import Refresher
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.health import HealthScreen
from tests.helpers import notifications_of, wait_for
from tests.screens_support import console, open_screen, run_sql, until
from tests.test_held_index import _confirm

HISTORY = 60_000  # old statistics rows: enough for the planner to prefer the index for an hour


async def _history(dsn: str, table: str = "pgqueuer_statistics", rows: int = HISTORY) -> None:
    """`rows` one-a-second statistics rows older than an hour, a few in the last hour."""
    await run_sql(
        dsn,
        f"INSERT INTO {table} (created, count, priority, entrypoint, status) "
        "SELECT now() - interval '2 hours' - s * interval '1 second', 3, 0, 'ep', 'successful' "
        f"FROM generate_series(1, {rows}) s",
    )
    await run_sql(
        dsn,
        f"INSERT INTO {table} (created, count, priority, entrypoint, status) "
        "SELECT now() - s * interval '1 second', 2, 0, 'ep', 'successful' "
        "FROM generate_series(1, 30) s",
    )
    await run_sql(dsn, f"ANALYZE {table}")


async def _backend(dsn: str, installation: Installation | None = None, **options: Any) -> Backend:
    return await open_backend(
        DriverKind.ASYNCPG_POOL, dsn, installation or Installation(), "test-db", (), **options
    )


def without_costs(plan: Iterable[str]) -> list[str]:
    """Plan lines without their estimates (`(cost=... rows=... width=...)`)."""
    return [re.sub(r"\s*\(cost=[^)]*\)", "", str(line)) for line in plan]


async def test_previewed_built_audited_and_the_hour_read_uses_it(fresh_database: str) -> None:
    dsn = fresh_database
    await _history(dsn)
    backend = await _backend(dsn)
    try:
        before = await fetch_statistics_index(backend)
        assert not before.exists and before.table_rows is not None
        assert before.plan[0].startswith("Seq Scan on pgqueuer_statistics"), before.plan
        action = StatisticsIndexAction()
        preview = await action.preview(backend)
        assert preview.count == 1
        assert preview.statement == (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS pgqueuer_statistics_created_idx "
            "ON pgqueuer_statistics (created)"
        )
        # The plan before (the row estimate of `created > now() - 1 hour` moves as now() does).
        assert without_costs(row[0] for row in preview.sample) == without_costs(before.plan[:8])
        assert "overview's hour read" in preview.columns[0]
        result = await actions.execute(backend, action, preview, reason="30 days of history")
        assert result.changed == 1
        await INDEX_BUILDS["pgqueuer_statistics_created_idx"]  # built aside, after the commit
        after = await fetch_statistics_index(backend)
        assert after.usable
        # The overview's hour read (EXPLAIN only) now reads the statistics through the index.
        assert "Seq Scan" not in after.plan[0], after.plan
        assert "pgqueuer_statistics_created_idx" in " ".join(after.plan), after.plan
        [record] = audit.read_records()
        assert record["action"] == "statistics-index"
        assert record["reason"] == "30 days of history"
        health = await fetch_health(backend)
        assert health.statistics_index is not None and health.statistics_index.usable
        assert health.schema.pending == ()  # PgQueuer's upgrade does not want to drop it
        again = await StatisticsIndexAction().preview(backend)
        assert again.count == 0
        # One sentence says why there is nothing to do (not "No index matches" beside it).
        assert again.nothing_to_do == (
            "pgqueuer_statistics_created_idx exists already: nothing to do."
        )
        assert not any("exists already" in note for note in again.notes)
        assert f"{preview.verb} {preview.counted()}" == "create 1 index"
    finally:
        await backend.close()


async def test_a_custom_installation_gets_its_own_index_in_its_schema(
    fresh_database: str,
) -> None:
    """Its own schema (not on the search path) and prefix: the index is named after its
    statistics table and made in its schema; an INVALID leftover there is dropped first."""
    dsn = fresh_database
    own = Installation.select(schema="jobs", prefix="app_")
    await run_sql(dsn, "CREATE SCHEMA jobs")
    installer = await _backend(dsn, own)
    try:
        await own.queries(installer.new_driver(await installer.new_connection())).install()
    finally:
        await installer.close()
    await _history(dsn, "jobs.app_pgqueuer_statistics", rows=2_000)
    await run_sql(
        dsn,
        "CREATE INDEX app_pgqueuer_statistics_created_idx "
        "ON jobs.app_pgqueuer_statistics (created)",
    )
    await run_sql(
        dsn,
        "UPDATE pg_index SET indisvalid = false "
        "WHERE indexrelid = 'jobs.app_pgqueuer_statistics_created_idx'::regclass",
    )
    backend = await _backend(dsn, own)
    try:
        action = StatisticsIndexAction()
        preview = await action.preview(backend)
        assert preview.count == 1 and "INVALID" in preview.notes[0]
        assert preview.statement == (
            "DROP INDEX CONCURRENTLY IF EXISTS jobs.app_pgqueuer_statistics_created_idx;\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS app_pgqueuer_statistics_created_idx "
            "ON jobs.app_pgqueuer_statistics (created)"
        )
        await actions.execute(backend, action, preview)
        await INDEX_BUILDS["jobs.app_pgqueuer_statistics_created_idx"]
        [record] = audit.read_records()
        assert record["index"] == "jobs.app_pgqueuer_statistics_created_idx"
        assert record["table"] == "jobs.app_pgqueuer_statistics" and record["job_ids"] == []
        assert (await fetch_statistics_index(backend)).usable
        rows = await run_sql(
            dsn,
            "SELECT schemaname, tablename, indexdef FROM pg_indexes "
            "WHERE indexname = 'app_pgqueuer_statistics_created_idx'",
        )
        assert [(r["schemaname"], r["tablename"]) for r in rows] == [
            ("jobs", "app_pgqueuer_statistics")
        ]
        # The default installation's statistics table was left alone.
        default = await run_sql(
            dsn,
            "SELECT 1 FROM pg_indexes WHERE tablename = 'pgqueuer_statistics' "
            "AND indexdef LIKE '%(created)%'",
        )
        assert default == []
    finally:
        await backend.close()


async def test_read_only_refuses(fresh_database: str) -> None:
    INDEX_BUILDS.pop("pgqueuer_statistics_created_idx", None)  # an earlier test's build
    backend = await _backend(fresh_database, read_only=True)
    try:
        action = StatisticsIndexAction()
        preview = await action.preview(backend)
        assert preview.count == 1
        with pytest.raises(ConsoleError, match="read-only"):
            await actions.execute(backend, action, preview)
        assert "pgqueuer_statistics_created_idx" not in INDEX_BUILDS
        assert not (await fetch_statistics_index(backend)).exists
        assert audit.read_records() == []
    finally:
        await backend.close()


def _large(monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen's 'large' from this test's history on (millions of rows take too long)."""
    monkeypatch.setattr("pgq_console.screens.health.STATISTICS_LARGE_ROWS", HISTORY // 2)


async def test_the_database_screen_says_so_and_creates_it(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = fresh_database
    assert HISTORY < STATISTICS_LARGE_ROWS
    _large(monkeypatch)
    await _history(dsn)
    app = console(dsn)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return str(screen.query_one("#health-statistics-index").render())

        await until(pilot, lambda: "no index on created" in line())
        text = " ".join(line().split())
        assert "~60.0k rows, no index on created: the overview's hour reads scan it all" in text
        assert "(s: review and create)" in text
        assert "plan: Seq Scan on pgqueuer_statistics" in text
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await until(pilot, lambda: dialog.preview is not None, within=30)  # type: ignore[attr-defined]
        statement = str(dialog.query_one("#confirm-statement").render())
        assert "\nCREATE INDEX CONCURRENTLY" in statement, statement
        assert str(dialog.query_one("#confirm-count").render()) == "create 1 index"
        await _confirm(pilot)
        screen.action_refresh_now()
        await until(pilot, lambda: "indexed (pgqueuer_statistics_created_idx)" in line(), within=30)
        assert "plan: Seq Scan" not in " ".join(line().split())


@pytest.mark.parametrize("size", [(200, 50), (80, 24)])
async def test_the_dialog_shows_each_plan_line_whole(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    """The plan before (from the database) is shown line by line in full, wrapped at the
    dialog's width: not cut to a table cell ("Seq Scan on pgqueuer_statistics  (cost=…")."""
    dsn = fresh_database
    _large(monkeypatch)
    await _history(dsn)
    backend = await _backend(dsn)
    try:
        before = await fetch_statistics_index(backend)
    finally:
        await backend.close()
    assert any(len(line) > 60 for line in before.plan), before.plan
    app = console(dsn)
    async with app.run_test(size=size) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)
        await until(
            pilot,
            lambda: (
                "no index on created" in str(screen.query_one("#health-statistics-index").render())
            ),
        )
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        await until(pilot, lambda: dialog.preview is not None, within=30)  # type: ignore[attr-defined]
        plan = dialog.query_one("#confirm-plan", Static)
        await until(pilot, lambda: plan.size.height >= len(before.plan[:8]) + 1)
        # What the terminal is given: the widget's lines at its width.
        strips = plan.render_lines(Region(0, 0, plan.size.width, plan.size.height))
        shown = "".join("".join(strip.text for strip in strips).split())
        assert "…" not in shown
        # The dialog's own plan (read with its preview: the estimates of a second EXPLAIN
        # moments later can differ by a row as now() moves).
        previewed = [row[0] for row in dialog.preview.sample]  # type: ignore[attr-defined]
        assert len(previewed) == len(before.plan[:8])
        for line in previewed:
            assert "".join(str(line).split()) in shown, (line, shown)
        assert "(cost=" in shown and "Filter:(created>(now()-'01:00:00'::interval))" in shown


async def test_small_history_is_not_a_problem(fresh_database: str) -> None:
    app = console(fresh_database)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return " ".join(str(screen.query_one("#health-statistics-index").render()).split())

        await until(pilot, lambda: "no index on created" in line())
        assert "not needed while small" in line() and "review and create" not in line()


async def test_read_only_screen_neither_offers_nor_opens_it(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _large(monkeypatch)
    await _history(fresh_database)
    app = console(fresh_database, read_only=True)
    sent = notifications_of(app)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return " ".join(str(screen.query_one("#health-statistics-index").render()).split())

        await until(pilot, lambda: "the overview's hour reads scan it all" in line())
        assert "review and create" not in line()
        assert not screen.check_action("statistics_index", ())
        screen.action_statistics_index()  # as `:` or the palette would, were it listed
        await pilot.pause()
        assert not isinstance(app.screen, ActionConfirmScreen)
        assert any("read-only" in message for message in sent), sent


@contextlib.asynccontextmanager
async def _starved_refresher(
    backend: Backend,
) -> AsyncIterator[tuple[Refresher, list[RefreshStatus]]]:
    """A refresher whose budget is so small that any windows read stretches the rates."""
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=lambda _: None,
        on_status=statuses.append,
        interval_s=0.5,
        budget=1e-6,
    )
    task = asyncio.create_task(refresher.run())
    try:
        yield refresher, statuses
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.close()


async def test_the_overview_says_slow_rates_are_the_missing_index(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rates read minutes apart (here: a budget so small that any windows read stretches them)
    while the statistics table is large and has no index on created: the live line's note says
    so and names the key; once the console built the index, the note is gone."""
    INDEX_BUILDS.pop("pgqueuer_statistics_created_idx", None)
    monkeypatch.setattr("pgq_console.core.overview.tiers.STATISTICS_LARGE_ROWS", HISTORY // 2)
    await _history(fresh_database)
    backend = await _backend(fresh_database)
    async with _starved_refresher(backend) as (refresher, statuses):
        await wait_for(lambda: bool(statuses) and statuses[-1].windows_note is not None)
        note = statuses[-1].windows_note or ""
        assert note.startswith("rates every ") and "a read takes" in note
        assert "statistics table not indexed on created (6, then s)" in note
        action = StatisticsIndexAction()
        await actions.execute(backend, action, await action.preview(backend))
        await INDEX_BUILDS["pgqueuer_statistics_created_idx"]
        seen = len(statuses)
        await wait_for(lambda: len(statuses) > seen and statuses[-1].windows_note is None)


async def test_slow_rates_over_a_small_statistics_table_are_not_blamed_on_it(
    fresh_database: str,
) -> None:
    """A busy last hour costs what it costs: with little history the index would not help, so
    the overview does not send anyone to create it."""
    backend = await _backend(fresh_database)
    async with _starved_refresher(backend) as (refresher, statuses):
        await wait_for(lambda: len(statuses) >= 3 and statuses[-1].refreshes >= 2)
        assert refresher.tiers._windows_readings, "the windows were read"
        assert all(status.windows_note is None for status in statuses)


async def test_the_overview_live_line_shows_the_note(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80x24: the note is on the overview's live line (rates stretched to minutes is made
    the norm here: the threshold is set to any stretch at all)."""
    from pgq_console.screens.overview import OverviewScreen
    from pgq_console.widgets.status_line import LiveLine

    monkeypatch.setattr("pgq_console.core.overview.tiers.SLOW_WINDOWS_S", 0.0)
    monkeypatch.setattr("pgq_console.core.overview.tiers.STATISTICS_LARGE_ROWS", HISTORY // 2)
    await _history(fresh_database)
    app = console(fresh_database, clock=SystemClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))

        def live() -> str:
            return " ".join(str(app.screen.query_one(LiveLine).render()).split())

        await until(pilot, lambda: "not indexed on created (6, then s)" in live())
        assert "rates every " in live() and "a read takes" in live()
