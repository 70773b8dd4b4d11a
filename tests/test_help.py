"""`?` help: derived from the live bindings and navigation.SCREENS; snapshots at 80x24."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from pgq_console import navigation
from pgq_console.config import Environment
from pgq_console.screens.help import HelpScreen, grouped_bindings
from pgq_console.screens.overview import OverviewScreen
from tests import test_snapshots
from tests.test_snapshots import console, opener_for, until_overview_ready

# The seeded, fixed-clock database of the overview snapshots (a module-scoped fixture).
snapshot_dsn = test_snapshots.snapshot_dsn
seeded_dsn = test_snapshots.seeded_dsn


@pytest.fixture
def overview_only() -> Iterator[None]:
    """Snapshots must not change each time another screen is registered."""
    saved = list(navigation.SCREENS)
    navigation.SCREENS[:] = [spec for spec in saved if spec.mode == "overview"]
    try:
        yield
    finally:
        navigation.SCREENS[:] = saved


def help_text(app: Any) -> str:
    screen = app.screen
    assert isinstance(screen, HelpScreen)
    static = screen.query_one("#help-text")
    from rich.console import Console

    console_ = Console(width=120, record=True)
    console_.print(static.content)  # type: ignore[attr-defined]
    return console_.export_text()


async def test_help_lists_this_screens_keys_every_screen_and_global_keys(seeded_dsn: str) -> None:
    app = console(opener_for(seeded_dsn))
    async with app.run_test(size=(100, 40)) as pilot:
        await until_overview_ready(pilot)
        overview = app.screen
        await pilot.press("question_mark")
        text = help_text(app)
        # Every described binding of the overview, including those hidden from the footer.
        for binding in OverviewScreen.BINDINGS:
            if binding.action == "enable_autocommit":  # type: ignore[union-attr]
                continue  # only while the autocommit banner shows (checked below)
            assert binding.description in text, binding  # type: ignore[union-attr]
        assert "Slower" in text  # every described key
        assert "Autocommit" not in text  # `a` only exists while the autocommit banner shows
        for spec in navigation.SCREENS:
            assert f"{spec.key} {spec.title}" in text
        for description in ("Quit", "Help", "Command", "Back", "palette"):
            assert description in text
        assert "j/k" in text and "g/G" in text
        groups = grouped_bindings(app, overview)
        assert {"screen", "everywhere"} <= set(groups)
        await pilot.press("question_mark")  # toggles
        assert isinstance(app.screen, OverviewScreen)


async def test_help_follows_a_screens_bindings(seeded_dsn: str) -> None:
    """Another engineer's screen: its keys appear in help without touching the help code."""
    from textual.binding import Binding
    from textual.screen import Screen
    from textual.widgets import Footer

    class SomeoneElses(Screen[None]):
        BINDINGS = [
            Binding("x", "app.bell", "Something new", show=False),
            Binding("slash", "app.bell", "Filter", key_display="/"),
        ]

        def compose(self) -> Any:
            yield Footer()

    app = console(opener_for(seeded_dsn))
    async with app.run_test(size=(100, 40)) as pilot:
        await until_overview_ready(pilot)
        await app.push_screen(SomeoneElses())
        await pilot.press("question_mark")
        text = help_text(app)
        assert "Something new" in text and "Filter" in text
        assert "Someone elses" in text  # no ScreenSpec: named after its class, in words


def test_help_80x24(snap_compare: Any, seeded_dsn: str, overview_only: None) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await until_overview_ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = console(opener_for(seeded_dsn))
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


def test_command_line_80x24(snap_compare: Any, seeded_dsn: str, overview_only: None) -> None:
    async def open_command_line(pilot: Pilot[Any]) -> None:
        await until_overview_ready(pilot)
        await pilot.press("colon", *"pa")
        await pilot.pause()
        pilot.app.screen.query_one("#command-input").cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    app = console(opener_for(seeded_dsn))
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_command_line)


def test_environment_badge_80x24(snap_compare: Any, seeded_dsn: str, overview_only: None) -> None:
    app = console(opener_for(seeded_dsn), read_only=True)
    app.environment = Environment("PROD", "red")
    assert snap_compare(app, terminal_size=(80, 24), run_before=until_overview_ready)


def test_help_160x48(snap_compare: Any, seeded_dsn: str, overview_only: None) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await test_snapshots.until_overview_pulse(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = console(opener_for(seeded_dsn))
    assert snap_compare(app, terminal_size=(160, 48), run_before=open_help)


async def test_help_shows_the_keys_in_use_after_a_keymap(tmp_path: Path, seeded_dsn: str) -> None:
    """After `[keymap]` remaps a screen key and a list key, help names the new keys (it
    printed the defaults: '2 Jobs', 'j/k'), and no list keys a screen does not have."""
    from tests.helpers import wait_until
    from tests.test_keymap import app_for, settings_with

    settings = settings_with(tmp_path, seeded_dsn, '"screen.2" = "x"\n"cursor.down" = "n"')
    app = app_for(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "overview", what="overview")
        app.action_help()
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, HelpScreen) and bool(app.screen.query("#help-text")),
            what="help",
        )
        text = help_text(app)
        assert "x Jobs" in text and "2 Jobs" not in text
        assert "n/k" in text and "j/k" not in text
        assert "mark" not in text.split("What the columns")[0]  # the overview marks nothing
