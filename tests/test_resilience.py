"""Staying up when the database does not: restart, pg_terminate_backend, a hung backend, a locked
queue table. Each test runs its own throwaway server (a restart would hurt the shared one)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.screens.workers import WorkersScreen
from pgq_console.widgets.banner import Banner
from tests.helpers import cell, console_of, has_row, truth
from tests.resilience_support import (
    ENTRYPOINT,
    RestartableServer,
    Traffic,
    account,
    install,
    restartable_server,
)
from tests.screens_support import until

LABEL = "resilience-db"


def resilient_console(
    dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL, statement_timeout_s: float = 5.0
) -> PgqConsole:
    async def open_() -> Backend:
        backend = await open_backend(kind, dsn, Installation(), LABEL, ())
        backend.statement_timeout = timedelta(seconds=statement_timeout_s)
        return backend

    app = PgqConsole(open_, clock=SystemClock(), refresh_interval=0.5)
    app.animation_level = "none"
    return app


async def live_overview(pilot: Pilot[Any]) -> OverviewScreen:
    app = console_of(pilot)
    await until(pilot, lambda: isinstance(app.screen, OverviewScreen), within=30)
    screen = app.screen
    assert isinstance(screen, OverviewScreen)
    await until(
        pilot, lambda: bool(screen.status and screen.status.listening and screen.snapshot), 30
    )
    # The screens built ahead read at startup too: faults below are meant for the overview.
    await until(pilot, lambda: app.settled, 30)
    return screen


def banner_text(screen: OverviewScreen) -> str:
    return banner_of(screen, "#error-banner")


def banner_of(screen: Screen[Any], selector: str) -> str:
    banner = screen.query_one(selector, Banner)
    return str(banner.render()) if banner.display else ""


async def restart_cycle(
    pilot: Pilot[Any], server: RestartableServer, screen: OverviewScreen, *, visit_workers: bool
) -> None:
    """Stop the server, check the console says so and keeps working, start it, check recovery."""
    assert screen.status is not None
    reconnects = screen.status.reconnects
    await asyncio.to_thread(server.stop)
    await until(pilot, lambda: "lost the connection" in banner_text(screen), within=30)
    text = banner_text(screen)
    assert LABEL in text and "live events missed" in text and "retry" in text
    assert screen.status.lost_since is not None and screen.status.next_try_at is not None
    assert not screen.status.listening
    if visit_workers:
        # Keys keep working during the outage; the other screens say the same.
        await pilot.press("4")
        await until(pilot, lambda: isinstance(pilot.app.screen, WorkersScreen))
        workers = pilot.app.screen
        await until(
            pilot,
            lambda: "lost the connection" in str(workers.query_one("#poll-banner").render()),
            within=30,
        )
        # The Jobs screen too (its key reads fresh rows before it shows: that read fails).
        await pilot.press("2")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobsScreen), within=30)
        jobs = pilot.app.screen
        await until(pilot, lambda: "lost the connection" in banner_of(jobs, "#jobs-error"), 30)
        text = banner_of(jobs, "#jobs-error")
        assert LABEL in text and "retry" in text
        await pilot.press("1")
        await until(pilot, lambda: pilot.app.screen is screen)
    await asyncio.to_thread(server.start)
    await until(
        pilot,
        lambda: bool(
            screen.status
            and screen.status.error is None
            and screen.status.listening
            and screen.status.reconnects > reconnects
        ),
        within=90,
    )
    assert banner_text(screen) == ""
    # LISTEN is back: new jobs arrive as events again.
    events = screen.status.events_seen
    await until(pilot, lambda: bool(screen.status and screen.status.events_seen > events), 30)


async def run_restart_scenario(cycles: int) -> None:
    with restartable_server() as server:
        dsn = server.database("resilience")
        await install(dsn)
        traffic = Traffic(dsn)
        traffic.start()
        app = resilient_console(dsn)
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                screen = await live_overview(pilot)
                await until(pilot, lambda: len(traffic.completed) > 20, within=30)
                for cycle in range(cycles):
                    await restart_cycle(pilot, server, screen, visit_workers=cycle == 0)
                    done = len(traffic.completed)
                    await until(pilot, lambda d=done: len(traffic.completed) > d, within=60)  # type: ignore[misc]
                traffic.stop_producing.set()
                await asyncio.sleep(0.5)
                enqueued = set(traffic.enqueued)

                async def drained() -> bool:
                    return (
                        not (await account(dsn, enqueued))["queued"]
                        | (await account(dsn, enqueued))["picked"]
                    )

                for _ in range(600):
                    if await drained():
                        break
                    await asyncio.sleep(0.1)
                where = await account(dsn, enqueued)
                assert where["missing"] == set(), f"jobs lost: {sorted(where['missing'])[:10]}"
                assert where["completed"] == enqueued
                # The numbers reconcile with the database once it is back.
                await until(pilot, lambda: has_row(app, ENTRYPOINT), within=30)
                expected = (await truth(dsn)).get(ENTRYPOINT, {})
                wanted = (str(expected.get("ready", 0)), str(expected.get("picked", 0)))

                def shown() -> tuple[str, str]:
                    return cell(app, ENTRYPOINT, "ready"), cell(app, ENTRYPOINT, "picked")

                try:
                    await until(pilot, lambda: shown() == wanted, within=30)
                except AssertionError:
                    raise AssertionError(f"overview shows {shown()}, database {wanted}") from None
        finally:
            await traffic.stop()


async def test_server_restart_console_recovers_and_accounts_for_every_job() -> None:
    await run_restart_scenario(cycles=1)


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_terminated_backends_reconnect_and_listen_again(kind: DriverKind) -> None:
    with restartable_server() as server:
        dsn = server.database("terminate")
        await install(dsn)
        app = resilient_console(dsn, kind)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = await live_overview(pilot)
            old_connection = getattr(app.backend, "connection", None)
            terminated = await _terminate_console_sessions(dsn)
            # Every console connection is gone (LISTEN included): the console notices, opens
            # new ones and LISTENs again, so the next enqueue arrives as an event.
            if kind is DriverKind.ASYNCPG:  # LISTEN shares the query connection
                backend = app.backend
                await until(
                    pilot,
                    lambda: bool(
                        backend.connection is not old_connection  # type: ignore[union-attr]
                        and screen.status
                        and screen.status.listening
                    ),
                    within=60,
                )
            else:
                await _wait_listening_again(dsn, pilot, Installation().channel, terminated)
            events = screen.status.events_seen  # type: ignore[union-attr]
            await _admin(dsn, None, enqueue=5)
            # The log-based tier can show the row a moment before the depth tier counts it.
            await until(pilot, lambda: cell(app, "after_terminate", "ready") == "5", within=30)
            # With one connection for all, the status can still say "listening" from before a
            # read's reconnect until the next round finds the LISTEN gone with the old session
            # (on a busy machine, long enough for the NOTIFY above to go nowhere). Jobs enqueued
            # from then on are heard once it LISTENs again.
            for _ in range(60):
                if screen.status.events_seen > events:  # type: ignore[union-attr]
                    break
                await _admin(dsn, None, enqueue=1)
                await pilot.pause(0.5)
            assert screen.status.events_seen > events  # type: ignore[union-attr]
            await until(pilot, lambda: banner_text(screen) == "", within=30)


async def test_jobs_inserted_while_not_listening_are_no_broken_live_path() -> None:
    """Jobs inserted while the console's sessions are gone sent it no NOTIFY: once it LISTENs
    again and reads them, that is no sign of a broken live path (no banner, no live problem)."""
    with restartable_server() as server:
        dsn = server.database("unheard")
        await install(dsn)
        app = resilient_console(dsn)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = await live_overview(pilot)
            # Waiting for the sessions to exit: the NOTIFYs go nowhere.
            await _admin(
                dsn,
                "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity"
                " WHERE application_name LIKE 'pgq-console%' AND pid <> pg_backend_pid()",
                enqueue=5,
            )
            await until(pilot, lambda: cell(app, "after_terminate", "ready") == "5", within=60)
            await until(pilot, lambda: bool(screen.status and screen.status.listening), 60)
            refreshes = screen.status.refreshes  # type: ignore[union-attr]
            # Longer than the proof's wait (LIVE_PROOF_MIN_S at 0.5 s periods) while listening.
            await until(
                pilot,
                lambda: screen.status.refreshes > refreshes + 15,  # type: ignore[union-attr]
                within=120,
            )
            assert screen.status is not None
            assert screen.status.live_problem is None, screen.status.live_problem
            assert banner_text(screen) == ""


async def _terminate_console_sessions(dsn: str) -> set[int]:
    """pg_terminate_backend on every console session; the pids (they linger a moment in
    pg_stat_activity after the call returns)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'pgq-console%' AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return {row["pid"] for row in rows}


