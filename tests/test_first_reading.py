"""The overview's first snapshot is read before the pulse and the screens built ahead read
anything (core/first_reading.py): over a remote link their reads took the pool's connections
first and the first numbers waited behind them.

Real PostgreSQL, the default pool. The overview's reads are held (a slow link, as slow as the
test likes) until the pulse has started and the Jobs and Failures screens are built, off screen,
as building ahead does; then they go. Every read the backend is asked for is recorded with who
asked (the module in its call chain), and the overview's first snapshot with them.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend
from pgq_console.screens.overview import OverviewScreen
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, wait_until

WHO = (
    ("pgq_console/core/pulse.py", "pulse"),
    ("pgq_console/screens/jobs.py", "jobs"),
    ("pgq_console/screens/failures.py", "failures"),
    ("pgq_console/core/overview/", "overview"),
)


@pytest.fixture(scope="module")
def dsn(server_dsn: str) -> Iterator[str]:
    made = make_database(server_dsn, "first_reading")
    try:
        yield made
    finally:
        drop_database(server_dsn, made)


# Set around a screen's reading that runs its statements as tasks of their own (gathered: their
# frames do not lead back to the screen; tasks inherit the context they were created in).
READER: contextvars.ContextVar[str | None] = contextvars.ContextVar("reader", default=None)


def _who() -> str:
    reader = READER.get()
    if reader is not None:
        return reader
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        for part, name in WHO:
            if part in path:
                return name
        frame = frame.f_back  # type: ignore[assignment]
    return "other"


def _recording(backend: Backend, log: list[str], overview_held: asyncio.Event) -> None:
    read = backend.read

    async def recorded(sql: str, *args: object) -> list[dict[str, Any]]:
        who = _who()
        log.append(f"read {who}")
        if who == "overview":
            await overview_held.wait()
        return await read(sql, *args)

    backend.read = recorded  # type: ignore[method-assign]


async def test_overview_first_snapshot_is_read_before_the_pulse_and_built_ahead_screens(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    released = asyncio.Event()
    backend = await backend_for(dsn)
    _recording(backend, log, released)
    post = OverviewScreen._post_snapshot

    def posted(self: OverviewScreen, snapshot: Any) -> None:
        log.append("snapshot")
        post(self, snapshot)

    monkeypatch.setattr(OverviewScreen, "_post_snapshot", posted)
    import pgq_console.screens.failures as failures_screen

    gathered = getattr(failures_screen, "fetch_held_and_groups")  # noqa: B009 (patched below)

    async def failures_reading(*args: Any, **kwargs: Any) -> Any:
        token = READER.set("failures")  # the tasks it gathers copy this context
        try:
            return await gathered(*args, **kwargs)
        finally:
            READER.reset(token)

    monkeypatch.setattr(failures_screen, "fetch_held_and_groups", failures_reading)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: "read overview" in log, what="the overview reading")
            # Built off screen, as building ahead does: there and straight back.
            app.switch_mode("jobs")
            app.switch_mode("failures")
            app.switch_mode("overview")
            for mode in ("jobs", "failures"):
                await wait_until(
                    pilot,
                    lambda mode=mode: app.get_screen_stack(mode)[-1].is_mounted,  # type: ignore[misc]
                    what=f"the {mode} screen built",
                )
            await pilot.pause()
            assert isinstance(app.screen, OverviewScreen)
            early = [entry for entry in log if entry not in ("read overview", "read other")]
            released.set()
            await wait_until(
                pilot,
                lambda: {"read pulse", "read jobs", "read failures"} <= set(log),
                what="the pulse and the screens built ahead reading",
            )
            assert early == [], log
            first = log.index("snapshot")
            for who in ("pulse", "jobs", "failures"):
                assert log.index(f"read {who}") > first, log
    finally:
        released.set()
        await backend.close()
