"""The charts screen (key 8) and its read-only SQL against real PostgreSQL: per-minute
throughput, percentiles, drain estimates; the log is never aggregated by the console."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Sparkline

from pgq_console.core.backend import Backend
from pgq_console.core.charts import CHART_MINUTES, fetch_charts
from pgq_console.core.clock import SystemClock
from pgq_console.screens.charts import ChartsScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for
from tests.screens_support import console, open_screen, run_sql, seed, until

# Everything relative to the server's now(), away from minute boundaries.
CHARTS_SEED = """
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 100000 + g, s.status::pgqueuer_status, 0, s.entrypoint, now() - s.ago
FROM (VALUES
    ('send_email', 'queued', interval '30 seconds', 45),
    ('send_email', 'successful', interval '30 seconds', 40),
    ('send_email', 'queued', interval '90 seconds', 60),
    ('send_email', 'successful', interval '90 seconds', 60),
    ('send_email', 'queued', interval '150 seconds', 50),
    ('send_email', 'successful', interval '150 seconds', 50),
    ('send_email', 'successful', interval '20 minutes 30 seconds', 100),
    ('resize_image', 'successful', interval '30 seconds', 50),
    ('charge_card', 'exception', interval '90 seconds', 3),
    ('charge_card', 'successful', interval '90 seconds', 7)
) AS s(entrypoint, status, ago, n), generate_series(1, s.n) g;
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
SELECT 900000 + g, s.status::pgqueuer_status, 0, 'resize_image', now() - s.ago
FROM generate_series(1, 20) g, (VALUES
    ('picked', interval '100 seconds'), ('successful', interval '99.5 seconds')
) AS s(status, ago);
INSERT INTO pgqueuer (priority, status, entrypoint, execute_after)
SELECT 0, 'queued', 'build_report', now() - interval '10 minutes' FROM generate_series(1, 30);
INSERT INTO pgqueuer (priority, status, entrypoint, execute_after)
SELECT 0, 'queued', 'resize_image', now() - interval '30 seconds' FROM generate_series(1, 20)
"""


@pytest.fixture  # per test: the seed is relative to now(), minute buckets must not drift
def charts_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "charts")
    seed(dsn, CHARTS_SEED)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def test_chart_numbers_equal_the_log(charts_dsn: str) -> None:
    backend = await backend_for(charts_dsn)
    assert isinstance(backend, Backend)
    try:
        charts = await fetch_charts(backend)
    finally:
        await backend.close()
    email = charts.get("send_email")
    assert email is not None and len(email.completed) == CHART_MINUTES
    # Minute slots, oldest first: 30 s ago is the current minute, 90 s the one before...
    assert email.completed[-1] == 40 and email.completed[-2] == 60 and email.completed[-3] == 50
    assert email.completed[-21] == 100 and email.completed_1h == 250
    assert email.enqueued[-1] == 45 and sum(email.enqueued) == 155
    assert email.drain.in_per_min == pytest.approx(155 / 5)
    assert email.drain.out_per_min == pytest.approx(150 / 5)
    assert email.drain.backlog == 0 and email.drain.trend == "steady"

    card = charts.get("charge_card")
    assert card is not None and card.exceptions[-2] == 3 and card.exceptions_1h == 3

    image = charts.get("resize_image")
    assert image is not None
    assert image.p50_s == pytest.approx(0.5) and image.p99_s == pytest.approx(0.5)
    assert image.drain.backlog == 20 and image.drain.trend == "draining"
    # 70 terminal rows in the last 5 minutes: 14/min; 20 waiting empty in 20/14 minutes.
    assert image.drain.empties_in_s == pytest.approx(20 / 14 * 60)
    assert image.drain.crosses_limit_in_s is None

    report = charts.get("build_report")
    assert report is not None and report.drain.trend == "stuck"
    assert report.drain.crosses_limit_in_s == 0  # waiting 10 minutes already

    # Read-only: nothing was aggregated (pgqueuer's throughput_* would have).
    (row,) = await run_sql(charts_dsn, "SELECT count(*) AS n FROM pgqueuer_log WHERE aggregated")
    assert row["n"] == 0


async def _until_charts(pilot: Pilot[Any]) -> None:
    screen = await open_screen(pilot, "8", ChartsScreen)
    await until(pilot, lambda: screen.query_one("#charts-table", LiveTable).row_count == 4)
    # The percentiles are read after the counts are drawn: until they land too.
    await until(pilot, lambda: screen.data is not None and not screen.data.percentiles_pending)
    await pilot.pause()


async def test_charts_screen_shows_rates_drain_and_plots(charts_dsn: str) -> None:
    app = console(charts_dsn, clock=SystemClock())
    async with app.run_test(size=(120, 34)) as pilot:
        await _until_charts(pilot)
        screen = app.screen
        table = screen.query_one("#charts-table", LiveTable)
        assert table.get_cell("build_report", "drain").plain == (
            "nothing completes, oldest over 5m00s"
        )
        assert table.get_cell("resize_image", "drain").plain.startswith("empty in 1m")
        assert table.get_cell("send_email", "done").plain == "250"
        assert table.get_cell("charge_card", "err").plain == "3"
        assert table.get_cell("charge_card", "drain").plain == "no backlog"
        assert table.get_cell("resize_image", "p99").plain == "500ms"
        # The plots follow the cursor; `a` shows all entrypoints.
        table.move_cursor(row=table.get_row_index("send_email"))
        await pilot.pause()
        completed = screen.query_one("#chart-completed", Sparkline)
        await until(pilot, lambda: list(completed.data or [])[-3:] == [50.0, 60.0, 40.0])
        assert "send_email" in str(screen.query_one("#chart-title").render())
        await pilot.press("a")
        await until(
            pilot, lambda: "all entrypoints" in str(screen.query_one("#chart-title").render())
        )
        assert (completed.data or [])[-1] == 40 + 50  # send_email + resize_image this minute


def test_charts_snapshot(snap_compare: Any, charts_dsn: str) -> None:
    assert snap_compare(console(charts_dsn), terminal_size=(100, 30), run_before=_until_charts)


def test_charts_snapshot_80x24(snap_compare: Any, charts_dsn: str) -> None:
    assert snap_compare(console(charts_dsn), terminal_size=(80, 24), run_before=_until_charts)


def test_charts_snapshot_160x48(snap_compare: Any, charts_dsn: str) -> None:
    assert snap_compare(console(charts_dsn), terminal_size=(160, 48), run_before=_until_charts)


async def test_charts_show_the_counts_before_the_percentiles_land(
    charts_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10M log rows the percentiles read takes about 1 s of the charts' 1.6 s: the counts are
    drawn first, the percentile cells marked pending (…) until their read lands."""
    import asyncio

    import pgq_console.core.charts as charts_core
    import pgq_console.screens.charts as charts_screen

    read = charts_core.read_percentiles
    gate = asyncio.Event()

    async def held(backend: Backend) -> Any:
        await gate.wait()
        return await read(backend)

    monkeypatch.setattr(charts_core, "read_percentiles", held)
    app = console(charts_dsn, clock=SystemClock())
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await open_screen(pilot, "8", ChartsScreen)
        table = screen.query_one("#charts-table", LiveTable)
        await until(pilot, lambda: table.row_count > 0)
        assert table.get_cell("send_email", "done").plain == "250"
        assert table.get_cell("resize_image", "p99").plain == charts_screen.PENDING
        gate.set()
        await until(pilot, lambda: table.get_cell("resize_image", "p99").plain == "500ms")


