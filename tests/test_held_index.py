"""The index PgQueuer does not have (held failures): previewed with its plan, created
CONCURRENTLY as a guarded, audited action on the Database screen, the plan shown after."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from pgq_console.core import actions, audit
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
