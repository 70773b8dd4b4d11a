"""The overview feed's slow reading costs what changed, not what the tables hold (real
PostgreSQL): after the first hour's failure groups only the rows logged since are grouped, and
the workers read (every picked job) keeps to its slice of the database budget, which the feed
says when it slows the read down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import pgq_console.core.pulse as pulse
from pgq_console.app import PgqConsole
from pgq_console.core.clock import SystemClock
from pgq_console.core.pulse import PULSE_POLL_S, EventFeed, PulseReader
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.pulse import EventFeedView
from tests.conftest import drop_database, make_database
from tests.helpers import MovingClock, backend_for, wait_until
from tests.screens_support import run_sql, seed

WORKER = "0d0d0d0d-0000-4000-8000-00000000beef"


def failure_rows(exception_type: str, age: str, count: int) -> str:
    return f"""
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, traceback)
SELECT 700000 + g, 'exception', 0, 'charge_card', now() - interval '{age}',
    jsonb_build_object('exception_type', '{exception_type}',
        'exception_message', 'it broke',
        'traceback', 'Traceback (most recent call last):' || E'\\n'
            || '  File "/app/billing.py", line 12, in charge' || E'\\n'
            || '{exception_type}: it broke' || E'\\n')
FROM generate_series(1, {count}) AS g"""


@pytest.fixture
def pulse_db(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "pulse_reader")
    seed(
        dsn,
        failure_rows("OldTimeout", "10 minutes", 3)
        + ";INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat)"
        f" VALUES (0, 'picked', 'resize', '{WORKER}', now())",
    )
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def kinds(reading: pulse.PulseReading) -> set[str]:
    return {group.fingerprint.exception_type for group in reading.failures.groups}


async def test_later_failure_reads_group_only_the_rows_since(pulse_db: str) -> None:
    backend = await backend_for(pulse_db)
    try:
        clock = MovingClock(datetime.now(UTC))
        reader = PulseReader(backend, clock)
        feed = EventFeed()
        first = await reader.read()
        assert kinds(first) == {"OldTimeout"}  # the first read: the last hour
        feed.note_failures(first.failures, clock.now())

        clock.at += timedelta(seconds=PULSE_POLL_S)
        await run_sql(pulse_db, failure_rows("CardDeclined", "1 second", 2))
        second = await reader.read()
        # Ten minutes old: outside the span since the last read (plus its overlap), so the
        # hour is not grouped again; the new kind is, with all of its occurrences.
        assert reader.failure_window(clock.now()) < timedelta(minutes=10)
        assert kinds(second) == {"CardDeclined"}
        feed.note_failures(second.failures, clock.now())
        texts = [event.text for event in feed.events]
        assert any("CardDeclined" in text and "(2× in 1h)" in text for text in texts), texts
        assert not any("OldTimeout" in text for text in texts[:1]), texts
    finally:
        await backend.close()


async def test_first_read_after_a_long_pause_looks_back_an_hour_at_most(pulse_db: str) -> None:
    backend = await backend_for(pulse_db)
    try:
        clock = MovingClock(datetime.now(UTC))
        reader = PulseReader(backend, clock)
        await reader.read()
        clock.at += timedelta(hours=5)
        assert reader.failure_window(clock.now()) == pulse.FAILURE_WINDOW
    finally:
        await backend.close()


async def test_a_costly_workers_read_waits_for_its_budget(pulse_db: str) -> None:
    backend = await backend_for(pulse_db)
    try:
        # A budget every read fits (a whole core: a gap of its own duration, under a poll's
        # 15 s on any machine): workers are read at every poll.
        cheap = PulseReader(backend, SystemClock(), budget=1.0)
        assert (await cheap.read()).workers is not None
        second = await cheap.read()
        assert second.workers is not None and second.workers_every_s is None

        # A budget no read fits: the next poll reuses nothing and says how far apart they are.
        costly = PulseReader(backend, SystemClock(), budget=1e-9)
        first = await costly.read()
        assert first.workers is not None
        assert [w.queue_manager_id for w in first.workers.workers] == [WORKER]
        assert first.workers_every_s is not None and first.workers_every_s > PULSE_POLL_S
        assert first.workers_every_s == pulse.WORKERS_MAX_GAP_S  # never longer than that
        later = await costly.read()
        assert later.workers is None
        assert later.failures is not None  # the failures still read every poll
    finally:
        await backend.close()


async def test_the_feed_says_when_workers_are_read_less_often(
    pulse_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulse, "WORKERS_BUDGET", 1e-9)
    backend = await backend_for(pulse_db)
    app = PgqConsole(backend, refresh_interval=0.5)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="the overview")
        view = app.screen.query_one(EventFeedView)
        await wait_until(
            pilot,
            lambda: view.quiet_reason.startswith("workers every "),
            what="the feed saying its workers read is slowed",
        )
        assert "a read takes" in view.quiet_reason
        assert "OldTimeout" in "\n".join(e.text for e in view.events)
