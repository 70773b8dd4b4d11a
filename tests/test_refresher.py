"""The overview's refresher on its own (no UI), against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pgq_console.core.clock import FixedClock, SystemClock
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview import Refresher
from pgq_console.core.target import APPLICATION_NAME
from tests.helpers import backend_for, enqueue, wait_for


async def console_reads_on_a_lock(holder: asyncpg.Connection) -> int:
    """How many of the console's statements wait on a lock (seen from another session)."""
    return int(
        await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'",
            APPLICATION_NAME,
        )
    )


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


async def test_a_forged_notify_does_not_set_the_latency(fresh_database: str) -> None:
    """Any role may NOTIFY PgQueuer's channel: a table-changed event sent "a year ago" made
    the header say 'latency 334d15h'. It still counts as an event; the latency stays."""
    backend = await backend_for(fresh_database)
    snapshots: list[OverviewSnapshot] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=snapshots.append,
        on_status=lambda _: None,
        interval_s=60.0,
    )
    task = asyncio.create_task(refresher.run())
    forged = json.dumps(
        {
            "channel": "ch_pgqueuer",
            "operation": "insert",
            "sent_at": "2026-01-01T00:00:00+00:00",
            "table": "pgqueuer",
            "type": "table_changed_event",
        }
    )
    sender = await asyncpg.connect(fresh_database)
    try:
        await wait_for(lambda: bool(snapshots) and refresher.status.listening, what="first read")
        seen = refresher.status.events_seen
        await sender.execute("SELECT pg_notify('ch_pgqueuer', $1)", forged)
        await wait_for(lambda: refresher.status.events_seen > seen, what="the forged event")
        assert refresher.status.last_event_latency_s is None
        await enqueue(fresh_database, "real_one", 1)  # a real event still measures
        await wait_for(
            lambda: refresher.status.last_event_latency_s is not None, what="a real latency"
        )
        assert (refresher.status.last_event_latency_s or 0) < 3600
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sender.close()
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

        async with asyncio.timeout(90):
            while not await console_reads_on_a_lock(holder):  # noqa: ASYNC110 (a server's state)
                await asyncio.sleep(0.05)
            shown = len(snapshots)
            refresher.set_paused(True)
            await locking.rollback()  # the read answers, after `p`
            while await console_reads_on_a_lock(holder):  # noqa: ASYNC110
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


async def test_a_slow_windows_read_does_not_hold_back_new_jobs(fresh_database: str) -> None:
    """The windows read the log and the statistics (0.1-0.6 s under load, seconds at 10M rows);
    read in the depth's round they held the next depth read back that long. Now they are read
    aside: while one waits (here on a lock), a new entrypoint still shows at its NOTIFY."""
    backend = await backend_for(fresh_database)  # a pool: the windows take their own connection
    # The windows wait on the lock for as long as the test holds it (not the default timeout,
    # after which the old round went on and showed the new jobs, if late).
    backend.statement_timeout = timedelta(minutes=5)
    snapshots: list[OverviewSnapshot] = []
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=snapshots.append,
        on_status=statuses.append,
        interval_s=0.25,  # the windows are due again a quarter of a second after each read
    )
    task = asyncio.create_task(refresher.run())
    holder = await asyncpg.connect(fresh_database)
    try:
        await wait_for(lambda: bool(snapshots) and refresher.status.listening, what="first read")
        locking = holder.transaction()
        await locking.start()
        await holder.execute("LOCK TABLE pgqueuer_statistics IN ACCESS EXCLUSIVE MODE")

        async with asyncio.timeout(90):
            while not await console_reads_on_a_lock(holder):  # noqa: ASYNC110 (a server's state)
                await asyncio.sleep(0.05)
        await enqueue(fresh_database, "while_windows_wait", 2)
        await wait_for(
            lambda: any(r.entrypoint == "while_windows_wait" for r in snapshots[-1].rows),
            what="the new entrypoint while the windows read waits on its lock",
            within=10,  # a liveness bound: the old round waited for the windows, minutes here
        )
        assert await console_reads_on_a_lock(holder)  # it was shown while the windows still wait
        await locking.rollback()
        shown = len(snapshots)
        await wait_for(lambda: len(snapshots) > shown + 2, what="reads after the lock went")
        assert refresher.status.error is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await holder.close()
        await backend.close()


async def test_windows_that_time_out_say_so_while_the_depth_goes_on(fresh_database: str) -> None:
    """A windows read cancelled by the statement timeout (a locked statistics table) is said on
    the status line until one succeeds; the depth reads go on meanwhile."""
    backend = await backend_for(fresh_database)
    backend.statement_timeout = timedelta(seconds=1)
    snapshots: list[OverviewSnapshot] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=snapshots.append,
        on_status=lambda _status: None,
        interval_s=0.25,
    )
    task = asyncio.create_task(refresher.run())
    holder = await asyncpg.connect(fresh_database)
    try:
        await wait_for(lambda: bool(snapshots) and refresher.status.listening, what="first read")
        locking = holder.transaction()
        await locking.start()
        await holder.execute("LOCK TABLE pgqueuer_statistics IN ACCESS EXCLUSIVE MODE")
        await wait_for(lambda: refresher.status.error is not None, what="the windows' timeout")
        assert "timeout" in str(refresher.status.error).lower(), refresher.status.error
        await enqueue(fresh_database, "while_windows_fail", 1)
        await wait_for(
            lambda: any(r.entrypoint == "while_windows_fail" for r in snapshots[-1].rows),
            what="the new entrypoint while the windows fail",
        )
        assert refresher.status.error is not None  # still said: no windows read has succeeded
        await locking.rollback()
        await wait_for(lambda: refresher.status.error is None, what="the error gone once read")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await holder.close()
        await backend.close()
