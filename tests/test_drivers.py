"""Every driver of PgQueuer's contract reaches the overview; psycopg without autocommit warns."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, SyncPsycopgBackend
from pgq_console.core.target import DriverKind
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.widgets.banner import Banner
from tests.helpers import (
    backend_for,
    console_of,
    enqueue,
    has_row,
    number,
    overview_of,
    wait_until,
)


@pytest.fixture(scope="module", autouse=True)
async def seeded(database_dsn: str) -> None:
    await enqueue(database_dsn, "via_driver", 3)


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_driver_option_reaches_the_overview(database_dsn: str, kind: DriverKind) -> None:
    backend = await backend_for(database_dsn, kind)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "via_driver"), what=kind.value)
            assert number(app, "via_driver", "ready") == "3"
            screen = overview_of(app)
            await wait_until(pilot, lambda: bool(screen.status and screen.status.listening))
            assert kind.value in str(screen.query_one("#connection-line").render())
            # LISTEN works on every async driver: a new entrypoint shows up after its NOTIFY.
            await enqueue(database_dsn, f"pushed_{kind.name.lower()}")
            await wait_until(pilot, lambda: has_row(app, f"pushed_{kind.name.lower()}"))
    finally:
        await backend.close()


async def test_psycopg_sync_opens_the_enqueue_only_mode(database_dsn: str) -> None:
    backend = await backend_for(database_dsn, DriverKind.PSYCOPG_SYNC)
    assert isinstance(backend, SyncPsycopgBackend)
    app = PgqConsole(backend)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
            )
            mode = str(app.screen.query_one("#mode-banner").render())
            assert "Enqueue-only mode" in mode and "async driver" in mode
            table = app.screen.query_one("#depth-table")
            await wait_until(pilot, lambda: table.row_count > 0)  # type: ignore[attr-defined]
            rows = [
                [c.plain for c in table.get_row_at(i)]  # type: ignore[attr-defined]
                for i in range(table.row_count)  # type: ignore[attr-defined]
            ]
            assert ["via_driver", "queued", "0", "3"] in rows
            assert not app.screen.query("OverviewTable")  # nothing that needs an async driver
    finally:
        await backend.close()


async def test_the_enqueue_only_mode_reconnects_after_its_connection_is_killed(
    database_dsn: str,
) -> None:
    """A server restart (here: its backend terminated) ended the sync connection for good: the
    banner promised "retry N at" forever and enqueue said to restart the console. The console's
    own connection is reopened: the banner clears, the depth reads again, and enqueue writes."""
    from pgq_console.core.enqueue import Enqueuer, parse_enqueue_form

    backend = await backend_for(database_dsn, DriverKind.PSYCOPG_SYNC)
    assert isinstance(backend, SyncPsycopgBackend)

    async def kill_console_connection() -> None:
        pid = backend.connection.info.backend_pid
        admin = await asyncpg.connect(database_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    app = PgqConsole(backend, refresh_interval=0.2)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
            )
            screen = app.screen
            assert isinstance(screen, EnqueueOnlyScreen)
            table = screen.query_one("#depth-table")
            await wait_until(pilot, lambda: table.row_count > 0)  # type: ignore[attr-defined]
            first = backend.connection
            await kill_console_connection()
            banner = screen.query_one("#poll-banner")
            await wait_until(pilot, lambda: banner.display, what="the outage banner")
            assert "lost the connection" in str(banner.render())
            screen.action_refresh_now()
            await wait_until(pilot, lambda: not banner.display, what="recovered", within=20)
            assert backend.connection is not first and not backend.connection.closed
        # Killed again while nothing reads: the next enqueue reopens before it sends.
        await kill_console_connection()
        with contextlib.suppress(Exception):  # the first use finds the connection dead
            await backend.queue_size()
        request = parse_enqueue_form(
            {"entrypoint": "after_kill", "payload_kind": "text", "payload": "x", "copies": "2"},
            datetime.now(UTC),
        )
        result = await Enqueuer(backend).enqueue(request)
        assert result.error is None and len(result.ids) == 2, result
    finally:
        await backend.close()


async def test_embedding_classmethods_for_every_driver(database_dsn: str) -> None:
    connection = await asyncpg.connect(database_dsn)
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=3)
    aconn = await psycopg.AsyncConnection.connect(database_dsn, autocommit=True)
    resources = {"shared": object()}
    try:
        apps = [
            PgqConsole.from_asyncpg_connection(connection, resources=resources),
            PgqConsole.from_asyncpg_pool(pool),
            PgqConsole.from_psycopg_connection(aconn, channel="ch_pgqueuer"),
        ]
        assert apps[0].resources is resources
        assert apps[1].resources == {}
        for app in apps:
            async with app.run_test(size=(160, 30)) as pilot:
                await wait_until(pilot, lambda: has_row(console_of(pilot), "via_driver"))
                assert number(app, "via_driver", "ready") == "3"
            assert isinstance(app.backend, Backend)
            await app.backend.stop_listening()
        # The console never closes a connection it was handed.
        assert not connection.is_closed()
        assert not aconn.closed
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await connection.close()
        await pool.close()
        await aconn.close()


async def test_sync_embedding_classmethod(database_dsn: str) -> None:
    connection = psycopg.connect(database_dsn, autocommit=True)
    try:
        app = PgqConsole.from_sync_psycopg_connection(connection)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
            )
    finally:
        connection.close()


async def test_autocommit_banner_and_its_key(database_dsn: str) -> None:
    connection = await psycopg.AsyncConnection.connect(database_dsn)  # autocommit off
    try:
        app = PgqConsole.from_psycopg_connection(connection, refresh_interval=0.5)
        async with app.run_test(size=(160, 30)) as pilot:
            screen = overview_of(app)
            banner = screen.query_one("#autocommit-banner", Banner)
            await wait_until(pilot, lambda: banner.display)
            text = str(banner.render())
            assert "not in autocommit mode" in text
            assert "live statistics" in text and "consumers" in text
            assert "autocommit = True" in text and "press `a`" in text
            await pilot.pause(0.6)
            assert not has_row(app, "via_driver")  # nothing ran on the connection
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

            # Inside an open transaction the switch is refused and says why.
            await connection.execute("SELECT 1")
            await pilot.press("a")
            await pilot.pause(0.3)
            assert banner.display and not connection.autocommit
            assert any("inside a transaction" in n.message for n in app._notifications)
            await connection.rollback()

            await pilot.press("a")
            await wait_until(pilot, lambda: not banner.display)
            assert connection.autocommit
            await wait_until(pilot, lambda: has_row(app, "via_driver"))
            assert number(app, "via_driver", "ready") == "3"
            await wait_until(pilot, lambda: bool(screen.status and screen.status.listening))
        assert app.backend is not None
        await app.backend.stop_listening()
    finally:
        await connection.close()


async def test_sync_psycopg_without_autocommit_warns(database_dsn: str) -> None:
    connection = psycopg.connect(database_dsn)
    try:
        app = PgqConsole.from_sync_psycopg_connection(connection)
        async with app.run_test(size=(120, 30)) as pilot:
            banner = app.screen.query_one("#autocommit-banner", Banner)
            await wait_until(pilot, lambda: banner.display)
            assert "not in autocommit mode" in str(banner.render())
            await pilot.press("a")
            await wait_until(pilot, lambda: not banner.display)
            assert connection.autocommit
    finally:
        connection.close()
