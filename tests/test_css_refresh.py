"""Switching screens restyles only when the styles changed: no stylesheet re-parse per number
key, yet a theme changed while a screen was out of view still reaches it when it is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.color import Color
from textual.css.stylesheet import Stylesheet

from pgq_console.navigation import SCREENS
from tests.helpers import wait_until
from tests.screens_support import console

pytestmark = pytest.mark.asyncio


def count_reparses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reparses: list[int] = []
    reparse = Stylesheet.reparse

    def counting(self: Stylesheet) -> None:
        reparses.append(1)
        reparse(self)

    monkeypatch.setattr(Stylesheet, "reparse", counting)
    return reparses


def showing(app: Any, mode: str) -> Callable[[], bool]:
    return lambda: bool(app.current_mode == mode and app.screen.is_mounted)


def background_of(app: Any) -> Color:
    return Color.parse(app.current_theme.background)


async def test_number_keys_do_not_reparse_the_stylesheet(
    database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reparses = count_reparses(monkeypatch)
    app = console(database_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.settled, what="startup work done")
        reparses.clear()
        for spec in [*SCREENS[1:], SCREENS[0], SCREENS[1]]:
            await pilot.press(spec.key)
            await wait_until(
                pilot,
                showing(app, spec.mode),
                what=f"{spec.mode} shown",
            )
            # Styled all the same: the theme's background, not an unstyled screen.
            assert app.screen.styles.background == background_of(app), spec.mode
        assert reparses == []


async def test_a_theme_changed_out_of_view_reaches_the_screen_when_shown(
    database_dsn: str,
) -> None:
    app = console(database_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.settled, what="startup work done")
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "workers", what="workers shown")
        await pilot.press("1")
        await wait_until(pilot, lambda: app.current_mode == "overview", what="overview shown")
        before = app.screen.styles.background
        app.theme = "pgq-light" if app.theme != "pgq-light" else "pgq-dark"
        await wait_until(
            pilot,
            lambda: app.screen.styles.background == background_of(app),
            what="overview restyled",
        )
        assert app.screen.styles.background != before
        # Jobs was built ahead (never shown), Workers shown before the change: both out of view.
        for key, mode in (("2", "jobs"), ("4", "workers")):
            await pilot.press(key)
            await wait_until(pilot, showing(app, mode), what=f"{mode} shown")
            await wait_until(
                pilot,
                lambda: app.screen.styles.background == background_of(app),
                what=f"{mode} in the new theme",
            )


async def test_a_screen_shown_again_unchanged_is_not_restyled_whole(
    database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back to Jobs, Failures or the overview with nothing of the app's styles changed: no full
    restyle of the screen (15-30 ms a key at 10M rows); after a theme change, one."""
    from textual.dom import DOMNode

    from pgq_console.screens.quiet_resume import QuietResume

    restyled: list[str] = []
    update_node_styles = DOMNode.update_node_styles

    def counting(self: DOMNode, animate: bool = True) -> None:
        if isinstance(self, QuietResume):
            restyled.append(type(self).__name__)
        update_node_styles(self, animate)

    monkeypatch.setattr(DOMNode, "update_node_styles", counting)
    app = console(database_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.settled, what="startup work done")
        for key, mode in (("2", "jobs"), ("3", "failures"), ("1", "overview")):
            await pilot.press(key)
            await wait_until(pilot, showing(app, mode), what=f"{mode} shown")
        restyled.clear()
        for key, mode in (("2", "jobs"), ("3", "failures"), ("1", "overview"), ("2", "jobs")):
            await pilot.press(key)
            await wait_until(pilot, showing(app, mode), what=f"{mode} shown")
            assert app.screen.styles.background == background_of(app), mode
        assert restyled == []
        await pilot.press("1")
        await wait_until(pilot, showing(app, "overview"), what="overview shown")
        app.theme = "pgq-light" if app.theme != "pgq-light" else "pgq-dark"
        await pilot.press("2")
        await wait_until(pilot, showing(app, "jobs"), what="jobs shown")
        await wait_until(
            pilot,
            lambda: app.screen.styles.background == background_of(app),
            what="jobs in the new theme",
        )
        assert "JobsScreen" in restyled