async def _wait_listening_again(
    dsn: str, pilot: Pilot[Any], channel: str, terminated: set[int]
) -> None:
    """A new console session LISTENs on PgQueuer's channel: not a terminated one still listed,
    nor the audit listener (its own channel, reconnecting on its own schedule)."""
    for _ in range(600):
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgq-console%'"
                " AND query = $1 AND NOT (pid = ANY($2::int[]))",
                f'LISTEN "{channel}"',
                sorted(terminated),
            )
        finally:
            await connection.close()
        if rows:
            return
        await pilot.pause(0.1)
    raise AssertionError("the console never LISTENed again")


async def _admin(dsn: str, sql: str | None, enqueue: int = 0) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        if sql:
            await connection.execute(sql)
        if enqueue:
            from pgqueuer.queries import Queries

            await Queries.from_asyncpg_connection(connection).enqueue(
                ["after_terminate"] * enqueue, [None] * enqueue, [0] * enqueue
            )
    finally:
        await connection.close()


async def test_locked_queue_table_times_out_and_keys_keep_working() -> None:
    with restartable_server() as server:
        dsn = server.database("locked")
        await install(dsn)
        holder = await asyncpg.connect(dsn)
        app = resilient_console(dsn, statement_timeout_s=1.0)
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                screen = await live_overview(pilot)
                await holder.execute("BEGIN; LOCK TABLE pgqueuer IN ACCESS EXCLUSIVE MODE")
                await until(pilot, lambda: "statement timeout" in banner_text(screen), within=30)
                # The UI answers while every read waits on the lock.
                await _responsive(pilot, lambda: pilot.press("4"))
                await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
                workers = app.screen
                await until(
                    pilot,
                    lambda: "statement timeout" in str(workers.query_one("#poll-banner").render()),
                    within=30,
                )
                await _responsive(pilot, lambda: pilot.press("t"))
                await _responsive(pilot, lambda: pilot.press("1"))
                await holder.execute("ROLLBACK")
                await until(pilot, lambda: banner_text(screen) == "", within=60)
        finally:
            await holder.close()


