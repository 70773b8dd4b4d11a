"""The index PgQueuer does not have (held failures): previewed with its plan, created
CONCURRENTLY as a guarded, audited action on the Database screen, the plan shown after."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Static

from pgq_console.core import actions, audit, indexes
from pgq_console.core.backend import Backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.health import fetch_health
from pgq_console.core.indexes import INDEX_BUILDS, HeldIndexAction, fetch_held_index
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.health import HealthScreen
from tests.helpers import backend_for, enqueue
from tests.screens_support import console, open_screen, run_sql, until


async def _backend(dsn: str) -> Backend:
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    return backend


async def test_previewed_with_the_plan_created_and_audited(fresh_database: str) -> None:
    dsn = fresh_database
    ids = await enqueue(dsn, "a", 3)
    await run_sql(dsn, "UPDATE pgqueuer SET status = 'failed' WHERE id = $1", ids[0])
    backend = await _backend(dsn)
    try:
        before = await fetch_held_index(backend)
        assert not before.exists and before.plan and "Seq Scan" in " ".join(before.plan)
        action = HeldIndexAction()
        preview = await action.preview(backend)
        assert preview.count == 1
        assert preview.statement.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS")
        assert "WHERE status = 'failed'" in preview.statement
        assert [row[0] for row in preview.sample] == list(before.plan)  # the plan before
        result = await actions.execute(backend, action, preview, reason="10M rows")
        assert result.changed == 1
        await INDEX_BUILDS["pgqueuer_held_ep_id_idx"]  # built aside, after the commit
        after = await fetch_held_index(backend)
        assert after.usable and after.plan
        [record] = audit.read_records()
        assert record["action"] == "held-index" and record["reason"] == "10M rows"
        # An index, not jobs: no ids (it used to say job_ids [1]), the index and its table.
        assert record["job_ids"] == [] and record["schedule_ids"] == []
        assert record["index"] == "pgqueuer_held_ep_id_idx" and record["table"] == "pgqueuer"
        assert record["count"] == 1 and record["previewed"] == 1
        assert result.ids == ()
        # PgQueuer's own upgrade plan does not want to drop it.
        assert (await fetch_health(backend)).schema.pending == ()
        # With the index, nothing is left to do; the preview says so.
        again = await HeldIndexAction().preview(backend)
        assert again.count == 0 and "exists already" in again.nothing_to_do
        with pytest.raises(Exception, match="nothing to do"):
            await actions.execute(backend, HeldIndexAction(), again)
    finally:
        await backend.close()


async def test_an_invalid_index_is_dropped_first(fresh_database: str) -> None:
    dsn = fresh_database
    await run_sql(
        dsn,
        "CREATE INDEX pgqueuer_held_ep_id_idx ON pgqueuer (entrypoint, id) WHERE status = 'failed'",
    )
    await run_sql(
        dsn,
        "UPDATE pg_index SET indisvalid = false "
        "WHERE indexrelid = 'pgqueuer_held_ep_id_idx'::regclass",
    )
    backend = await _backend(dsn)
    try:
        action = HeldIndexAction()
        preview = await action.preview(backend)
        assert preview.count == 1 and "INVALID" in preview.notes[0]
        assert preview.statement.startswith("DROP INDEX CONCURRENTLY IF EXISTS")
        await actions.execute(backend, action, preview)
        await INDEX_BUILDS["pgqueuer_held_ep_id_idx"]
        assert (await fetch_held_index(backend)).usable
    finally:
        await backend.close()


async def test_the_database_screen_offers_it(fresh_database: str) -> None:
    dsn = fresh_database
    app = console(dsn, clock=SystemClock())
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return str(screen.query_one("#health-held-index").render())

        await until(pilot, lambda: "no index" in line())
        assert "f: review and create" in line() and "plan: " in line()
        await pilot.press("f")
        await _confirm(pilot)
        screen.action_refresh_now()
        await until(pilot, lambda: "indexed (pgqueuer_held_ep_id_idx)" in line(), within=20)


async def _confirm(pilot: Pilot[Any]) -> None:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
    dialog = app.screen
    await until(pilot, lambda: dialog.preview is not None, within=30)  # type: ignore[attr-defined]
    assert dialog.preview.count == 1  # type: ignore[attr-defined]
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, HealthScreen), within=60)


async def test_at_80x24_the_statement_and_the_plan_scroll_into_view(fresh_database: str) -> None:
    """The dialog's preview scrolls (page keys, from the reason field that has the focus)
    while Apply stays on screen: the plan and the CREATE INDEX statement are reachable. The
    statement is labelled as what it is: no ids are bound to it."""
    app = console(fresh_database, clock=SystemClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)
        await until(
            pilot, lambda: "no index" in str(screen.query_one("#health-held-index").render())
        )
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        dialog = app.screen
        assert isinstance(dialog, ActionConfirmScreen)
        await until(pilot, lambda: dialog.preview is not None, within=30)
        statement = dialog.query_one("#confirm-statement", Static)
        text = str(statement.render())
        assert text.startswith("statement:\nCREATE INDEX CONCURRENTLY IF NOT EXISTS"), text
        assert "$1" not in text and "previewed ids" not in text
        apply = dialog.query_one("#confirm-apply", Button)

        def shown(widget: Widget) -> bool:
            """Whether `widget` is what the terminal shows at its own top-left and bottom-left
            (not clipped away below the dialog, nor under another widget)."""
            region = widget.region
            return app.screen.region.contains_region(region) and all(
                app.screen.get_widget_at(region.x, y)[0] is widget
                for y in (region.y, region.bottom - 1)
            )

        assert shown(apply)
        assert app.focused is dialog.query_one("#confirm-reason")
        for _ in range(6):  # a page at a time, as far as the dialog is long
            if shown(statement):
                break
            await pilot.press("pagedown")
            await pilot.pause()
        assert shown(statement), statement.region
        assert shown(apply)  # still there, still where the operator expects it
        # The plan's lines scrolled past on the way: they were reachable too.
        plan = str(dialog.query_one("#confirm-plan", Static).render())
        assert len(plan.splitlines()) >= 3 and "Seq Scan on pgqueuer" in plan, plan
        await pilot.press("pageup", "pageup", "pageup", "pageup", "pageup", "pageup")
        await pilot.pause()
        assert shown(dialog.query_one("#confirm-count", Static))  # back at the top


async def test_the_line_says_indexed_when_the_build_ends_not_at_the_next_poll(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build goes on after the dialog closed; when it ends the screen reads again at once
    (here: the screen polls once an hour, and the build waits until a read after the dialog
    has shown the index missing)."""
    monkeypatch.setattr(HealthScreen, "interval_s", 3600.0)
    gate = asyncio.Event()
    real_build = indexes._build

    async def gated_build(*args: Any) -> None:
        await gate.wait()
        await real_build(*args)

    monkeypatch.setattr(indexes, "_build", gated_build)
    app = console(fresh_database, clock=SystemClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return " ".join(str(screen.query_one("#health-held-index").render()).split())

        await until(pilot, lambda: "no index" in line())
        polls = screen.poll_status.polls  # it does not poll while the dialog covers it
        await pilot.press("f")
        await _confirm(pilot)
        await until(pilot, lambda: screen.poll_status.polls > polls)  # the read after the dialog
        assert "no index" in line()  # the build has not ended
        gate.set()
        await until(pilot, lambda: "indexed (pgqueuer_held_ep_id_idx)" in line(), within=30)
        build = INDEX_BUILDS["pgqueuer_held_ep_id_idx"]
        assert build.done() and build.exception() is None


def test_a_long_plan_says_how_many_lines_it_leaves_out() -> None:
    """The preview shows the first plan lines (the scan of the table first) and counts the
    rest, rather than ending mid-plan as if that were all of it."""
    from pgq_console.core.indexes import PLAN_LINES_SHOWN, plan_sample

    plan = tuple(f"node {n}" for n in range(PLAN_LINES_SHOWN + 3))
    sample = plan_sample(plan)
    assert [row[0] for row in sample[:-1]] == list(plan[:PLAN_LINES_SHOWN])
    assert sample[-1] == ("… 3 more plan lines",)
    assert plan_sample(plan[:2]) == (("node 0",), ("node 1",))
