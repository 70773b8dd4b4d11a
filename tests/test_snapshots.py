"""SVG snapshots of every screen, rendered from real PostgreSQL with fixed data and a fixed clock.

Each snapshot has a behaviour test elsewhere (test_overview_live, test_drivers) that asserts the
data; `run_before` here also waits for the data, so an empty screen cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg
import pytest
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, PsycopgBackend, open_backend
from pgq_console.core.clock import FixedClock
from pgq_console.core.stats import RATE_WINDOW_S
from pgq_console.core.target import DriverKind, Installation
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import wait_until

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "ops@db.example.com:5432/app"

SEED_QUEUE = """
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'send_email', t, t
    FROM generate_series(1, 1200) g,
    LATERAL (SELECT $1::timestamptz - make_interval(secs => 90 + g) t) s;
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 5, 'queued', 'send_email', $1, now() + interval '1 day' FROM generate_series(1, 40);
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'resize_image',
    $1::timestamptz - interval '80 seconds', $1::timestamptz - interval '80 seconds'
    FROM generate_series(1, 7);
INSERT INTO pgqueuer (priority, status, entrypoint, created, queue_manager_id)
SELECT 0, 'picked', 'resize_image', $1, gen_random_uuid() FROM generate_series(1, 3);
INSERT INTO pgqueuer (priority, status, entrypoint, created)
SELECT 0, 'failed', 'charge_card', $1 FROM generate_series(1, 4);
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'build_report',
    $1::timestamptz - interval '25 minutes', $1::timestamptz - interval '25 minutes'
    FROM generate_series(1, 2);
"""

# Log rows relative to the server's now(): they fall in the same windows on every run.
SEED_LOG = """
TRUNCATE pgqueuer_log, pgqueuer_statistics;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 100000 + g, s.status::pgqueuer_status, 0, s.entrypoint, now() - s.ago
FROM (VALUES
    ('send_email', 'successful', interval '3 seconds', 30),
    ('send_email', 'queued', interval '3 seconds', 45),
    ('send_email', 'successful', interval '90 seconds', 120),
    ('send_email', 'successful', interval '20 minutes', 300),
    ('resize_image', 'successful', interval '30 seconds', 12),
    ('resize_image', 'successful', interval '10 minutes', 50),
    ('charge_card', 'exception', interval '40 seconds', 2),
    ('charge_card', 'failed', interval '5 minutes', 4),
    ('charge_card', 'successful', interval '5 minutes', 25)
) AS s(entrypoint, status, ago, n), generate_series(1, s.n) g;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 900000 + g, s.status::pgqueuer_status, 0, 'send_email', now() - s.ago
FROM generate_series(1, 20) g, (VALUES
    ('picked', interval '100 seconds'), ('successful', interval '99.6 seconds')
) AS s(status, ago);
"""


@pytest.fixture(scope="module")
def snapshot_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "snapshots")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in filter(str.strip, SEED_QUEUE.split(";")):
                await connection.execute(statement, FIXED_NOW)
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def seed_log(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SEED_LOG)
    finally:
        await connection.close()


# The database `until_overview_ready` seeds the log of again (the current test's).
SEEDED: dict[str, str] = {}


@pytest.fixture
def seeded_dsn(snapshot_dsn: str) -> str:
    asyncio.run(seed_log(snapshot_dsn))
    SEEDED["dsn"] = snapshot_dsn
    return snapshot_dsn


def console(opener: Callable[[], Any], **options: Any) -> PgqConsole:
    app = PgqConsole(opener, clock=FixedClock(FIXED_NOW), **options)
    app.animation_level = "none"
    return app


def opener_for(dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL) -> Callable[[], Any]:
    async def open_() -> Backend:
        return await open_backend(kind, dsn, Installation(), LABEL, ())

    return open_


# What SEED_LOG's newest rows (3 s old) make the rates: 45 enqueued, 30 done in the window.
SEEDED_RATES = (45 / RATE_WINDOW_S, 30 / RATE_WINDOW_S)


def fresh_since(screen: Any, previous: object) -> Callable[[], bool]:
    return lambda: screen.snapshot is not previous


async def until_overview_ready(pilot: Pilot[Any], rows: int = 4) -> None:
    from pgq_console.screens.overview import OverviewScreen
    from pgq_console.widgets.overview_table import OverviewTable

    app = pilot.app

    def ready() -> bool:
        screen = app.screen
        if not (isinstance(screen, OverviewScreen) and screen.status and screen.status.listening):
            return False
        return screen.query_one(OverviewTable).row_count == rows and bool(screen.snapshot)

    await wait_until(pilot, ready, what="the overview with its data")
    # The log rows are placed relative to the server's clock and the rates count the last
    # RATE_WINDOW_S: a busy machine can take longer than that from seeding to the console's read.
    # Seed them again and take the next read, until one comes soon enough to count them all.
    screen = app.screen
    assert isinstance(screen, OverviewScreen)
    for _ in range(20):
        totals = screen.snapshot.totals if screen.snapshot else None
        if totals and (totals.rate_in, totals.rate_out) == SEEDED_RATES:
            break
        previous = screen.snapshot
        await seed_log(SEEDED["dsn"])
        assert screen.refresher is not None
        screen.refresher.request_refresh()
        await wait_until(pilot, fresh_since(screen, previous), what="a fresh read")
    await pilot.pause()


def test_overview(snap_compare: Any, seeded_dsn: str) -> None:
    assert snap_compare(
        console(opener_for(seeded_dsn)), terminal_size=(130, 24), run_before=until_overview_ready
    )


def test_overview_80x24(snap_compare: Any, seeded_dsn: str) -> None:
    assert snap_compare(
        console(opener_for(seeded_dsn)), terminal_size=(80, 24), run_before=until_overview_ready
    )


async def until_overview_pulse(pilot: Pilot[Any]) -> None:
    """The overview's data, and on a large terminal its tiles, chart and event feed filled."""
    from pgq_console.screens.overview import OverviewScreen
    from pgq_console.widgets.pulse import RateChart

    await until_overview_ready(pilot)
    app = pilot.app

    def filled() -> bool:
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        return bool(screen.query_one(RateChart).samples) and bool(screen.feed.events)

    await wait_until(pilot, filled, what="the tiles, chart and feed")
    await pilot.pause()


