"""The overview's refresher on its own (no UI), against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from pgq_console.core.clock import FixedClock
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview import Refresher
from tests.helpers import backend_for, enqueue, wait_for


async def test_an_event_is_answered_on_a_clock_that_never_moves(fresh_database: str) -> None:
    """Snapshots run on a FixedClock: the NOTIFY of an insert still brings a fresh read (the
    wait running out makes it due), so a test can ask for one and get it."""
    backend = await backend_for(fresh_database)
    snapshots: list[OverviewSnapshot] = []
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        FixedClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC)),
        on_snapshot=snapshots.append,
        on_status=statuses.append,
        interval_s=60.0,  # the timer stays out of it
    )
    task = asyncio.create_task(refresher.run())
    try:
        await wait_for(lambda: bool(snapshots) and refresher.status.listening, what="first read")
        assert not any(row.entrypoint == "frozen_clock" for row in snapshots[-1].rows)
        await enqueue(fresh_database, "frozen_clock", 3)
        await wait_for(
            lambda: any(r.entrypoint == "frozen_clock" for r in snapshots[-1].rows),
            what="the inserted jobs, shown after their NOTIFY",
        )
        assert refresher.status.events_seen >= 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.close()
