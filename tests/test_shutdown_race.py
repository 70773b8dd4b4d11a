"""Quitting while screens are being built for their first visit never crashes the exit.

Textual closes every mode's screen stack on exit, awaiting each screen's teardown; a screen
built or switched to meanwhile changed those stacks under it (`RuntimeError: dictionary changed
size during iteration` in `App._close_all`, about 1 run in 8 under load). Here the teardown is
slowed and the console quits at many points of its startup and first visits, 50 times: five
batches of ten (every quit moment once per batch), which xdist spreads over its workers
(tests/conftest.py, SPREAD_MODULES).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from textual.screen import Screen

from pgq_console.app import PgqConsole
from pgq_console.build_ahead import BUILT_AHEAD_MODES, ScreenModesApp
from pgq_console.core.clock import FixedClock
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, enqueue, wait_until
from tests.test_snapshots import FIXED_NOW

RUNS = 50
BATCH = 10  # one run per quit moment below: (run % 10) * 0.1 s


@pytest.fixture(scope="module")
def race_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "shutdown_race")
    asyncio.run(enqueue(dsn, "race", 3))
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


@pytest.mark.parametrize("batch", range(RUNS // BATCH))
async def test_quitting_during_first_visits_never_breaks_the_exit(
    batch: int, race_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_teardown(self: Screen[Any]) -> None:
        await asyncio.sleep(0.02)  # every screen's unmount yields while the stacks are closed

    monkeypatch.setattr(Screen, "on_unmount", slow_teardown, raising=False)

    async def opener() -> Any:
        return await backend_for(race_dsn)

    outcomes: list[str] = []
    runs = range(batch * BATCH, (batch + 1) * BATCH)
    for run in runs:
        app = PgqConsole(opener, clock=FixedClock(FIXED_NOW))
        app.animation_level = "none"
        try:
            async with app.run_test(size=(100, 24)) as pilot:
                if run % 2:
                    await wait_until(pilot, lambda: pilot.app.current_mode == "overview")
                # Number keys whose screens are built and read on their first visit (their
                # actions: `pilot.press` would wait for an idle CPU, seconds on a busy box)...
                await app.run_action("jump('2')")
                await app.run_action("jump('3')")
                # ...and the quit landing at a different moment of that work each run.
                await asyncio.sleep((run % 10) * 0.1)
                await app.run_action("jump('4')")
                app.exit()
            outcomes.append("ok" if app.return_code == 0 else f"exit {app.return_code}")
        except Exception as exc:  # what broke the exit is the result
            outcomes.append(f"{type(exc).__name__}: {exc}")
    failures = [
        (run, outcome) for run, outcome in zip(runs, outcomes, strict=True) if outcome != "ok"
    ]
    assert not failures, f"{len(failures)} of {BATCH} exits failed: {failures[:5]}"


@pytest.mark.parametrize("mode", BUILT_AHEAD_MODES)
async def test_quitting_while_a_screen_is_built_ahead(
    mode: str, race_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quit lands exactly while `mode`'s screen is being built ahead (switched to off
    screen and back, still mounting): the exit waits for it and ends cleanly, five times."""

    async def slow_teardown(self: Screen[Any]) -> None:
        await asyncio.sleep(0.02)

    monkeypatch.setattr(Screen, "on_unmount", slow_teardown, raising=False)
    build_ahead = ScreenModesApp._build_ahead
    quit_while_mounting: list[str] = []

    def build_then_quit(self: ScreenModesApp, modes: list[str]) -> None:
        building = modes[0] if modes else None
        build_ahead(self, modes)
        if building == mode and self._mounting():
            quit_while_mounting.append(building)
            self.exit()

    monkeypatch.setattr(ScreenModesApp, "_build_ahead", build_then_quit)

    async def opener() -> Any:
        return await backend_for(race_dsn)

    for run in range(5):
        app = PgqConsole(opener, clock=FixedClock(FIXED_NOW))
        app.animation_level = "none"
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_until(
                pilot,
                lambda run=run: len(quit_while_mounting) > run,  # type: ignore[misc]
                within=60,
                what=f"the quit during {mode}'s build ahead",
            )
        assert app.return_code == 0, (run, app.return_code)
    assert quit_while_mounting == [mode] * 5
