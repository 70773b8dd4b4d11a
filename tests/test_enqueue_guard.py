"""Enqueue-form writes leave a trace: every enqueue is in the audit file with
its count, entrypoint and first/last id; quitting or switching profile during a running enqueue
asks first, stops it after the batch in flight and says what was written; profile switches are
audited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from pgq_console.app import PgqConsole
from pgq_console.cli import make_app
from pgq_console.config import CliOptions, Settings, load_settings, open_target
from pgq_console.core import audit
from pgq_console.core.backend import Backend
from pgq_console.core.target import DriverKind
from pgq_console.screens.confirm import ConfirmDialog
from pgq_console.screens.enqueue_form import EnqueueFormScreen
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, enqueue, has_row, wait_until


@pytest.fixture(scope="module")
def two_databases(server_dsn: str) -> Iterator[tuple[str, str]]:
    alpha = make_database(server_dsn, "guard_alpha")
    beta = make_database(server_dsn, "guard_beta")
    asyncio.run(enqueue(alpha, "alpha_job", 1))
    asyncio.run(enqueue(beta, "beta_job", 1))
    try:
        yield alpha, beta
    finally:
        drop_database(server_dsn, alpha)
        drop_database(server_dsn, beta)


def settings_for(tmp_path: Path, alpha: str, beta: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(
        f'profile = "alpha"\n\n[profiles.alpha]\ndsn = "{alpha}"\n\n'
        f'[profiles.beta]\ndsn = "{beta}"\n'
    )
    path.chmod(0o600)
    return load_settings(CliOptions(config=str(path)), {})


class BatchGate:
    """Holds the form's batches after the first few until the test opens it: the enqueue of a
    million copies stays running while the test answers its questions, without writing rows
    at full speed meanwhile. Held batches are real ones: opened, they insert (or, cancelled
    meanwhile, the form stops after them), so what is written and audited stays the server's."""

    FREE_BATCHES = 3

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.batches = 0

    def wrap(self, backend: Backend) -> Backend:
        real = backend.enqueue

        async def enqueue(*arguments: Any) -> list[int]:
            self.batches += 1
            if self.batches > self.FREE_BATCHES:
                await self.opened.wait()
            return await real(*arguments)

        setattr(backend, "enqueue", enqueue)  # noqa: B010 (mypy: no assigning to a method)
        return backend

    async def open_once_stopping(self, pilot: Pilot[Any], guard: Any) -> None:
        """Open once the enqueue was told to stop (`guard`: its quit guard), so that it stops
        after the batches held."""
        await wait_until(pilot, lambda: guard.token.cancelled, what="the enqueue told to stop")
        self.opened.set()


def app_for(settings: Settings, gate: BatchGate | None = None) -> Any:
    async def opener() -> Backend:
        backend = await open_target(settings.target)
        return gate.wrap(backend) if gate is not None else backend

    app = make_app(settings, opener)
    app.animation_level = "none"
    return app


async def ids_of(dsn: str, entrypoint: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id FROM pgqueuer WHERE entrypoint = $1 ORDER BY id", entrypoint
        )
        return [int(row["id"]) for row in rows]
    finally:
        await connection.close()


def records(action: str) -> list[dict[str, Any]]:
    return [r for r in audit.read_records() if r["action"] == action]


async def question(pilot: Pilot[Any]) -> str:
    """The confirmation's reason, once the dialog is up."""
    app = pilot.app
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, ConfirmDialog) and bool(app.screen.query("#yesno-detail")),
        what="the question",
    )
    return str(app.screen.query_one("#yesno-detail").render())


async def start_enqueue(pilot: Pilot[Any], entrypoint: str, copies: str, batch: int) -> Any:
    app = pilot.app
    assert isinstance(app, PgqConsole)
    await wait_until(pilot, lambda: has_row(app, "alpha_job"), what="alpha's overview")
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(app.screen, EnqueueFormScreen), what="the form")
    form = app.screen
    assert isinstance(form, EnqueueFormScreen)
    form.enqueuer.batch_size = batch
    form.query_one("#entrypoint", Input).value = entrypoint
    form.query_one("#copies", Input).value = copies
    form.confirmed_new_entrypoint = entrypoint  # the new-name question is tested with the form
    await pilot.press("ctrl+s")
    return form


