"""Screens that skip Textual's full restyle on resume when nothing they are styled by changed."""

from __future__ import annotations

from textual import events, on
from textual.screen import Screen


class QuietResume(Screen[None]):
    """A screen that skips the full restyle Textual gives it each time it is resumed when
    nothing it is styled by can have changed while it was away.

    Textual restyles every widget of a screen on each resume (`update_node_styles`): 15-30 ms of
    CPU for Jobs, about a quarter of a number key's time at 10M rows (bench/README.md). What a
    hidden screen's styles depend on that it does not hear of itself is the app's: the theme,
    the app's classes and its pseudo-classes (`:focus`/`:blur` of the terminal, `:ansi`), which
    Textual re-applies to the current screen only. Its own widgets' class changes and mounts
    are styled as they happen, shown or not. So the resume restyles when any of the app's
    changed since the screen was suspended, and otherwise skips it.

    Building Jobs and Failures ahead is two mode switches in one go (build_ahead.py): there
    the console says so (`restyle_on_resume = False`): the new screen is styled as its widgets
    mount, the one returned to a moment before. (Handlers run subclass first: this one before
    Screen's own.)
    """

    restyle_on_resume = True
    # What the app's side of the styles was when this screen was last suspended.
    _suspended_in: tuple[object, ...] | None = None

    def _app_style_context(self) -> tuple[object, ...]:
        app = self.app
        return (
            app.theme,
            app.app_focus,
            app.ansi_color,
            app.no_color,
            frozenset(app.classes),
            frozenset(app.pseudo_classes),
        )

    @on(events.ScreenSuspend)
    def _remember_app_styles(self) -> None:
        self._suspended_in = self._app_style_context()

    @on(events.ScreenResume)
    def _quiet_resume(self, event: events.ScreenResume) -> None:
        if not self.restyle_on_resume:
            self.restyle_on_resume = True
            event.refresh_styles = False
        elif self._suspended_in is not None and self._suspended_in == self._app_style_context():
            event.refresh_styles = False
