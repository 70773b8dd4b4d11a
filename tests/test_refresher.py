"""The overview's refresher on its own (no UI), against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from pgq_console.core.clock import FixedClock, SystemClock
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview import Refresher
from pgq_console.core.target import APPLICATION_NAME
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


async def test_a_read_in_flight_when_paused_is_not_shown(fresh_database: str) -> None:
    """`p` freezes the overview: a read that began before it and answers after it is dropped
    (it changed the numbers of a paused screen and counted as a refresh)."""
    backend = await backend_for(fresh_database)
    snapshots: list[OverviewSnapshot] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=snapshots.append,
        on_status=lambda _status: None,
        interval_s=60.0,  # only the reads asked for
        listen=False,
    )
    task = asyncio.create_task(refresher.run())
    holder = await asyncpg.connect(fresh_database)
    try:
        await wait_for(lambda: bool(snapshots), what="the first read")
        # The next read waits behind a lock: in flight.
        locking = holder.transaction()
        await locking.start()
        await holder.execute("LOCK TABLE pgqueuer, pgqueuer_log IN ACCESS EXCLUSIVE MODE")
        refresher.request_refresh()

        async def reads_waiting_on_the_lock() -> int:
            return int(
                await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    APPLICATION_NAME,
                )
            )

        async with asyncio.timeout(90):
            while not await reads_waiting_on_the_lock():  # noqa: ASYNC110 (a server's state)
                await asyncio.sleep(0.05)
            shown = len(snapshots)
            refresher.set_paused(True)
            await locking.rollback()  # the read answers, after `p`
            while await reads_waiting_on_the_lock():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # what the answer would have shown by now
        assert len(snapshots) == shown
        refresher.set_paused(False)  # read at once: the timer's next is a minute away
        await wait_for(lambda: len(snapshots) > shown, what="a read after `p` again", within=20)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await holder.close()
        await backend.close()