def test_overview_160x48(snap_compare: Any, seeded_dsn: str) -> None:
    assert snap_compare(
        console(opener_for(seeded_dsn)), terminal_size=(160, 48), run_before=until_overview_pulse
    )


def test_overview_light_theme(snap_compare: Any, seeded_dsn: str) -> None:
    app = console(opener_for(seeded_dsn), theme="pgq-light")
    assert snap_compare(app, terminal_size=(130, 24), run_before=until_overview_ready)


def test_autocommit_banner(snap_compare: Any, seeded_dsn: str) -> None:
    async def open_() -> Backend:
        connection = await psycopg.AsyncConnection.connect(seeded_dsn)  # autocommit off
        return PsycopgBackend(connection, Installation(), LABEL, owned=True)

    async def until_banner(pilot: Pilot[Any]) -> None:
        for _ in range(500):
            banner = pilot.app.screen.query("#autocommit-banner")
            if banner and banner.first().display:
                break
            await pilot.pause(0.02)
        else:
            raise AssertionError("no autocommit banner")

    assert snap_compare(console(open_), terminal_size=(100, 24), run_before=until_banner)


def test_enqueue_only_mode(snap_compare: Any, seeded_dsn: str) -> None:
    async def until_depth(pilot: Pilot[Any]) -> None:
        for _ in range(500):
            tables = pilot.app.screen.query("#depth-table")
            if tables and tables.first().row_count == 6:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.02)
        else:
            raise AssertionError("no queue depth")

    app = console(opener_for(seeded_dsn, DriverKind.PSYCOPG_SYNC))
    assert snap_compare(app, terminal_size=(100, 24), run_before=until_depth)


def test_enqueue_only_mode_80x24(snap_compare: Any, seeded_dsn: str) -> None:
    async def until_depth(pilot: Pilot[Any]) -> None:
        for _ in range(500):
            tables = pilot.app.screen.query("#depth-table")
            if tables and tables.first().row_count == 6:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.02)
        else:
            raise AssertionError("no queue depth")

    app = console(opener_for(seeded_dsn, DriverKind.PSYCOPG_SYNC))
    assert snap_compare(app, terminal_size=(80, 24), run_before=until_depth)


def test_enqueue_only_mode_160x48(snap_compare: Any, seeded_dsn: str) -> None:
    async def until_depth(pilot: Pilot[Any]) -> None:
        await wait_until(
            pilot,
            lambda: any(t.row_count == 6 for t in pilot.app.screen.query(LiveTable)),
            what="the queue depth",
        )
        await pilot.pause()

    app = console(opener_for(seeded_dsn, DriverKind.PSYCOPG_SYNC))
    assert snap_compare(app, terminal_size=(160, 48), run_before=until_depth)
