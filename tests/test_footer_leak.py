"""Switching screens for a long session must not keep old footer keys alive (Textual 8.2.8)."""

from __future__ import annotations

import gc

from pgq_console.app import PgqConsole
from tests.helpers import backend_for, wait_until


def live_footer_keys() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj).__name__ == "FooterKey")


async def test_screen_switches_do_not_accumulate_footer_keys(database_dsn: str) -> None:
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=5.0)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(pilot, lambda: app.current_mode == "overview")
            # gc.get_objects() skips what the console froze at startup; the first round after
            # the freeze brings every screen's current footer keys back into view.
            await wait_until(pilot, lambda: app.settled, within=10)
            for key in "1234568":  # every screen once, so each has built its footer
                await pilot.press(key)
                await pilot.pause(0.1)
            baseline = live_footer_keys()
            for _ in range(6):
                for key in "1234568":
                    await pilot.press(key)
                    await pilot.pause(0.05)
            await pilot.pause(0.3)
            grown = live_footer_keys() - baseline
            # Without ConsoleFooter this grew by about 12 keys per switch (~500 here).
            assert grown < 60, f"{grown} footer keys leaked over 42 screen switches"
    finally:
        await backend.close()
