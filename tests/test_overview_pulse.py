"""The overview on a large terminal: headline tiles, the rate chart and the event feed show the
database's real numbers and events; at 80x24 they give way to the table.

Real PostgreSQL: jobs queued, picked by a worker whose heartbeat stopped, held failures with a
traceback whose message carries markup, and an audit NOTIFY another session sends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.core.audit import AUDIT_EVENT_TYPE, audit_channel
from pgq_console.core.clock import FixedClock
from pgq_console.core.pulse import FeedKind, ThroughputSample, chart_columns
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.overview_table import OverviewTable
from pgq_console.widgets.pulse import (
    NOT_MEASURED,
    EventFeedView,
    PulseTile,
    PulseTiles,
    RateChart,
)
from tests.conftest import drop_database, make_database
from tests.helpers import MovingClock, backend_for, wait_until

DEAD_WORKER = "0d0d0d0d-0000-4000-8000-000000000001"
HOSTILE = "card [bold red]declined[/] for job 6213"

SEED = f"""
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'send_email', now() - interval '400 seconds', now() - interval '400 seconds'
    FROM generate_series(1, 12);
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'send_email', now(), now() + interval '1 day' FROM generate_series(1, 5);
INSERT INTO pgqueuer (priority, status, entrypoint, created, queue_manager_id, heartbeat)
SELECT 0, 'picked', 'resize_image', now(), '{DEAD_WORKER}', now() - interval '1 hour'
    FROM generate_series(1, 3);
INSERT INTO pgqueuer (priority, status, entrypoint, created)
SELECT 0, 'failed', 'charge_card', now() FROM generate_series(1, 4);
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, traceback)
SELECT j.id, 'failed', 0, 'charge_card', now() - interval '30 seconds',
    jsonb_build_object('exception_type', 'CardDeclined',
        'exception_message', 'card [bold red]declined[/] for job ' || j.id,
        'traceback', 'Traceback (most recent call last):' || E'\\n'
            || '  File "/app/billing.py", line 12, in charge' || E'\\n'
            || 'CardDeclined: card [bold red]declined[/] for job ' || j.id || E'\\n')
FROM pgqueuer AS j WHERE j.status = 'failed';
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 500000 + g, 'successful', 0, 'send_email', now() - interval '3 seconds'
    FROM generate_series(1, 40) g;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 600000 + g, 'queued', 0, 'send_email', now() - interval '3 seconds'
    FROM generate_series(1, 60) g
