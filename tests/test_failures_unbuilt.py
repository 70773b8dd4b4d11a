"""The footer asks a Failures screen which keys apply while it is still being built (ahead of
its first visit) or torn down: with no groups table yet, `c` does not apply, and asking does
not raise (a `:db` profile switch under load raised NoMatches out of the footer's recompose)."""

from __future__ import annotations

from pgq_console.core.clock import SystemClock
from pgq_console.screens.failures import FailuresScreen
from tests.helpers import backend_for


async def test_an_unbuilt_failures_screen_answers_check_action(fresh_database: str) -> None:
    backend = await backend_for(fresh_database)
    try:
        screen = FailuresScreen(backend, SystemClock(), interval_s=2.0)
        assert screen.check_action("cancel", ()) is False
        assert screen.check_action("cancel_all", ()) is False
    finally:
        await backend.close()
