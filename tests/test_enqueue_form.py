"""The enqueue form (`e`): snapshot, Pilot behaviour on real PostgreSQL, and no input crashes it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import FixedClock
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.enqueue_form import EnqueueFormScreen
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.form_field import FieldRow
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import notifications_of, wait_until

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "ops@db.example.com:5432/app"


@pytest.fixture(scope="module")
def form_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "enqueue_form")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES "
                "(0, 'queued', 'send_email'), (0, 'queued', 'resize_image');"
                "INSERT INTO pgqueuer_schedules (expression, entrypoint)"
                " VALUES ('0 * * * *', 'build_report')"
            )
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def console(dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL, **options: Any) -> PgqConsole:
    async def open_() -> Backend:
        return await open_backend(kind, dsn, Installation(), LABEL, ())

    app = PgqConsole(open_, clock=FixedClock(FIXED_NOW), **options)
    app.animation_level = "none"
    return app


def form_of(app: PgqConsole) -> EnqueueFormScreen:
    screen = app.screen
    assert isinstance(screen, EnqueueFormScreen), f"expected the enqueue form, got {screen!r}"
    return screen


def status_text(app: PgqConsole) -> str:
    return str(form_of(app).query_one("#enqueue-status", Static).render())


def error_text(app: PgqConsole, field: str) -> str:
    return str(form_of(app).query_one(f"#error-{field}", Static).render())


async def open_form(pilot: Pilot[Any]) -> EnqueueFormScreen:
    app = pilot.app
    assert isinstance(app, PgqConsole)
    await wait_until(pilot, lambda: ready(app), what="the first screen")
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(app.screen, EnqueueFormScreen), what="the form")
    form = form_of(app)
    await wait_until(pilot, lambda: bool(form.entrypoints), what="entrypoint suggestions")
    return form


async def enqueue_new_name(pilot: Pilot[Any]) -> None:
    """ctrl+s for a name never seen: the form asks first; the second ctrl+s enqueues."""
    app = pilot.app
    assert isinstance(app, PgqConsole)
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: "new entrypoint name" in status_text(app), what="question")
    assert form_of(app).result is None  # nothing written on the first press
    await pilot.press("ctrl+s")


def ready(app: PgqConsole) -> bool:
    return isinstance(app.screen, OverviewScreen | EnqueueOnlyScreen)


def fill(form: EnqueueFormScreen, **values: str) -> None:
    for name, value in values.items():
        if name == "payload_kind":
            form.query_one("#payload_kind", Select).value = value
        else:
            form.query_one(f"#{name}", Input).value = value


async def jobs(dsn: str, entrypoint: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetch(
            "SELECT id, priority, payload FROM pgqueuer WHERE entrypoint = $1 ORDER BY id",
            entrypoint,
        )
        return [dict(row) for row in found]
    finally:
        await connection.close()


# -- snapshot ---------------------------------------------------------------------------------


def test_form_with_inline_errors(snap_compare: Any, form_dsn: str) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        form = await open_form(pilot)
        fill(form, entrypoint="send", payload='{"to": 1', headers="[1]", copies="-2")
        for field in form.query(Input):  # a steady cursor: the blink's phase is timing
            field.cursor_blink = False
        form.validate_fields()
        await pilot.pause()

    assert snap_compare(console(form_dsn), terminal_size=(80, 24), run_before=run_before)


# -- behaviour --------------------------------------------------------------------------------


async def test_enqueue_many_from_the_form_shows_progress_and_ids(form_dsn: str) -> None:
    app = console(form_dsn)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(pilot)
        assert {"send_email", "resize_image", "build_report"} <= set(form.entrypoints)
        form.enqueuer.batch_size = 500
        fill(form, entrypoint="bulk_form", payload='{"n": 1}', priority="3", copies="2,000")
        await enqueue_new_name(pilot)
        await wait_until(pilot, lambda: form.result is not None, what="the result")
        assert form.result is not None and form.result.complete
        assert "Enqueued 2,000 jobs" in status_text(app)
        assert f"ctrl+o opens job {form.result.ids[0]}" in status_text(app)
        rows = await jobs(form_dsn, "bulk_form")
        assert [row["id"] for row in rows] == list(form.result.ids)
        assert {row["priority"] for row in rows} == {3}
        # ctrl+o opens the first new job's detail; esc comes back.
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="detail")
        detail = app.screen
        assert isinstance(detail, JobDetailScreen) and detail.job_id == form.result.ids[0]
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is form, what="back to the form")
        # Keys typed now do not edit the entrypoint, and Enter does not enqueue to a new name.
        await pilot.press("3", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="reopen")
        assert form.query_one("#entrypoint", Input).value == "bulk_form"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is form, what="back again")
        assert len(await jobs(form_dsn, "bulk_form")) == 2000
        assert await jobs(form_dsn, "bulk_form3") == []
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, EnqueueFormScreen))


async def test_invalid_input_is_shown_next_to_the_field_and_nothing_is_written(
    form_dsn: str,
) -> None:
    app = console(form_dsn)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(pilot)
        fill(
            form,
            entrypoint="never_written",
            payload="{oops",
            execute_after="tomorrow-ish",
            headers='"text"',
            copies="-1",
        )
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "invalid JSON" in error_text(app, "payload")
        assert "as a delay" in error_text(app, "execute_after")
        assert "must be a JSON object" in error_text(app, "headers")
        assert "at least 1" in error_text(app, "copies")
        assert form.query_one("#row-copies", FieldRow).has_class("-invalid")
        assert "Fix 4 fields first" in status_text(app)
        assert form.result is None
        # Editing a field takes its stale error away; the others stay until checked again.
        form.query_one("#payload", Input).value = '{"fixed": true}'
        await wait_until(pilot, lambda: error_text(app, "payload") == "", what="error cleared")
        assert not form.query_one("#row-payload", FieldRow).has_class("-invalid")
        assert "at least 1" in error_text(app, "copies")
        # The line under the form counts what is left to fix, and goes once nothing is.
        await wait_until(pilot, lambda: "Fix 3 fields first" in status_text(app))
        fill(form, execute_after="0", headers="{}", copies="1")
        await wait_until(pilot, lambda: status_text(app).strip() == "", what="status cleared")
    assert await jobs(form_dsn, "never_written") == []


async def test_dedupe_clash_is_named_and_nothing_is_half_written(form_dsn: str) -> None:
    app = console(form_dsn)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(pilot)
        fill(form, entrypoint="dedupe_form", dedupe_key="invoice-7")
        await enqueue_new_name(pilot)
        await wait_until(pilot, lambda: form.result is not None)
        assert form.result is not None and form.result.complete
        form.result = None
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.result is not None)
        assert "dedupe key 'invoice-7' is already taken" in error_text(app, "dedupe_key")
        assert "Nothing enqueued" in status_text(app)
        fill(form, copies="3")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "copies must be 1" in error_text(app, "copies")
    assert len(await jobs(form_dsn, "dedupe_form")) == 1


async def test_escape_cancels_a_running_bulk_enqueue(form_dsn: str) -> None:
    app = console(form_dsn)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(pilot)
        form.enqueuer.batch_size = 1000
        fill(form, entrypoint="cancelled_form", copies="1000000")
        await enqueue_new_name(pilot)
        await wait_until(pilot, lambda: form.running)
        await pilot.press("escape")
        await wait_until(pilot, lambda: form.result is not None, within=60)
        assert form.result is not None and form.result.cancelled
        written = len(form.result.ids)
        assert 0 < written < 1_000_000 and written % 1000 == 0  # whole batches only
        assert isinstance(app.screen, EnqueueFormScreen)  # the first esc only cancelled
    assert len(await jobs(form_dsn, "cancelled_form")) == written


async def test_refused_in_read_only_mode(form_dsn: str) -> None:
    app = console(form_dsn, read_only=True)
    messages = notifications_of(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: ready(app), what="the first screen")
        await pilot.press("e")
        await wait_until(pilot, lambda: any("read-only" in m for m in messages), what="refusal")
        assert not isinstance(app.screen, EnqueueFormScreen)


async def test_the_enqueue_only_driver_offers_the_form(form_dsn: str) -> None:
    app = console(form_dsn, DriverKind.PSYCOPG_SYNC)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
        )
        form = await open_form(pilot)
        fill(form, entrypoint="via_sync", payload_kind="text", payload="hello", copies="3")
        await enqueue_new_name(pilot)
        await wait_until(pilot, lambda: form.result is not None)
        assert form.result is not None and form.result.complete
    rows = await jobs(form_dsn, "via_sync")
    assert [bytes(row["payload"]) for row in rows] == [b"hello"] * 3


# codec="utf-8": any character an operator could type or paste, but no lone surrogates.
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from('{}[]",:0x-'), max_size=30)


async def test_no_input_crashes_the_form(form_dsn: str) -> None:
    app = console(form_dsn)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(pilot)

        @given(
            st.fixed_dictionaries(
                {
                    "entrypoint": TEXT,
                    "payload_kind": st.sampled_from(["json", "text", "hex", "file"]),
                    "payload": TEXT,
                    "priority": TEXT,
                    "execute_after": TEXT,
                    "dedupe_key": TEXT,
                    "headers": TEXT,
                    "copies": TEXT | st.integers(-10, 2_000_000).map(str),
                }
            )
        )
        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def check(values: dict[str, str]) -> None:
            fill(form, **values)
            request = form.validate_fields()
            errors = [row for row in form.query(FieldRow) if row.has_class("-invalid")]
            assert (request is None) == bool(errors)

        check()
        await pilot.pause()
        assert isinstance(app.screen, EnqueueFormScreen)


def test_form_with_inline_errors_160x48(snap_compare: Any, form_dsn: str) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app

        def overview_filled() -> bool:  # the overview behind the form: its pulse read once
            screen = app.screen
            return (
                isinstance(screen, OverviewScreen)
                and screen.pulse is not None
                and screen.pulse.status.polls > 0
                and bool(screen.history.samples)
            )

        await wait_until(pilot, overview_filled, what="the overview's tiles, chart and feed")
        form = await open_form(pilot)
        fill(form, entrypoint="send", payload='{"to": 1', headers="[1]", copies="-2")
        for field in form.query(Input):  # a steady cursor: the blink's phase is timing
            field.cursor_blink = False
        form.validate_fields()
        await pilot.pause()

    assert snap_compare(console(form_dsn), terminal_size=(160, 48), run_before=run_before)


async def test_the_enqueue_only_screen_says_a_lost_connection_on_the_consoles_clock(
    form_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polled by the shared loop: the outage line every screen shows, on the injected clock
    (FixedClock here), backed off; the rows stay as last read; a good read clears it."""
    app = console(form_dsn, DriverKind.PSYCOPG_SYNC)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
        )
        screen = app.screen
        assert isinstance(screen, EnqueueOnlyScreen)
        assert screen.clock is app.clock
        table = screen.query_one("#depth-table", LiveTable)
        await wait_until(pilot, lambda: table.row_count > 0, what="the queue depth")
        rows = table.row_count
        backend = app.backend
        assert backend is not None

        async def gone() -> Any:
            raise ConnectionResetError("server closed the connection unexpectedly")

        monkeypatch.setattr(backend, "queue_size", gone)
        screen.action_refresh_now()
        banner = screen.query_one("#poll-banner", Static)
        await wait_until(pilot, lambda: banner.display, what="the outage banner")
        text = str(banner.render())
        assert f"lost the connection to {LABEL} at {FIXED_NOW:%H:%M:%S}" in text
        assert "retry 1 at" in text
        assert "live events" not in text  # this mode never listens: nothing to miss
        assert screen.loop.timing.lost and screen.loop.timing.retry_delay > 0
        assert table.row_count == rows
        monkeypatch.undo()
        screen.action_refresh_now()
        await wait_until(pilot, lambda: not banner.display, what="recovered")