"""


@pytest.fixture(scope="module")
def pulse_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "overview_pulse")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in filter(str.strip, SEED.split(";")):
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def overview(app: Any) -> OverviewScreen:
    screen = app.screen
    assert isinstance(screen, OverviewScreen), screen
    return screen


def tile(screen: OverviewScreen, name: str) -> PulseTile:
    return screen.query_one(f"#tile-{name}", PulseTile)


def feed_text(screen: OverviewScreen) -> str:
    view = screen.query_one(EventFeedView)
    return "\n".join(f"{e.kind.value} {e.text}" for e in view.events)


async def test_tiles_chart_and_feed_show_the_database(pulse_dsn: str) -> None:
    backend = await backend_for(pulse_dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: overview(app).snapshot is not None, what="a snapshot")
        screen = overview(app)
        assert screen.roomy
        assert screen.query_one(PulseTiles).display
        await wait_until(
            pilot,
            lambda: tile(screen, "ready").value == "12" and tile(screen, "held").value == "4",
            what="the tiles with the seeded counts",
        )
        assert tile(screen, "picked").value == "3"
        assert "+5 deferred" in str(tile(screen, "ready").border_subtitle)
        assert tile(screen, "held").has_class("-error")
        # The oldest ready job waited 400 s: over 5 minutes, drawn as m:ss and flagged.
        oldest = tile(screen, "oldest").value
        minutes, seconds = oldest.split(":")
        assert int(minutes) * 60 + int(seconds) >= 400
        assert tile(screen, "oldest").has_class("-warning")

        # The chart plots the refreshes' own rates: the log's 60 enqueues and 40 completions
        # 3 seconds ago, over the 10 s rate window.
        chart = screen.query_one(RateChart)
        await wait_until(
            pilot,
            lambda: bool(chart.samples) and chart.samples[-1].rate_in > 0,
            what="a throughput sample with the logged enqueues",
        )
        latest = chart.samples[-1]
        total = screen.snapshot.totals if screen.snapshot else None
        assert total is not None
        assert latest.rate_in == pytest.approx(total.rate_in)
        assert latest.rate_out == pytest.approx(total.rate_out)
        assert latest.errors == pytest.approx(total.exceptions_1m / 60)
        assert latest.errors > 0  # the 4 held failures logged 30 s ago
        rendered = chart.render().plain
        assert "in" in rendered and "err" in rendered and "/s" in rendered

        # The feed: the new failure kind (its markup shown literally) and the dead worker.
        await wait_until(
            pilot,
            lambda: "CardDeclined" in feed_text(screen) and DEAD_WORKER[:8] in feed_text(screen),
            what="the failure kind and the dead worker in the feed",
        )
        text = feed_text(screen)
        assert "card [bold red]declined[/] for job <n>" in text
        assert "(4× in 1h)" in text
        assert f"worker {DEAD_WORKER[:8]} dead" in text
        view = screen.query_one(EventFeedView)
        assert "[bold red]declined[/]" in str(view.render())  # literal, not markup

        # A write announced by another session reaches the feed (unverified: a plain NOTIFY).
        payload = {
            "type": AUDIT_EVENT_TYPE,
            "console": "another",
            "action": "requeue",
            "count": 2,
            "previewed": 2,
            "user": "alice",
            "host": "ops1",
            "reason": "[red]retry[/] after fix",
            "time": datetime.now(UTC).isoformat(),
        }
        connection = await asyncpg.connect(pulse_dsn)
        try:
            await connection.execute(
                "SELECT pg_notify($1, $2)",
                audit_channel(backend.installation.channel),
                json.dumps(payload),
            )
        finally:
            await connection.close()
        await wait_until(
            pilot,
            lambda: any(e.kind is FeedKind.ACTION for e in view.events),
            what="the announced write in the feed",
        )
        action = next(e for e in view.events if e.kind is FeedKind.ACTION)
        assert "requeue, changed 2 of 2 ([red]retry[/] after fix)" in action.text
        assert action.severity == "warning"  # not verified as a console's
        assert "[red]retry[/]" in str(view.render())


async def test_table_keeps_80x24(pulse_dsn: str) -> None:
    backend = await backend_for(pulse_dsn)
    app = PgqConsole(backend, refresh_interval=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: overview(app).snapshot is not None, what="a snapshot")
        screen = overview(app)
        assert not screen.roomy
        for selector in ("#pulse-tiles", "#pulse-lower"):
            assert not screen.query_one(selector).display
        table = screen.query_one(OverviewTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="three entrypoints")
        assert table.region.height >= 4  # header and rows: the table has the room
        # Grown to a large terminal, the extras appear; shrunk again, they go.
        await pilot.resize_terminal(160, 48)
        await wait_until(pilot, lambda: screen.roomy, what="the roomy layout")
        assert screen.query_one("#pulse-tiles").display
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: not screen.roomy, what="the compact layout")


def test_fixed_clock_feed_ages_read_now() -> None:
    """Feed ages under a second read 'now' (a fixed clock shows no '0ms ago')."""
    from pgq_console.widgets.pulse import feed_age

    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert feed_age(at, FixedClock(at).now()) == "now"
    # Coarse past a second, so the ages do not repaint the feed on every paint.
    assert feed_age(at, datetime(2026, 1, 1, 0, 0, 4, 600000, tzinfo=UTC)) == "4s ago"
    assert feed_age(at, datetime(2026, 1, 1, 0, 0, 27, tzinfo=UTC)) == "20s ago"
    assert feed_age(at, datetime(2026, 1, 1, 0, 1, 5, tzinfo=UTC)) == "1m ago"


def sample_at(start: datetime, seconds: float, rate: float = 10.0) -> ThroughputSample:
    return ThroughputSample(start + timedelta(seconds=seconds), rate, rate, 0.0)


def test_chart_columns_tell_a_gap_from_a_zero() -> None:
    """Readings every 2 s for 20 s, none for 2 minutes, then again: the columns of those 2
    minutes are unmeasured; a zero rate stays a value; columns a later reading's 10 s rate
    window reaches into are measured; the time before the first reading is neither."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    samples = [sample_at(start, s) for s in range(0, 21, 2)]
    samples += [sample_at(start, s, rate=0.0) for s in range(140, 161, 2)]
    columns = chart_columns(samples, width=40, slot_s=5.0)
    # The newest (160 s) in column 39: column c spans the ages (39 - c) * 5 .. (40 - c) * 5 s.
    (in_values, _, _) = columns.series
    # 20 s .. 140 s unread, less the 140 s reading's window (130 s .. 140 s: columns 34, 33).
    assert columns.unmeasured == frozenset(range(12, 34))
    assert in_values[34:] == [0.0] * 6  # zeros measured from 130 s on
    assert in_values[7:12] == [10.0] * 5  # the first 20 s
    assert in_values[:7] == [None] * 7  # before the first reading: no history, no gap


