"""The console's screens, one mode each, and the number keys that jump to them.

To add a screen: write it in `screens/`, add one `ScreenSpec` here, and its factory in
`build_ahead.py`'s `SCREEN_FACTORIES` (the app builds screens; this catalog is plain data that
help, `:` and the palette read without importing any screen).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScreenSpec:
    mode: str
    key: str  # the number key that jumps here
    title: str


SCREENS: list[ScreenSpec] = [
    ScreenSpec("overview", "1", "Overview"),
    ScreenSpec("jobs", "2", "Jobs"),
    ScreenSpec("failures", "3", "Failures"),
    ScreenSpec("workers", "4", "Workers"),
    ScreenSpec("schedules", "5", "Schedules"),
    ScreenSpec("database", "6", "Database"),
    ScreenSpec("consumers", "7", "Consumers"),
    ScreenSpec("charts", "8", "Charts"),
]
