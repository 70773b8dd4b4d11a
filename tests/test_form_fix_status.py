"""The consumer form's "Fix N fields first" follows the fields: it counts down as they are fixed
and goes once none is left (a stale one sends the operator looking for a problem)."""

from __future__ import annotations

from textual.widgets import Input, Static

from pgq_console.screens.consumer_form import ConsumerFormScreen
from tests.helpers import wait_until
from tests.test_consumers_screen import (  # noqa: F401
    console,
    open_form,
    screen_dsn,
    to_consumers,
)


async def test_the_consumer_forms_fix_line_follows_the_fields(screen_dsn: str) -> None:  # noqa: F811
    app = console(screen_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        await to_consumers(pilot)
        form = await open_form(pilot)
        status = form.query_one("#consumer-form-status", Static)
        form.query_one("#entrypoints", Input).value = "fix_jobs"
        form.query_one("#batch_size", Input).value = "many"
        form.query_one("#concurrency_limit", Input).value = "-3"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "Fix 2 fields first" in str(status.render()))
        form.query_one("#batch_size", Input).value = "5"
        await wait_until(pilot, lambda: "Fix 1 field first" in str(status.render()))
        form.query_one("#concurrency_limit", Input).value = "0"
        await wait_until(pilot, lambda: str(status.render()).strip() == "", what="line cleared")
        assert isinstance(app.screen, ConsumerFormScreen)  # nothing started meanwhile
        assert not list(app.consumers)