async def test_time_off_screen_is_drawn_as_not_measured(pulse_dsn: str) -> None:
    """The overview left for Jobs for two minutes (no reading meanwhile) and opened again: the
    chart shades those minutes as not measured, the legend says so, and draws no zero there."""
    clock = MovingClock(datetime.now(UTC))
    backend = await backend_for(pulse_dsn)
    app = PgqConsole(backend, refresh_interval=0.2, clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: overview(app).roomy, what="the roomy layout")
        screen = overview(app)
        chart = screen.query_one(RateChart)

        def readings(count: int) -> Callable[[], bool]:
            return lambda: len(chart.samples) >= count

        for step in range(1, 4):  # three readings, 5 s of the console's clock apart
            await wait_until(pilot, readings(step), what=f"reading {step}")
            clock.at += timedelta(seconds=5)
        await wait_until(pilot, readings(4), what="reading 4")
        assert not chart.border_subtitle  # nothing missed yet
        await app.run_action("app.switch_mode('jobs')")
        await wait_until(pilot, lambda: app.screen is not screen, what="the jobs screen")
        seen = len(chart.samples)
        clock.at += timedelta(minutes=2)
        await app.run_action("app.switch_mode('overview')")
        await wait_until(pilot, lambda: app.screen is screen, what="the overview again")
        await wait_until(pilot, lambda: len(chart.samples) > seen, what="a reading on return")
        width = chart.size.width - RateChart.LABEL_WIDTH - RateChart.VALUE_WIDTH
        gaps = chart_columns(chart.samples, width, chart.slot_s).unmeasured
        assert len(gaps) >= 20  # 2 minutes less the 10 s rate window, in 5 s columns
        assert "not measured" in str(chart.border_subtitle)
        lines = str(chart.render()).splitlines()
        for line in lines:
            cells = line[RateChart.LABEL_WIDTH : RateChart.LABEL_WIDTH + width]
            assert {cells[c] for c in gaps} == {NOT_MEASURED}, line


def test_the_feed_remembers_a_worker_between_jobs_for_the_bundle() -> None:
    from pgq_console.core.pulse import EventFeed
    from pgq_console.core.workers import WorkerRow, WorkersSnapshot

    at = datetime(2026, 1, 1, tzinfo=UTC)
    worker = WorkerRow("w-1", ("export",), 2, 0, at, at)

    def read(*workers: WorkerRow) -> WorkersSnapshot:
        return WorkersSnapshot(at, timedelta(seconds=90), workers, (), 0)

    feed = EventFeed()
    feed.note_workers(read(worker), at)
    feed.note_workers(read(), at + timedelta(seconds=15))  # between jobs: holds none
    (seen,) = feed.workers_seen()
    assert seen.queue_manager_id == "w-1" and seen.idle and seen.last_seen == at


def test_many_workers_changing_at_once_are_one_event() -> None:
    """A lost host or a deploy: 8 workers dead in one reading are one event saying how many
    (the feed keeps 50 events: one each would push every failure kind out); two are two."""
    from pgq_console.core.pulse import EventFeed
    from pgq_console.core.workers import WorkerRow, WorkersSnapshot

    at = datetime(2026, 1, 1, tzinfo=UTC)
    old = at - timedelta(minutes=10)  # no heartbeat for 10 minutes: dead

    def dead(n: int, entrypoint: str) -> list[WorkerRow]:
        return [WorkerRow(f"{i:04d}{entrypoint}", (entrypoint,), 1, 1, old, old) for i in range(n)]

    def read(*workers: WorkerRow, holding: int | None = None) -> WorkersSnapshot:
        total = len(workers) if holding is None else holding
        return WorkersSnapshot(at, timedelta(seconds=90), workers, (), 0, holding_total=total)

    feed = EventFeed()
    feed.note_workers(read(*dead(5, "export"), *dead(3, "email"), holding=300), at)
    (event,) = feed.events
    assert event.text == "8+ workers dead: no heartbeat (email, export)"
    assert event.severity == "error"

    few = EventFeed()
    few.note_workers(read(*dead(2, "export")), at)
    assert {e.text for e in few.events} == {
        "worker 0000expo dead: no heartbeat (export)",
        "worker 0001expo dead: no heartbeat (export)",
    }
