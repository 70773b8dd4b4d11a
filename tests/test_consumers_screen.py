"""The consumers screen (key 7): snapshot, and Pilot behaviour against real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Log, Static

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import FixedClock
from pgq_console.core.consumers import ConsumerState, parse_consumer_form
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.confirm import ConfirmDialog
from pgq_console.screens.consumer_form import ConsumerFormScreen
from pgq_console.screens.consumers import ConsumersScreen
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import enqueue, notifications_of, truth, wait_until

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "ops@db.example.com:5432/app"


@pytest.fixture(scope="module")
def screen_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "consumers_screen")
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


async def open_form(pilot: Pilot[Any]) -> ConsumerFormScreen:
    """`n` on the Consumers screen: the new-consumer form, mounted."""
    app = pilot.app
    await pilot.press("n")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, ConsumerFormScreen) and app.screen.is_mounted,
        what="the form",
    )
    assert isinstance(app.screen, ConsumerFormScreen)
    return app.screen


async def start_gated(app: Any, screen: ConsumersScreen, entrypoint: str) -> Any:
    """A consumer on `entrypoint` whose jobs run until the test opens their gate
    (`consumer_fixtures.GATES[entrypoint]`), listed on the screen."""
    consumer = await app.consumers.start(
        app.backend,
        parse_consumer_form(
            {
                "handler": "handler",
                "argument": "tests.consumer_fixtures:gated_handler",
                "entrypoints": entrypoint,
            }
        ),
    )
    screen.refresh_rows()
    return consumer


async def to_consumers(pilot: Pilot[Any]) -> ConsumersScreen:
    app = pilot.app
    await wait_until(
        pilot, lambda: isinstance(app.screen, OverviewScreen | EnqueueOnlyScreen), what="start"
    )
    await pilot.press("7")
    await wait_until(pilot, lambda: isinstance(app.screen, ConsumersScreen), what="consumers")
    screen = app.screen
    assert isinstance(screen, ConsumersScreen)
    return screen


def cell(screen: ConsumersScreen, consumer_id: int, column: str) -> str:
    table = screen.query_one("#consumers-table", LiveTable)
    return str(table.get_cell(str(consumer_id), column))


def footer_text(footer: ConsoleFooter) -> str:
    return " ".join(str(key.render()) for key in footer.query("*"))


def log_text(screen: ConsumersScreen) -> str:
    return "\n".join(screen.query_one("#consumer-log", Log).lines)


def test_consumers_screen(snap_compare: Any, screen_dsn: str) -> None:
    consumers_snapshot(snap_compare, screen_dsn, (80, 24))


def test_consumers_screen_160x48(snap_compare: Any, screen_dsn: str) -> None:
    consumers_snapshot(snap_compare, screen_dsn, (160, 48))


def consumers_snapshot(snap_compare: Any, screen_dsn: str, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PgqConsole)
        screen = await to_consumers(pilot)
        await app.consumers.start(
            app.backend,
            parse_consumer_form(
                {"handler": "sleep", "argument": "250", "entrypoints": "snapshot_idle, reports"}
            ),
        )
        await wait_until(pilot, lambda: "started" in log_text(screen), what="the log line")
        screen.refresh_rows()
        await pilot.pause()

    assert snap_compare(console(screen_dsn), terminal_size=size, run_before=run_before)


async def test_start_watch_and_stop_a_consumer_from_the_screen(screen_dsn: str) -> None:
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await to_consumers(pilot)
        form = await open_form(pilot)
        form.query_one("#entrypoints", Input).value = "screen_jobs"
        form.query_one("#batch_size", Input).value = "5"
        await pilot.press("ctrl+s")  # nothing uses screen_jobs yet: a warning first
        status = form.query_one("#consumer-form-status", Static)
        await wait_until(pilot, lambda: "start again" in str(status.render()), what="warning")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen, what="the form to close")
        consumer = next(iter(app.consumers))
        assert consumer.state is ConsumerState.RUNNING
        await wait_until(pilot, lambda: cell(screen, consumer.id, "state") == "running")

        await enqueue(screen_dsn, "screen_jobs", 25)
        await wait_until(pilot, lambda: cell(screen, consumer.id, "done") == "25", what="25 done")
        assert cell(screen, consumer.id, "entrypoints") == "screen_jobs"
        assert "started: no-op on screen_jobs" in log_text(screen)

        await pilot.press("s")
        await wait_until(pilot, lambda: cell(screen, consumer.id, "state") == "stopped")
        assert "stopped" in log_text(screen)
    assert (await truth(screen_dsn)).get("screen_jobs", {}).get("ready", 0) == 0


async def test_bad_form_input_and_bad_user_code_are_one_line(screen_dsn: str) -> None:
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        await to_consumers(pilot)
        form = await open_form(pilot)
        form.query_one("#batch_size", Input).value = "zero"
        await pilot.press("ctrl+s")
        await pilot.pause()
        errors = str(form.query_one("#error-batch_size", Static).render())
        assert "batch size is a whole number" in errors
        assert "at least one entrypoint" in str(
            form.query_one("#error-entrypoints", Static).render()
        )

        form.query_one("#handler").value = "handler"  # type: ignore[attr-defined]
        form.query_one("#argument", Input).value = "tests.nowhere:handle"
        form.query_one("#entrypoints", Input).value = "x"
        form.query_one("#batch_size", Input).value = "10"
        await pilot.press("ctrl+s")
        status = form.query_one("#consumer-form-status", Static)
        await wait_until(pilot, lambda: "uses x yet" in str(status.render()), what="warning")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "cannot import" in str(status.render()))
        assert isinstance(app.screen, ConsumerFormScreen)
        assert app.consumers.active == []


async def test_quitting_with_a_running_consumer_asks_then_drains(screen_dsn: str) -> None:
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        await to_consumers(pilot)
        consumer = await app.consumers.start(
            app.backend,
            parse_consumer_form(
                {"handler": "sleep", "argument": "300", "entrypoints": "quit_jobs"}
            ),
        )
        await enqueue(screen_dsn, "quit_jobs", 4)
        await wait_until(pilot, lambda: consumer.in_flight > 0, what="jobs in flight")
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert consumer.state is ConsumerState.RUNNING  # "stay" changed nothing
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_until(pilot, lambda: not consumer.state.active, what="the drain")
    assert not consumer.state.active and consumer.error is None
    facts = (await truth(screen_dsn))["quit_jobs"]
    assert facts.get("picked", 0) == 0  # nothing left half-done by quitting


async def test_refused_for_the_enqueue_only_driver(screen_dsn: str) -> None:
    app = console(screen_dsn, DriverKind.PSYCOPG_SYNC)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(
            pilot, lambda: isinstance(app.screen, EnqueueOnlyScreen) and app.screen.is_mounted
        )
        await pilot.press("7")  # the enqueue-only mode has no consumers screen
        await pilot.pause()
        assert isinstance(app.screen, EnqueueOnlyScreen)


async def test_refused_in_read_only_mode(screen_dsn: str) -> None:
    app = console(screen_dsn, read_only=True)
    messages = notifications_of(app)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await to_consumers(pilot)
        banner = screen.query_one("#consumers-banner")
        assert banner.display and "read-only" in str(banner.render())
        # `n` is not offered: not in the footer (nor help, `:`, the palette), not in the title.
        assert not screen.check_action("new_consumer", ())
        offered = {active.binding.action for active in screen.active_bindings.values()}
        assert "new_consumer" not in offered and "stop" in offered, offered
        footer = screen.query_one(ConsoleFooter)
        await wait_until(pilot, lambda: "Stop (drain)" in footer_text(footer), what="footer")
        assert "New consumer" not in footer_text(footer)
        assert "n new" not in str(screen.query_one("#consumers-title", Static).render())
        # Pressed anyway, it says why nothing opens (and keys after it are not held for a form).
        await pilot.press("n")
        await wait_until(pilot, lambda: any("read-only" in m for m in messages), what="refusal")
        assert isinstance(app.screen, ConsumersScreen)
        assert screen.typed_for_form is None


async def test_keys_typed_right_after_n_land_in_the_first_text_field(screen_dsn: str) -> None:
    """The form opens on its first text field (Entrypoints for the default handler) and what
    was typed before it was up lands there; an `s` among it stops no consumer."""
    from textual import events

    app = console(screen_dsn)
    async with app.run_test() as pilot:
        screen = await to_consumers(pilot)
        await app.consumers.start(
            app.backend, parse_consumer_form({"handler": "noop", "entrypoints": "kept_running"})
        )
        screen.refresh_rows()
        for character in "nslow1x":  # one burst, as a fast typist or a paste sends it
            app.post_message(events.Key(character, character))
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ConsumerFormScreen) and app.screen.is_mounted,
            what="the form",
        )
        form = app.screen
        entrypoints = form.query_one("#entrypoints", Input)
        await wait_until(pilot, lambda: entrypoints.value == "slow1x", what="the typed text")
        assert form.focused is entrypoints
        assert all(c.state is ConsumerState.RUNNING for c in app.consumers)  # `s` stopped none
        await pilot.press("escape")
        await app.consumers.drain_all(within=20)


async def test_arrow_completes_names_and_a_typo_warns_before_starting(screen_dsn: str) -> None:
    await enqueue(screen_dsn, "report_daily", 1)
    await enqueue(screen_dsn, "resize_thumbs", 1)
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await to_consumers(pilot)
        from textual import events

        for character in "nrepo":  # one burst: typed before the form has read the names
            app.post_message(events.Key(character, character))
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ConsumerFormScreen) and app.screen.is_mounted,
            what="the form",
        )
        form = app.screen
        assert isinstance(form, ConsumerFormScreen)
        entry = form.query_one("#entrypoints", Input)
        await wait_until(pilot, lambda: entry.value == "repo", what="the typed text")
        await wait_until(pilot, lambda: entry.suggester is not None, what="the known names")
        assert form.focused is entry
        await pilot.pause()
        await pilot.press("right")
        await wait_until(pilot, lambda: entry.value == "report_daily", what="→ completing")
        await pilot.press(*", res")
        await pilot.pause()
        await pilot.press("right")
        await wait_until(
            pilot, lambda: entry.value == "report_daily, resize_thumbs", what="the second name"
        )

        # A typo: nothing in the database uses it; the first start only warns.
        entry.value = "report_dialy"
        await pilot.press("ctrl+s")
        status = form.query_one("#consumer-form-status", Static)
        await wait_until(pilot, lambda: "report_dialy" in str(status.render()), what="warning")
        assert "start again" in str(status.render())
        assert app.consumers.active == [] and app.screen is form
        # Fixed, it starts at once (a known name needs no confirmation).
        entry.value = "report_daily"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen, what="the form to close")
        assert [c.entrypoints for c in app.consumers.active] == [("report_daily",)]
        await app.consumers.drain_all(within=20)


async def test_x_cancels_running_jobs_and_counts_none_done(screen_dsn: str) -> None:
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await to_consumers(pilot)
        consumer = await app.consumers.start(
            app.backend,
            parse_consumer_form({"handler": "sleep", "argument": "60000", "entrypoints": "x_slow"}),
        )
        screen.refresh_rows()
        await enqueue(screen_dsn, "x_slow", 3)
        await wait_until(pilot, lambda: consumer.in_flight == 3, what="three running jobs")
        await wait_until(pilot, lambda: cell(screen, consumer.id, "in_flight") == "3")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: not consumer.state.active, what="the consumer to end")
        screen.refresh_rows()
        await wait_until(pilot, lambda: cell(screen, consumer.id, "state") == "stopped")
        assert cell(screen, consumer.id, "done") == "0"
        assert consumer.done == 0 and consumer.cancelled == 3
        assert log_text(screen).count("cancelled from the console") == 3
        # Help on this screen explains its columns, Done among them.
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        from tests.test_help import help_text

        shown = " ".join(help_text(app).split())
        assert "cancelled jobs are not done" in shown and "Running" in shown


def dialog_text(app: PgqConsole) -> str:
    dialog = app.screen
    assert isinstance(dialog, ConfirmDialog)
    return " ".join(str(widget.render()) for widget in dialog.query(Static))


async def test_x_cancels_only_the_jobs_its_question_showed(screen_dsn: str) -> None:
    """Jobs picked while `x`'s question is open are not cancelled: `y` cancels the ids shown,
    the toast says how many and which, and the later ones run to the end."""
    from tests import consumer_fixtures
    from tests.test_consumers_core import log_counts

    gate = consumer_fixtures.GATES["x_shown"] = asyncio.Event()
    app = console(screen_dsn)
    sent = notifications_of(app)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await to_consumers(pilot)
            consumer = await start_gated(app, screen, "x_shown")
            shown = await enqueue(screen_dsn, "x_shown", 3)
            await wait_until(pilot, lambda: consumer.in_flight == 3, what="three running jobs")
            await pilot.press("x")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="dialog")
            text = dialog_text(app)
            assert f"Cancel the 3 running job(s) of {consumer.name} and stop it?" in text
            assert f"Jobs: {', '.join(map(str, sorted(shown)))}" in text
            assert "n: nothing changes" in text and "keeps running and picking" in text
            later = await enqueue(screen_dsn, "x_shown", 2)
            await wait_until(pilot, lambda: consumer.in_flight == 5, what="two more picked")
            await wait_until(
                pilot, lambda: "2 started since (not cancelled)" in dialog_text(app), what="live"
            )
            await pilot.press("y")
            await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
            await wait_until(pilot, lambda: consumer.in_flight == 2, what="the three cancelled")
            toast = next(m for m in sent if "cancelling" in m)
            assert toast == (
                f"{consumer.name}: stopped picking; cancelling 3 running job(s): "
                f"{', '.join(map(str, sorted(shown)))}; 2 started after the question was asked "
                f"are not cancelled and run to the end; {consumer.name} ends once they finish."
            )
            gate.set()
            await wait_until(pilot, lambda: not consumer.state.active, what="the consumer to end")
    finally:
        gate.set()
    counts = await log_counts(screen_dsn, "x_shown")
    assert counts["canceled"] == {job_id: 1 for job_id in shown}
    assert counts["successful"] == {job_id: 1 for job_id in later}


async def test_x_answered_n_changes_nothing_and_x_with_nothing_running_stops(
    screen_dsn: str,
) -> None:
    from tests import consumer_fixtures

    gate = consumer_fixtures.GATES["x_kept"] = asyncio.Event()
    app = console(screen_dsn)
    sent = notifications_of(app)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await to_consumers(pilot)
            consumer = await start_gated(app, screen, "x_kept")
            await enqueue(screen_dsn, "x_kept", 2)
            await wait_until(pilot, lambda: consumer.in_flight == 2, what="two running jobs")
            await pilot.press("x")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="dialog")
            assert "Keep running (n)" in " ".join(str(b.label) for b in app.screen.query(Button))
            await pilot.press("n")
            await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
            assert f"{consumer.name}: nothing cancelled; it keeps running." in sent
            # It does keep running and picking: nothing was stopped or cancelled.
            assert consumer.state is ConsumerState.RUNNING and not consumer.shutdown.is_set()
            gate.set()
            more = await enqueue(screen_dsn, "x_kept", 2)
            await wait_until(pilot, lambda: consumer.done == 4, what="all four done")
            assert consumer.cancelled == 0 and set(more).isdisjoint(consumer.cancelled_ids)
            # Nothing running: `x` has nothing to cancel and stops the consumer as `s` does.
            await pilot.press("x")
            await wait_until(pilot, lambda: not consumer.state.active, what="the consumer to end")
            assert not isinstance(app.screen, ConfirmDialog)
            assert (
                f"{consumer.name}: nothing to cancel (no job was running); stopped picking, "
                "as s does." in sent
            )
    finally:
        gate.set()


async def test_the_overview_answers_events_less_often_while_a_consumer_works(
    screen_dsn: str,
) -> None:
    """The overview's refresher is told when the console's own consumers work: its event
    refreshes then keep `BUSY_EVENT_GAP_S` apart (they competed with the consumer for the
    cores and the event loop, bench/README.md)."""
    from pgq_console.core.overview.pacing import BUSY_EVENT_GAP_S
    from tests import consumer_fixtures

    gate = consumer_fixtures.GATES["overview_busy"] = asyncio.Event()
    app = console(screen_dsn)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                pilot,
                lambda: isinstance(app.screen, OverviewScreen) and app.screen.refresher is not None,
                what="the overview",
            )
            overview = app.screen
            assert isinstance(overview, OverviewScreen) and overview.refresher is not None
            pacer = overview.refresher.pacer
            assert not pacer.consumers_busy()  # no consumer ever ran
            consumer = await app.consumers.start(
                app.backend,
                parse_consumer_form(
                    {
                        "handler": "handler",
                        "argument": "tests.consumer_fixtures:gated_handler",
                        "entrypoints": "overview_busy",
                    }
                ),
            )
            await wait_until(pilot, lambda: consumer.state is ConsumerState.RUNNING, what="run")
            assert not pacer.consumers_busy()  # running, nothing picked yet
            [job_id] = await enqueue(screen_dsn, "overview_busy", 1)
            await wait_until(pilot, lambda: consumer.in_flight == 1, what="the job running")
            assert list(consumer.running) == [job_id]
            assert pacer.consumers_busy()
            assert pacer.event_gap(app.clock.monotonic()) >= BUSY_EVENT_GAP_S
            gate.set()
            await wait_until(pilot, lambda: consumer.done == 1, what="the job done")
            app.consumers.stop(consumer.id)
            assert await app.consumers.wait(consumer.id, within=30)
    finally:
        gate.set()