async def test_a_finished_enqueue_is_audited(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, _ = two_databases
    app = app_for(settings_for(tmp_path, *two_databases))
    async with app.run_test(size=(110, 30)) as pilot:
        form = await start_enqueue(pilot, "audited_form", "1500", 500)
        await wait_until(pilot, lambda: form.result is not None, within=30)
    written = await ids_of(alpha, "audited_form")
    assert len(written) == 1500
    [record] = records("enqueue")
    assert record["count"] == 1500 and record["previewed"] == 1500
    assert record["entrypoint"] == "audited_form"
    assert (record["first_id"], record["last_id"]) == (written[0], written[-1])
    assert record["job_ids"] == []  # more than 1,000: the range only, never a wrong list
    assert "done" in record["predicate"]


@pytest.mark.parametrize("key", ["ctrl+q", "command"])
async def test_quit_during_an_enqueue_asks_stops_and_reports(
    tmp_path: Path, two_databases: tuple[str, str], key: str
) -> None:
    alpha, _ = two_databases
    entrypoint = f"quit_during_{key.replace('+', '_')}"
    gate = BatchGate()
    app = app_for(settings_for(tmp_path, *two_databases), gate)
    async with app.run_test(size=(110, 30)) as pilot:
        form = await start_enqueue(pilot, entrypoint, "1000000", 200)
        await wait_until(pilot, lambda: form.running and len(form.app.quit_guards) > 0)
        [guard] = app.quit_guards
        if key == "ctrl+q":
            await pilot.press("ctrl+q")
        else:
            await app.run_action("app.quit")  # what `:quit` and `q` run
        reason = await question(pilot)
        assert "enqueue" in reason and entrypoint in reason
        await pilot.press("y")
        await gate.open_once_stopping(pilot, guard)
        await wait_until(pilot, lambda: not app.is_running, within=30, what="the exit")
    written = await ids_of(alpha, entrypoint)
    assert 0 < len(written) < 1_000_000
    [record] = [r for r in records("enqueue") if r["entrypoint"] == entrypoint]
    assert record["count"] == len(written)
    assert (record["first_id"], record["last_id"]) == (written[0], written[-1])
    assert "stopped by quit" in record["predicate"]
    # Said before the exit (and printed once the terminal is back).
    assert any(f"{len(written):,} of 1,000,000" in n.message for n in app._notifications)


async def test_staying_keeps_the_enqueue_running(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, _ = two_databases
    gate = BatchGate()
    app = app_for(settings_for(tmp_path, *two_databases), gate)
    async with app.run_test(size=(110, 30)) as pilot:
        form = await start_enqueue(pilot, "stay_then_cancel", "1000000", 200)
        await wait_until(pilot, lambda: form.running and len(app.quit_guards) > 0)
        [guard] = app.quit_guards
        await pilot.press("ctrl+q")
        await question(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueFormScreen))
        assert app.is_running and form.running  # still writing
        assert not guard.token.cancelled
        await pilot.press("escape")
        await gate.open_once_stopping(pilot, guard)
        await wait_until(pilot, lambda: form.result is not None, within=60)
        assert form.result is not None and form.result.cancelled
        assert app.quit_guards == []  # nothing left to ask about
    [record] = [r for r in records("enqueue") if r["entrypoint"] == "stay_then_cancel"]
    assert record["count"] == len(await ids_of(alpha, "stay_then_cancel"))
    assert "cancelled" in record["predicate"]


async def test_profile_switch_during_an_enqueue_asks_stops_reports_and_is_audited(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, _ = two_databases
    gate = BatchGate()
    app = app_for(settings_for(tmp_path, *two_databases), gate)
    async with app.run_test(size=(110, 30)) as pilot:
        form = await start_enqueue(pilot, "switch_during", "1000000", 200)
        await wait_until(pilot, lambda: form.running and len(app.quit_guards) > 0)
        [guard] = app.quit_guards
        app.switch_profile("beta")  # what `:db beta` runs
        assert "switch_during" in await question(pilot)
        await pilot.press("y")
        await gate.open_once_stopping(pilot, guard)
        await wait_until(pilot, lambda: app.profile == "beta", within=30, what="the switch")
        written = await ids_of(alpha, "switch_during")
        assert 0 < len(written) < 1_000_000

        def said(text: str) -> bool:
            return any(text in n.message for n in app._notifications)

        assert said(f"{len(written):,} of 1,000,000")
        # The switch has finished (its screens rebuilt) before the app is closed.
        await wait_until(pilot, lambda: said("connected to beta"), within=30)
    [record] = [r for r in records("enqueue") if r["entrypoint"] == "switch_during"]
    assert record["count"] == len(written)
    [switch] = records("switch-profile")
    assert "beta" in switch["predicate"]


async def test_switch_refused_for_consumers_leaves_the_enqueue_running(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    """Consumers block a switch outright: the enqueue is not stopped for a switch that cannot
    happen anyway."""
    gate = BatchGate()
    app = app_for(settings_for(tmp_path, *two_databases), gate)
    async with app.run_test(size=(110, 30)) as pilot:
        form = await start_enqueue(pilot, "consumers_block", "1000000", 200)
        await wait_until(pilot, lambda: form.running and len(app.quit_guards) > 0)
        [guard] = app.quit_guards
        app.quit_guards.append(lambda: "2 in-process consumer(s) running")
        app.switch_profile("beta")
        await pilot.pause()
        assert any("not switching to beta" in n.message for n in app._notifications)
        assert not isinstance(app.screen, ConfirmDialog)
        assert form.running and app.profile == "alpha"
        assert not guard.token.cancelled
        await pilot.press("escape")
        await gate.open_once_stopping(pilot, guard)
        await wait_until(pilot, lambda: form.result is not None, within=60)


async def test_an_exit_under_a_running_enqueue_still_audits_exactly_what_was_written(
    fresh_database: str,
) -> None:
    """An embedding program calls `app.exit()` while the form writes (no question asked: it is
    the program's call): the batch in flight commits or fails whole, and the audit line counts
    exactly the rows in the table."""
    await enqueue(fresh_database, "seed", 1)
    backend = await backend_for(fresh_database, DriverKind.ASYNCPG_POOL)
    app = PgqConsole(backend)
    try:
        async with app.run_test(size=(110, 30)) as pilot:
            await wait_until(pilot, lambda: has_row(app, "seed"), within=20)
            await pilot.press("e")
            await wait_until(
                pilot, lambda: isinstance(app.screen, EnqueueFormScreen) and app.screen.is_mounted
            )
            form = app.screen
            assert isinstance(form, EnqueueFormScreen)
            form.enqueuer.batch_size = 5000
            form.query_one("#entrypoint", Input).value = "exit_under_enqueue"
            form.query_one("#copies", Input).value = "1000000"
            form.confirmed_new_entrypoint = "exit_under_enqueue"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: form.running)
            # Some batches have landed (the guard knows them), more are on their way.
            await wait_until(
                pilot,
                lambda: bool(app.quit_guards and getattr(app.quit_guards[0], "written", None)),
            )
            app.exit()

        async def audited() -> bool:
            return any(r["entrypoint"] == "exit_under_enqueue" for r in records("enqueue"))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await audited():
            assert loop.time() < deadline, "no audit line for the interrupted enqueue"
            await asyncio.sleep(0.05)
        [record] = [r for r in records("enqueue") if r["entrypoint"] == "exit_under_enqueue"]
        assert record["count"] == len(await ids_of(fresh_database, "exit_under_enqueue"))
        assert record["count"] > 0
    finally:
        await backend.close()
