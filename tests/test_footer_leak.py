"""Switching screens for a long session must not keep old footer keys alive (Textual 8.2.8)."""

from __future__ import annotations

import gc

import pytest
from textual.widgets import Footer

from pgq_console.app import PgqConsole
from pgq_console.screens.failures import FailuresScreen, GroupTable
from pgq_console.widgets.footer import ConsoleFooter
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


def footer_actions(footer: ConsoleFooter) -> list[str]:
    return [str(getattr(key, "action", "")) for key in footer.query("*")]


async def test_a_hidden_footer_recomposes_once_its_screen_is_shown(
    database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hidden screens (built ahead, or left) have their bindings change too; recomposing their
    # footers was most of a console start's CPU. Only the footer on screen recomposes, and a
    # footer whose bindings changed while hidden shows the right keys once its screen is shown.
    composed_hidden: list[str] = []
    parent_recompose = Footer.recompose

    async def recording(footer: Footer) -> None:
        if footer.is_attached and not footer.screen.is_current:
            composed_hidden.append(type(footer.screen).__name__)
        await parent_recompose(footer)

    monkeypatch.setattr(Footer, "recompose", recording)
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=5.0)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(pilot, lambda: app.settled, within=10)
            failures = app.get_screen_stack("failures")[-1]
            assert isinstance(failures, FailuresScreen) and not failures.is_current
            footer = failures.query_one(ConsoleFooter)
            # Its first composition (built ahead): the held table's keys, no group `c`.
            await wait_until(pilot, lambda: "requeue" in footer_actions(footer), what="keys")
            assert "cancel" not in footer_actions(footer)
            composed_hidden.clear()
            # While hidden, the group table takes the focus: `c` (cancel the group's retries)
            # becomes a key of the screen.
            failures.set_focus(failures.query_one(GroupTable))
            for _ in range(5):
                await pilot.pause()
            assert composed_hidden == [], "a hidden footer recomposed"
            assert "cancel" not in footer_actions(footer)
            await pilot.press("3")
            await wait_until(pilot, lambda: app.screen is failures, what="the Failures screen")
            await wait_until(
                pilot, lambda: "cancel" in footer_actions(footer), what="the group keys shown"
            )
            # The overview's footer, hidden meanwhile, still has its keys when shown again.
            await pilot.press("1")
            overview = app.get_screen_stack("overview")[-1]
            await wait_until(pilot, lambda: app.screen is overview, what="the overview")
            shown = overview.query_one(ConsoleFooter)
            await wait_until(pilot, lambda: "help" in footer_actions(shown), what="overview keys")
    finally:
        await backend.close()


async def test_a_footer_mounted_after_its_screen_published_its_bindings_shows_its_keys() -> None:
    """Textual's Footer composes its keys on the screen's next bindings update; on a busy start
    the screen can publish its bindings before the footer mounts, and the footer stayed blank."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.widgets import Static

    class Bare(App[None]):
        BINDINGS = [Binding("r", "refresh_now", "Refresh")]

        def compose(self) -> ComposeResult:
            yield Static("no footer yet")

    app = Bare()
    async with app.run_test(size=(80, 10)) as pilot:
        published: list[object] = []
        probe = app.screen.query_one(Static)
        app.screen.bindings_updated_signal.subscribe(probe, published.append)
        app.screen.refresh_bindings()
        await wait_until(pilot, lambda: bool(published), what="the screen's bindings update")
        await pilot.pause()
        late = ConsoleFooter()
        await app.screen.mount(late)
        await wait_until(
            pilot,
            lambda: "r" in [getattr(key, "key", "") for key in late.children],
            within=10,
            what="the late footer's keys",
        )


async def test_a_footer_rebuilds_its_keys_only_when_they_change() -> None:
    """Textual asks the footer to recompose on every focus change and screen resume; when no
    key changes, the keys stay (a recompose mounts and restyles every key); when one does (a
    binding disabled, the width), they are rebuilt."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.widgets import Button

    class Two(App[None]):
        BINDINGS = [Binding("r", "refresh_now", "Refresh"), Binding("d", "drop", "Drop")]
        droppable = True

        def compose(self) -> ComposeResult:
            yield Button("a", id="a")
            yield Button("b", id="b")
            yield ConsoleFooter()

        def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
            # None: shown, disabled (False would hide it)
            return None if action == "drop" and not self.droppable else True

    app = Two()
    async with app.run_test(size=(80, 10)) as pilot:
        footer = app.query_one(ConsoleFooter)
        await wait_until(
            pilot,
            lambda: {"refresh_now", "drop"} <= {getattr(k, "action", "") for k in footer.children},
            what="the footer's keys",
        )
        for _ in range(5):  # its first compositions (the screen's first bindings, its size)
            await pilot.pause()
        keys = list(footer.children)
        for target in ("#b", "#a", "#b"):  # focus moves, every key stays as it was
            app.query_one(target, Button).focus()
            await pilot.pause()
        app.screen.refresh_bindings()
        for _ in range(5):
            await pilot.pause()
        assert list(footer.children) == keys, "the footer rebuilt unchanged keys"
        app.droppable = False
        app.refresh_bindings()
        await wait_until(
            pilot,
            lambda: any(
                getattr(key, "action", "") == "drop" and key.has_class("-disabled")
                for key in footer.children
            ),
            what="the disabled key",
        )
        assert list(footer.children) != keys