async def test_backlog_counted_up_to_a_cap_and_said_so(charts_dsn: str) -> None:
    """The ready jobs are counted per entrypoint up to a cap (the exact count of 9.8M queued
    took 0.85-1.7 s): reaching it is marked, the drain's times as bounds."""
    from pgq_console.core.charts import DrainEstimate
    from pgq_console.screens.charts import drain_text

    backend = await backend_for(charts_dsn)
    try:
        exact = await fetch_charts(backend)
        capped = await fetch_charts(backend, backlog_cap=2)
    finally:
        await backend.close()
    for series in exact.series:
        drain = capped.get(series.entrypoint)
        assert drain is not None
        assert drain.drain.backlog == min(series.drain.backlog, 2)
        assert drain.drain.backlog_capped == (series.drain.backlog >= 2)
        assert drain.drain.oldest_age_s is not None or series.drain.oldest_age_s is None
    assert any(s.drain.backlog > 2 for s in exact.series)
    assert not any(s.drain.backlog_capped for s in exact.series)
    assert capped.total().drain.backlog_capped
    draining = DrainEstimate(1000, 0.0, 100.0, 10.0, 300.0, backlog_capped=True)
    assert drain_text(draining) == "empty in ≥ 10m00s, oldest > 5m00s in ≤ 4m54s"


