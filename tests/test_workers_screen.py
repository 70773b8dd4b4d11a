"""The workers screen (key 4): workers, dead ones flagged, stale jobs grouped, guarded reclaim."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from pgq_console.core import actions
from pgq_console.core.actions import ids_predicate
from pgq_console.core.backend import READ_ONLY_REFUSAL
from pgq_console.core.clock import SystemClock
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.workers import WorkersScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.screens_support import FIXED_NOW, console, open_screen, run_sql, seed, until

DEAD = "dead0000-0000-4000-8000-000000000001"
ALIVE = "a11ce000-0000-4000-8000-000000000002"

# Relative to $1: the FixedClock's now (snapshot) or the server's now() (behaviour tests).
WORKERS_SEED = f"""
INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat)
SELECT 0, 'picked', 'legacy_export', '{DEAD}', $1::timestamptz - interval '7 minutes'
FROM generate_series(1, 3);
INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat)
SELECT 5, 'picked', 'send_email', '{ALIVE}', $1::timestamptz - interval '2 seconds'
FROM generate_series(1, 2);
INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat)
VALUES (0, 'picked', 'resize_image', '{ALIVE}', $1::timestamptz - interval '4 seconds');
INSERT INTO pgqueuer (priority, status, entrypoint) SELECT 0, 'queued', 'send_email'
FROM generate_series(1, 4)
"""


@pytest.fixture(scope="module")
def snapshot_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "workers_snap")
    seed(dsn, WORKERS_SEED, FIXED_NOW)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def _until_workers(pilot: Pilot[Any]) -> None:
    screen = await open_screen(pilot, "4", WorkersScreen)
    await until(pilot, lambda: screen.query_one("#stale-table", LiveTable).row_count == 3)
    await pilot.pause()


def test_workers_snapshot(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(100, 24), run_before=_until_workers)


def test_workers_snapshot_80x24(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(80, 24), run_before=_until_workers)


async def test_dead_worker_flagged_and_reclaimed_through_the_confirm_dialog(
    fresh_database: str,
) -> None:
    dsn = fresh_database
    (now_row,) = await run_sql(dsn, "SELECT now() AS now")
    for statement in filter(str.strip, WORKERS_SEED.split(";")):
        if "$1" in statement:
            await run_sql(dsn, statement, now_row["now"])
        else:
            await run_sql(dsn, statement)
    app = console(dsn, clock=SystemClock())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "4", WorkersScreen)
        workers = screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: workers.row_count == 2)
        assert workers.get_cell(DEAD, "state").plain == "DEAD"
        assert workers.get_cell(DEAD, "picked").plain == "3"
        assert workers.get_cell(DEAD, "stale").plain == "3"
        assert workers.get_cell(DEAD, "entrypoints").plain == "legacy_export"
        assert workers.get_cell(ALIVE, "state").plain == "busy"
        assert workers.get_cell(ALIVE, "entrypoints").plain == "resize_image, send_email"
        stale = screen.query_one("#stale-table", LiveTable)
        assert stale.row_count == 3
        workers_of_stale = {stale.get_cell(str(key), "worker").plain for key in _keys(stale)}
        assert workers_of_stale == {"dead0000"}

        # Reclaim acts on the worker under the cursor.
        workers.move_cursor(row=workers.get_row_index(DEAD))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        assert isinstance(dialog, ActionConfirmScreen)
        await until(pilot, lambda: dialog.preview is not None)
        assert dialog.preview is not None and dialog.preview.count == 3
        await pilot.press("enter")  # Apply has the focus once the preview is shown
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        rows = await run_sql(
            dsn,
            "SELECT status::text AS s, count(*) AS n FROM pgqueuer"
            " WHERE entrypoint = $1 GROUP BY 1",
            "legacy_export",
        )
        assert {(r["s"], r["n"]) for r in rows} == {("queued", 3)}
        await until(
            pilot, lambda: any("previewed 3, changed 3" in n.message for n in app._notifications)
        )
        # The screen refreshes after the action: the dead worker holds nothing any more, and
        # stays dead (its jobs were taken from it; it did not finish them).
        await until(pilot, lambda: stale.row_count == 0)
        await until(pilot, lambda: workers.get_cell(DEAD, "picked").plain == "0")
        assert workers.get_cell(DEAD, "state").plain == "DEAD"

        # Keys keep working: the threshold cycles, the footer says so.
        await pilot.press("t")
        assert screen.stale_after.total_seconds() == 300


def _keys(table: LiveTable) -> list[object]:
    return list(table.row_keys)


async def test_read_only_hides_and_refuses_reclaim(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = fresh_database
    (now_row,) = await run_sql(dsn, "SELECT now() AS now")
    statement = WORKERS_SEED.split(";")[0]
    await run_sql(dsn, statement, now_row["now"])
    app = console(dsn, clock=SystemClock(), read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "4", WorkersScreen)
        await until(pilot, lambda: screen.query_one("#stale-table", LiveTable).row_count == 3)
        assert screen.check_action("reclaim", ()) is False
        await pilot.press("R")
        await pilot.pause(0.3)
        assert isinstance(app.screen, WorkersScreen)
        # Asked anyway (a key remapped, a palette command): refused in the backend's words.
        warnings: list[str] = []
        monkeypatch.setattr(screen, "notify", lambda message, **_: warnings.append(message))
        screen.confirm_action(actions.requeue(screen.backend, ids_predicate([1])))
        await pilot.pause()
        assert warnings == [READ_ONLY_REFUSAL]
        assert isinstance(app.screen, WorkersScreen)
    (picked,) = await run_sql(
        dsn, "SELECT count(*) AS n FROM pgqueuer WHERE status = $1::pgqueuer_status", "picked"
    )
    assert picked["n"] == 3


def test_workers_snapshot_160x48(snap_compare: Any, snapshot_dsn: str) -> None:
    assert snap_compare(console(snapshot_dsn), terminal_size=(160, 48), run_before=_until_workers)


# More workers than one read lists: every picked job with its own queue manager (as the 10M
# scale bench has it: 100,000 workers took seconds to send and draw). 210 dead, 20 beating.
MANY_WORKERS_SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat)
SELECT 0, 'picked', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, gen_random_uuid(),
    CASE WHEN g <= 210 THEN $1::timestamptz - interval '7 minutes' ELSE $1::timestamptz END
FROM generate_series(1, 230) AS g
"""


