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
    from pgq_console.screens.overview import OverviewScreen

    assert app.backend is not None
    return OverviewScreen(
        app.backend, app.clock, interval_s=app.refresh_interval, listen=app.listen
    )


def _jobs(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.jobs import JobsScreen

    assert app.backend is not None
    return JobsScreen(app.backend, app.clock, interval_s=app.refresh_interval)


def _failures(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.failures import FailuresScreen

    assert app.backend is not None
    return FailuresScreen(app.backend, app.clock, interval_s=app.refresh_interval)


def _workers(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.workers import WorkersScreen

    assert app.backend is not None
    return WorkersScreen(app.backend, app.clock)


def _schedules(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.schedules import SchedulesScreen

    assert app.backend is not None
    return SchedulesScreen(app.backend, app.clock)


def _health(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.health import HealthScreen

    assert app.backend is not None
    return HealthScreen(app.backend, app.clock)


def _charts(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.charts import ChartsScreen

    assert app.backend is not None
    return ChartsScreen(app.backend, app.clock)


def _consumers(app: PgqConsole) -> Screen[None]:
    from pgq_console.screens.consumers import ConsumersScreen

    return ConsumersScreen(app)


SCREENS: list[ScreenSpec] = [
    ScreenSpec("overview", "1", "Overview", _overview),
    ScreenSpec("jobs", "2", "Jobs", _jobs),
    ScreenSpec("failures", "3", "Failures", _failures),
    ScreenSpec("workers", "4", "Workers", _workers),
    ScreenSpec("schedules", "5", "Schedules", _schedules),
    ScreenSpec("database", "6", "Database", _health),
    ScreenSpec("consumers", "7", "Consumers", _consumers),
    ScreenSpec("charts", "8", "Charts", _charts),
]