async def _responsive(pilot: Pilot[Any], act: Callable[[], Awaitable[None]]) -> None:
    # A key is handled well within a statement timeout (no DB wait in handlers).
    await asyncio.wait_for(act(), timeout=5)


async def test_a_hung_backend_is_cut_off_and_replaced() -> None:
    """No reply at all (a network cut; here the console's backend is SIGSTOPped, so the server
    cannot cancel the query either): the client-side deadline resets the connection."""
    with restartable_server() as server:
        dsn = server.database("hung")
        await install(dsn)
        app = resilient_console(dsn, DriverKind.ASYNCPG, statement_timeout_s=1.0)
        frozen: list[int] = []
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                screen = await live_overview(pilot)
                rows = await _pids(dsn)
                assert rows, "no console connection found"
                for pid in rows:
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
                await until(pilot, lambda: "did not answer" in banner_text(screen), within=30)
                await _responsive(pilot, lambda: pilot.press("p"))
                await _responsive(pilot, lambda: pilot.press("p"))
                await until(
                    pilot,
                    lambda: bool(screen.status and screen.status.error is None),
                    within=60,
                )
                assert set(await _pids(dsn)) - set(frozen)  # a new backend serves it
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)


async def _pids(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgq-console'"
            " AND pid <> pg_backend_pid()"
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await connection.close()
