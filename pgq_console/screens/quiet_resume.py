"""Screens the console switches to and straight back from, out of view, to build them ahead."""

from __future__ import annotations

from textual import events, on
from textual.screen import Screen


class QuietResume(Screen[None]):
    """A screen that skips the full restyle Textual gives it each time it is resumed, once, when
    the console says nothing it is styled by can have changed (`restyle_on_resume = False`).

    Building Jobs and Failures ahead is two mode switches in one go, there and straight back
    (build_ahead.py): the new screen is styled as its widgets mount, and the screen returned to
    was styled a moment before; each resume would restyle every widget of both again (~15-30 ms
    of CPU each, four per start). Any other resume (a number key, a dialog closing) restyles as
    usual. (Handlers run subclass first: this one before Screen's own.)
    """

    restyle_on_resume = True

    @on(events.ScreenResume)
    def _quiet_resume(self, event: events.ScreenResume) -> None:
        if not self.restyle_on_resume:
            self.restyle_on_resume = True
            event.refresh_styles = False
