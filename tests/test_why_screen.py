"""The Why screen: `w` on a job's detail and on an overview entrypoint row lists the reasons
(read in a worker) and the facts; `I` writes an incident bundle from the running console."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from pgq_console.app import PgqConsole
from pgq_console.console_bundle import NOTHING_TO_READ, SERVED
from pgq_console.core.backend import Backend
from pgq_console.core.bundle import bundle_dir
from pgq_console.core.clock import SystemClock
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.screens.why import WhyScreen
from pgq_console.widgets.overview_table import OverviewTable
from tests.conftest import drop_database, make_database
from tests.helpers import console_of, wait_until
from tests.screens_support import console as support_console
from tests.screens_support import run_sql
from tests.test_jobs_screens import console
from tests.test_security_console import RecordingConsole
from tests.test_security_console import console as security_console

TRACEBACK = json.dumps(
    {
        "job_id": 7001,
        "exception_type": "ValueError",
        "exception_message": "card declined for order 7",
        "traceback": 'Traceback (most recent call last):\n  File "/app/billing.py", line 12, '
        "in charge\nValueError: card declined for order 7\n",
        "additional_context": None,
    }
)
SEED = """
INSERT INTO pgqueuer (id, priority, status, entrypoint, created, updated, heartbeat,
    execute_after, dedupe_key, payload, headers)
VALUES (7001, 0, 'failed', 'charge_card', '2026-01-01 10:00+00', '2026-01-01 10:05+00',
    '2026-01-01 10:05+00', '2026-01-01 10:00+00', 'order-7', 'PAYLOAD-SECRET',
    '{"authorization": "Bearer HEADER-SECRET"}');
INSERT INTO pgqueuer (id, priority, status, entrypoint, created, updated, heartbeat,
    execute_after)
VALUES (7002, 0, 'queued', 'lonely', '2026-01-01 11:00+00', '2026-01-01 11:00+00',
    '2026-01-01 11:00+00', '2026-01-01 11:00+00');
INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, created, traceback)
VALUES (7001, 'failed', 'charge_card', 0, '2026-01-01 10:05+00', $1::jsonb)
"""


async def seed(dsn: str) -> None:
    """Fixed times only: the screen shows them (the snapshot stays the same every day)."""
    for statement in [s for s in SEED.split(";") if s.strip()]:
        if "$1" in statement:
            await run_sql(dsn, statement, TRACEBACK)
        else:
            await run_sql(dsn, statement)


@pytest.fixture(scope="module")
def why_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "why_screen")
    asyncio.run(seed(dsn))
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def ready(pilot: Pilot[Any]) -> PgqConsole:
    app = console_of(pilot)
    await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="the overview")
    await wait_until(pilot, lambda: app.settled, what="a settled console")
    return app


async def open_why_of_job(pilot: Pilot[Any], job_id: int) -> WhyScreen:
    app = await ready(pilot)
    assert isinstance(app.backend, Backend)
    app.push_screen(JobDetailScreen(app.backend, app.clock, job_id))
    await wait_until(pilot, lambda: getattr(app.screen, "detail", None) is not None)
    await pilot.press("w")
    await wait_until(pilot, lambda: isinstance(app.screen, WhyScreen), what="the Why screen")
    screen = app.screen
    assert isinstance(screen, WhyScreen)
    await wait_until(pilot, lambda: screen.result is not None, what="the reasons")
    await pilot.pause()
    return screen


def text_of(screen: WhyScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_w_on_a_job_lists_its_reasons(why_dsn: str) -> None:
    app = console(why_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_why_of_job(pilot, 7001)
        reasons = text_of(screen, "#why-reasons")
        assert "it is held: it failed with ValueError at 2026-01-01 10:05:00+00:00" in reasons
        assert "waits for a requeue" in reasons
        facts = text_of(screen, "#why-facts")
        assert "charge_card" in facts and "order-7" in facts and "db_now" not in facts
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))


async def test_w_on_an_overview_row_explains_the_entrypoint(why_dsn: str) -> None:
    app = console(why_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(OverviewTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="both entrypoints")
        table.focus()
        await wait_until(pilot, lambda: table.selected_key is not None)
        while table.selected_key != "lonely":
            await pilot.press("down")
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, WhyScreen), what="the Why screen")
        screen = app.screen
        assert isinstance(screen, WhyScreen)
        await wait_until(pilot, lambda: screen.result is not None, what="the reasons")
        await pilot.pause()
        reasons = text_of(screen, "#why-reasons")
        assert "no live worker serves lonely" in reasons
        assert "entrypoint lonely" in text_of(screen, "#why-title")


async def test_capital_i_writes_an_incident_bundle(fresh_database: str) -> None:
    await seed(fresh_database)
    # A failure inside the bundle's window (the last hour).
    await run_sql(
        fresh_database,
        "INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, traceback) "
        "VALUES (7001, 'failed', 'charge_card', 0, $1::jsonb)",
        TRACEBACK,
    )
    app = console(fresh_database)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("I")
        await wait_until(pilot, lambda: app.bundle_path is not None, what="the bundle")
        assert app.bundle_path is not None
        markdown = app.bundle_path.read_text()
        assert "### 1. ValueError: card declined for order <n>" in markdown
        twin = app.bundle_path.with_suffix(".json").read_text()
        for secret in ("PAYLOAD-SECRET", "HEADER-SECRET"):
            assert secret not in markdown and secret not in twin


async def test_capital_i_lists_a_worker_the_overview_saw_that_now_holds_nothing(
    fresh_database: str,
) -> None:
    # PgQueuer keeps no table of workers: one between jobs is known only to the console that
    # saw it holding one. The bundle written by `I` lists it.
    worker = "5b0c3a5e-0000-4000-8000-00000000b0b0"
    await run_sql(
        fresh_database,
        "INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat) "
        f"VALUES (0, 'picked', 'report', '{worker}', now())",
    )
    # The worker's memory ages on the console's clock: a real one, as the database's.
    app = support_console(fresh_database, clock=SystemClock())
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await wait_until(
            pilot,
            lambda: any(str(w.queue_manager_id) == worker for w in app.context.workers_seen()),
            what="the overview seeing the worker",
        )
        await run_sql(fresh_database, "DELETE FROM pgqueuer")  # its job is done
        await pilot.press("I")
        await wait_until(pilot, lambda: app.bundle_path is not None, what="the bundle")
        assert app.bundle_path is not None
        document = json.loads(app.bundle_path.with_suffix(".json").read_text())
    workers = {str(w["queue_manager_id"]): w for w in document["workers"]}
    assert workers[worker]["picked"] == 0  # listed, though it holds nothing at the read


def bundle_outcome(app: RecordingConsole) -> str | None:
    """The last word on an `I`: the first note about the bundle past "writing…", or None."""
    said = [n for n in app.noted if "incident bundle" in n and not n.startswith("writing")]
    return said[0] if said else None


async def test_capital_i_on_an_enqueue_only_console_says_there_is_nothing_to_read(
    why_dsn: str,
) -> None:
    connection = psycopg.connect(why_dsn, autocommit=True)
    try:
        app = RecordingConsole.from_sync_psycopg_connection(connection)
        assert isinstance(app, RecordingConsole)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(
                pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
            )
            await pilot.press("I")
            await wait_until(pilot, lambda: bundle_outcome(app) is not None, what="the answer")
            # Not "incident bundle failed: …" from reading through a driver that only enqueues.
            assert bundle_outcome(app) == NOTHING_TO_READ
            assert app.bundle_path is None and not bundle_dir().exists()
    finally:
        connection.close()


async def test_capital_i_in_a_served_console_writes_no_file_on_the_server(why_dsn: str) -> None:
    app = security_console(why_dsn)
    app.served = True
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="overview")
        await pilot.press("I")
        await wait_until(pilot, lambda: bundle_outcome(app) is not None, what="the answer")
        assert bundle_outcome(app) == SERVED
        assert app.bundle_path is None and not bundle_dir().exists()


def test_why_snapshot(snap_compare: Any, why_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await open_why_of_job(pilot, 7001)

    assert snap_compare(console(why_dsn), terminal_size=(100, 36), run_before=before)


def test_why_snapshot_80x24(snap_compare: Any, why_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await open_why_of_job(pilot, 7001)

    assert snap_compare(console(why_dsn), terminal_size=(80, 24), run_before=before)


def test_why_snapshot_160x48(snap_compare: Any, why_dsn: str) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await open_why_of_job(pilot, 7001)

    assert snap_compare(console(why_dsn), terminal_size=(160, 48), run_before=before)
