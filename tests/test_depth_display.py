"""Before the first exact count of a large queue, the overview says its depths are lower
bounds and how to get exact ones; `r` asks for an exact count."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.core import depth as depth_module
from pgq_console.core.depth import DepthTracker
from tests.helpers import backend_for, enqueue, has_row, number, overview_of, wait_until


async def test_lower_bounds_are_labelled_until_the_exact_count(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = fresh_database
    await enqueue(dsn, "a", 4)
    await enqueue(dsn, "b", 2)
    connection = await asyncpg.connect(dsn)
    try:  # two jobs in flight, one more than the first look reads
        await connection.execute(
            "UPDATE pgqueuer SET status = 'picked', heartbeat = now() WHERE entrypoint = 'b'"
        )
    finally:
        await connection.close()
    monkeypatch.setattr(depth_module, "FIRST_LOOK_PICKED_CAP", 1)
    # Treat the queue as large: a first look, then the exact count aside (held until released),
    # and the log followed from it (never counted directly).
    monkeypatch.setattr(depth_module, "SMALL_QUEUE_BYTES", 0)
    monkeypatch.setattr(depth_module, "FOLLOW_ABOVE", 0)
    monkeypatch.setattr(depth_module, "FOLLOW_BELOW", 0)
    release = asyncio.Event()
    exact_counts = 0
    read_exact = DepthTracker.read_exact

    async def held_read_exact(self: DepthTracker, backend: Any) -> list[dict[str, Any]]:
        nonlocal exact_counts
        await release.wait()
        exact_counts += 1
        return await read_exact(self, backend)

    # The exact count's read (alongside the first look on a pool, or after it).
    monkeypatch.setattr(DepthTracker, "read_exact", held_read_exact)
    backend = await backend_for(dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(200, 30)) as pilot:

            def live_line() -> str:
                return str(app.screen.query_one("#live-line").render())

            await wait_until(pilot, lambda: has_row(app, "a"))
            assert number(app, "a", "ready") == "4"
            await wait_until(pilot, lambda: "counting exactly" in live_line())
            assert "r: count exactly now" in live_line()
            assert "picked of the first" in live_line()
            assert number(app, "b", "picked") == "1"  # the first look's lower bound
            release.set()
            await wait_until(pilot, lambda: "counting exactly" not in live_line())
            await wait_until(pilot, lambda: number(app, "b", "picked") == "2", what="exact")
            assert exact_counts == 1
            # `r` asks for another exact count (aside), and refreshes.
            await pilot.press("r")
            await wait_until(pilot, lambda: exact_counts == 2)
            screen = overview_of(app)
            # `exact_counts` counts the start of the second count; `resyncs` its end.
            await wait_until(
                pilot,
                lambda: screen.refresher is not None and screen.refresher.tracker.resyncs == 2,
                what="the second exact count",
            )
    finally:
        await backend.close()
