"""The overview's refresher started by the command line before the app runs (the budget: first
numbers <= 1.5 s at 50 ms RTT): its first reading's round trips overlap the console's own start,
the overview screen adopts it (no second first reading), and one never adopted is stopped.
Real PostgreSQL, the default pool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.overview.early import EarlyRefresher
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.overview_table import OverviewTable
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, enqueue, wait_until

FIRST_LOOK = "WITH RECURSIVE eps"


@pytest.fixture(scope="module")
def dsn(server_dsn: str) -> Iterator[str]:
    made = make_database(server_dsn, "early_refresher")
    try:
        yield made
    finally:
        drop_database(server_dsn, made)


def _counting(backend: Backend, statements: list[str]) -> None:
    read = backend.read

    async def counted(sql: str, *args: object) -> list[dict[str, Any]]:
        statements.append(" ".join(sql.split())[:40])
        return await read(sql, *args)

    backend.read = counted  # type: ignore[method-assign]


async def _until(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_overview_adopts_the_refresher_and_shows_what_it_read(dsn: str) -> None:
    await enqueue(dsn, "early_ep", 3)
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    statements: list[str] = []
    _counting(backend, statements)
    early = EarlyRefresher(backend, SystemClock(), interval_s=2.0, listen=True)
    try:
        # Read before the app exists (the command line awaits the app's import meanwhile).
        await _until(lambda: early.refresher.status.refreshes >= 1, "the early first reading")
        app = PgqConsole(backend, refresh_interval=2.0)
        app.context.early_refresher = early
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.screen
            assert isinstance(screen, OverviewScreen)
            assert screen.refresher is early.refresher and early.adopted
            await wait_until(
                pilot,
                lambda: screen.query_one(OverviewTable).row_count >= 1,
                what="the early reading's rows on screen",
            )
            assert screen.snapshot is not None
            assert [row.entrypoint for row in screen.snapshot.rows] == ["early_ep"]
            assert screen.status is not None and screen.status.refreshes >= 1
            # One first look in all: the screen did not start a refresher of its own.
            assert sum(s.startswith(FIRST_LOOK) for s in statements) == 1, statements
            # New numbers reach the screen through the adopted refresher.
            await enqueue(dsn, "early_ep2", 1)
            screen.refresher.request_refresh()
            await wait_until(
                pilot,
                lambda: (
                    screen.snapshot is not None
                    and "early_ep2" in [row.entrypoint for row in screen.snapshot.rows]
                ),
                what="a later reading through the adopted refresher",
            )
        # The app's exit stopped the screen's worker, and the task with it.
        await _until(early.task.done, "the adopted refresher stopped")
        await early.cancel()  # the command line's exit: nothing more to do
    finally:
        early.task.cancel()
        await backend.close()


async def test_one_never_adopted_is_stopped(dsn: str) -> None:
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    early = EarlyRefresher(backend, SystemClock(), interval_s=2.0, listen=True)
    try:
        await _until(lambda: early.refresher.status.refreshes >= 1, "the early first reading")
        await early.cancel()
        assert early.task.done() and not early.adopted
    finally:
        await backend.close()


async def test_a_console_with_other_settings_reads_on_its_own(dsn: str) -> None:
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    early = EarlyRefresher(backend, SystemClock(), interval_s=2.0, listen=True)
    try:
        app = PgqConsole(backend, refresh_interval=5.0)  # not the early refresher's interval
        app.context.early_refresher = early
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.screen
            assert isinstance(screen, OverviewScreen)
            assert screen.refresher is not None and screen.refresher is not early.refresher
            assert screen.refresher.status.interval_s == 5.0
            await wait_until(pilot, early.task.done, what="the unused refresher stopped")
            assert not early.adopted
    finally:
        early.task.cancel()
        await backend.close()


async def test_the_command_line_starts_it_as_the_backend_opens(
    dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from pgq_console.cli import run as cli_run
    from pgq_console.cli.parser import build_parser

    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    seen: dict[str, Any] = {}

    async def run_async(self: PgqConsole) -> None:
        early = self.context.early_refresher
        seen["early"] = early
        assert isinstance(early, EarlyRefresher)
        assert early.refresher.status.interval_s == self.context.refresh_interval == 0.5
        # It reads with no app running: what the screen would adopt once mounted.
        await _until(lambda: early.refresher.status.refreshes >= 1, "the early first reading")

    monkeypatch.setattr(PgqConsole, "run_async", run_async)
    monkeypatch.setattr(cli_run, "require_terminal", lambda: None)
    args = build_parser().parse_args(["--dsn", dsn, "--refresh", "0.5"])
    assert await cli_run.run(args) == 0
    early = seen["early"]
    assert early.task.done() and not early.adopted  # never adopted: stopped at the exit