async def test_a_name_that_could_not_be_checked_is_not_called_new(fresh_database: str) -> None:
    """The known names unreadable (here: a role without SELECT on the schedules table; in an
    outage, the connection): the form cannot know whether a name is new, so it says that (and
    why) instead of "a new entrypoint name"; the second enqueue still sends it."""
    from urllib.parse import urlsplit, urlunsplit

    role = "pgqc_no_schedules"
    connection = await asyncpg.connect(fresh_database)
    try:
        await connection.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} LOGIN; END IF; END $$"
        )
        await connection.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await connection.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        await connection.execute(f"REVOKE ALL ON pgqueuer_schedules FROM {role}")
        await connection.execute(
            "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', 'send_email')"
        )
    finally:
        await connection.close()
    parts = urlsplit(fresh_database)
    as_role = urlunsplit(parts._replace(netloc=f"{role}@" + parts.netloc.rsplit("@", 1)[-1]))
    app = console(as_role)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: ready(app), what="the first screen")
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueFormScreen), what="form")
        form = form_of(app)
        await wait_until(
            pilot, lambda: form.entrypoints_error is not None, what="the names read failing"
        )
        fill(form, entrypoint="send_email", payload="")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "could not be checked" in status_text(app), what="why")
        assert "new entrypoint name" not in status_text(app)
        assert "permission denied" in status_text(app)
        assert form.result is None and len(await jobs(fresh_database, "send_email")) == 1
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.result is not None, what="the enqueue")
        assert len(await jobs(fresh_database, "send_email")) == 2