async def test_percentiles_read_keeps_to_its_budget(
    charts_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The percentiles read grows with the log's last quarter hour (seconds at 10M rows): re-read
    only as often as its share of a core allows, the counts at every refresh, the last
    percentiles shown in between (never back to pending), and the status line says so."""
    import pgq_console.core.charts as charts_core
    import pgq_console.screens.charts as charts_screen
    from pgq_console.screens.polled import PollLine

    fetch_counts, read = charts_core.fetch_charts, charts_core.read_percentiles

    counts_reads: list[int] = []
    percentile_reads: list[int] = []

    async def counted_counts(backend: Backend, **kwargs: Any) -> Any:
        counts_reads.append(1)
        return await fetch_counts(backend, **kwargs)

    async def counted_percentiles(backend: Backend) -> Any:
        percentile_reads.append(1)
        return await read(backend)

    # The counts alone (percentiles not due) and the counts beside the percentiles.
    monkeypatch.setattr(charts_screen, "fetch_charts", counted_counts)
    monkeypatch.setattr(charts_core, "fetch_charts", counted_counts)
    monkeypatch.setattr(charts_core, "read_percentiles", counted_percentiles)
    monkeypatch.setattr(charts_screen, "PERCENTILES_BUDGET", 1e-9)  # no read fits it
    app = console(charts_dsn, clock=SystemClock())
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_screen(pilot, "8", ChartsScreen)
        table = screen.query_one("#charts-table", LiveTable)
        await until(pilot, lambda: table.row_count > 0 and percentile_reads == [1])
        await until(pilot, lambda: table.get_cell("resize_image", "p99").plain == "500ms")
        for wanted in (2, 3):
            await pilot.press("r")
            await until(pilot, lambda: len(counts_reads) >= wanted)  # noqa: B023 (awaited here)
        await until(pilot, lambda: "percentiles every" in str(screen.query_one(PollLine).render()))
        assert percentile_reads == [1]
        assert table.get_cell("resize_image", "p99").plain == "500ms"  # the last ones, kept
        assert "a read takes" in str(screen.query_one(PollLine).render())


STATISTICS_SEED = (
    "INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint) "
    "SELECT now() - s.ago, s.n, 0, s.status::pgqueuer_status, 'send_email' "
    "FROM (VALUES (interval '20 seconds', 7, 'successful'), (interval '40 seconds', 5, "
    "'successful'), (interval '90 seconds', 4, 'queued'), (interval '30 minutes 30 seconds', 9, "
    "'exception'), (interval '2 hours', 100, 'successful')) AS s(ago, n, status)"
)


async def test_statistics_buckets_and_log_rows_add_up_per_minute(charts_dsn: str) -> None:
    """PgQueuer's aggregated buckets and the log rows not yet aggregated land in the same minute
    slots and rates (the statement groups each table by minute before adding them up)."""
    await run_sql(charts_dsn, STATISTICS_SEED)
    backend = await backend_for(charts_dsn)
    try:
        charts = await fetch_charts(backend, percentiles=False)
    finally:
        await backend.close()
    email = charts.get("send_email")
    assert email is not None
    assert email.completed[-1] == 40 + 7 + 5 and email.completed_1h == 250 + 12
    assert email.enqueued[-2] == 60 + 4 and sum(email.enqueued) == 155 + 4
    assert email.exceptions[-31] == 9 and email.exceptions_1h == 9
    assert email.drain.in_per_min == pytest.approx((155 + 4) / 5)
    assert email.drain.out_per_min == pytest.approx((150 + 12) / 5)


async def test_the_counts_statement_counts_each_backlog_once(charts_dsn: str) -> None:
    """Each entrypoint's ready jobs are counted once (up to the cap) and its oldest ready job
    probed once: the backlog's filter on the count counted them all a second time (half the
    backlog's cost, 20 ms of the Charts key at 200,000 queued)."""
    import json

    from pgq_console.core.charts import BACKLOG_CAP, RATE_WINDOW, charts_sql

    backend = await backend_for(charts_dsn)
    try:
        [row] = await backend.read(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + charts_sql(backend), RATE_WINDOW, BACKLOG_CAP, None
        )
    finally:
        await backend.close()
    plan = row["QUERY PLAN"]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def ready_probes(node: dict[str, Any]) -> int:
        """Executions of scans of the queue table for ready jobs (execute_after <= now())."""
        condition = f"{node.get('Index Cond', '')} {node.get('Filter', '')}"
        own = (
            int(node.get("Actual Loops", 0))
            if node.get("Relation Name") == "pgqueuer" and "execute_after <= now()" in condition
            else 0
        )
        return own + sum(ready_probes(child) for child in node.get("Plans", []))

    # build_report and resize_image have ready jobs: a count and an oldest-job probe each.
    assert ready_probes(plan[0]["Plan"]) == 2 * 2


async def test_the_overview_windows_add_up_statistics_and_log_rows(charts_dsn: str) -> None:
    """The overview's windows (last minute, hour, sparkline) from both tables, grouped by
    minute first as the charts are."""
    from pgq_console.core.stats import fetch_windows

    await run_sql(charts_dsn, STATISTICS_SEED)
    backend = await backend_for(charts_dsn)
    try:
        windows = (await fetch_windows(backend, counts=False)).windows
    finally:
        await backend.close()
    email = windows["send_email"]
    assert (email.completed_1m, email.completed_1h) == (40 + 7 + 5, 250 + 12)
    assert (email.exceptions_1m, email.exceptions_1h) == (0, 9)
    assert email.sparkline[-1] == 52 and email.sparkline[-2] == 60
    assert email.sparkline[-3] == 50 and email.sparkline[-21] == 100
    assert sum(email.sparkline) == 262  # the exception 30.5 minutes ago is past the sparkline
    card = windows["charge_card"]
    assert (card.completed_1h, card.exceptions_1h, card.exceptions_1m) == (7, 3, 0)
