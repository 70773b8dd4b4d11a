"""The console's screens, one mode each, and the number keys that jump to them.

To add a screen: write it in `screens/`, then add one `ScreenSpec` here. Each factory gets the
running app, whose `backend` is open by then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from pgq_console.app import PgqConsole


@dataclass(frozen=True)
class ScreenSpec:
    mode: str
    key: str  # the number key that jumps here
    title: str
    factory: Callable[[PgqConsole], Screen[None]]


def _overview(app: PgqConsole) -> Screen[None]:
    from pgq_console.core.backend import Backend
    from pgq_console.screens.overview import OverviewScreen

    assert isinstance(app.backend, Backend)
    return OverviewScreen(
        app.backend, app.clock, interval_s=app.refresh_interval, listen=app.listen
    )


SCREENS: list[ScreenSpec] = [
    ScreenSpec("overview", "1", "Overview", _overview),
]