async def test_workers_read_lists_at_most_its_limit_dead_first_with_exact_totals(
    fresh_database: str,
) -> None:
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind, Installation
    from pgq_console.core.workers import fetch_workers

    dsn = fresh_database
    (now_row,) = await run_sql(dsn, "SELECT now() AS now")
    await run_sql(dsn, MANY_WORKERS_SEED, now_row["now"])
    backend = await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "test", ())
    try:
        capped = await fetch_workers(backend, limit=50)
        every = await fetch_workers(backend, limit=None)
    finally:
        await backend.close()
    assert len(capped.workers) == 50 and capped.truncated
    assert (capped.holding_total, capped.dead_total) == (230, 210)
    assert all(w.stale == 1 for w in capped.workers)  # dead first: all 50 listed are dead
    ids = [w.queue_manager_id for w in capped.workers]
    assert ids == sorted(ids)
    assert len(every.workers) == 230 and not every.truncated
    assert {w.entrypoints for w in every.workers} == {("a",), ("b",)}
    assert capped.stale_total == every.stale_total == 210


async def test_workers_screen_lists_the_first_200_and_counts_them_all(
    fresh_database: str,
) -> None:
    dsn = fresh_database
    (now_row,) = await run_sql(dsn, "SELECT now() AS now")
    await run_sql(dsn, MANY_WORKERS_SEED, now_row["now"])
    app = console(dsn, clock=SystemClock())
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_screen(pilot, "4", WorkersScreen)
        workers = screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: workers.row_count > 0)
        assert workers.row_count == 200  # core.workers.WORKER_LIMIT
        assert {workers.get_cell(str(k), "state").plain for k in _keys(workers)} == {"DEAD"}
        summary = str(screen.query_one("#workers-summary").render())
        assert "20 busy" in summary and "210 dead" in summary
        assert "first 200 of 230 workers listed" in summary
        # A second read: the workers past the limit are not taken for idle ones.
        screen.action_refresh_now()
        await pilot.pause(0.5)
        assert workers.row_count == 200
        assert "first 200 of 230 workers listed" in str(
            screen.query_one("#workers-summary").render()
        )


async def test_a_screen_whose_reads_cost_too_much_polls_less_often_and_says_so(
    snapshot_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a big installation the Workers read takes seconds (every picked job): a screen left
    open keeps its reads within a share of a core, and its status line says it is slowed."""
    import pgq_console.screens.polled as polled

    monkeypatch.setattr(polled, "POLLED_SCREEN_BUDGET", 1e-6)  # no read fits it
    app = console(snapshot_dsn, clock=SystemClock())
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "4", WorkersScreen)
        await until(pilot, lambda: screen.query_one("#workers-table", LiveTable).row_count > 0)
        line = screen.query_one(polled.PollLine)
        await until(pilot, lambda: "(slowed: reads cost)" in str(line.render()))
        assert screen.loop.status.slowed_to_s is not None
        assert screen.loop.status.slowed_to_s > screen.interval_s
        polls = screen.loop.status.polls
        screen.action_refresh_now()  # asked for: read at once all the same
        await until(pilot, lambda: screen.loop.status.polls > polls)
