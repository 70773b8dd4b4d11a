"""A filter word that parses to nothing never widens a bulk write.

Pilot tests on the Jobs and Failures screens, and the filter language's strictness.
"""

from __future__ import annotations

import pytest
from textual.widgets import Static

from pgq_console.core.errors import ConsoleError
from pgq_console.core.jobs import parse_filter
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.failures import FailuresScreen
from pgq_console.screens.jobs import JobsScreen
from tests.helpers import wait_until
from tests.jobs_seed import seed
from tests.test_jobs_screens import console, open_jobs, statuses, table


@pytest.fixture
async def seeded(database_dsn: str) -> str:
    await seed(database_dsn)
    return database_dsn


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ep:", "ep: needs"),
        ("ep:,", "ep: needs at least one name"),
        ("ep:,,,", "ep: needs at least one name"),
        ("ep:a,,b", "ep: empty item"),
        ("ep:a,", "ep: empty item"),
        ("status:,", "status: needs at least one status"),
        ("ep:, status:failed", "ep: needs at least one name"),
        ("status:failed ep:,", "ep: needs at least one name"),
        ("!ep:,", "ep: needs at least one name"),
        ("id:,", "id: needs at least one number"),
        ("prio:1,,2", "prio: empty item"),
        ("!", "`!` must precede"),
        (":x", "unknown filter"),
    ],
)
def test_a_word_that_parses_to_nothing_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ConsoleError) as caught:
        parse_filter(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_broken_filter_word_disables_bulk_cancel(seeded: str) -> None:
    """`/ ep:, Enter` then `C` must not offer to cancel anything (it offered every live job)."""
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        before = await statuses(seeded)
        await pilot.press("slash", *"ep:,", "enter")
        await pilot.pause()
        await pilot.press("escape")  # back to the table, whichever had the focus
        await pilot.pause()
        await pilot.press("C")
        await pilot.pause()
        for _ in range(5):
            await pilot.pause(0.05)
        assert not isinstance(app.screen, ActionConfirmScreen), "C offered to cancel jobs"
        assert isinstance(app.screen, JobsScreen)
        banner = str(app.screen.query_one("#jobs-error").render())
        assert "ep: needs at least one name" in banner and "bulk actions are off" in banner
        assert any("bulk actions are off" in n.message for n in app._notifications)
        # `R` (requeue all) is refused the same way; nothing was written.
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ActionConfirmScreen)
        assert await statuses(seeded) == before
        # A filter that parses again turns them back on, scoped to what the list shows.
        await pilot.press("slash", "ctrl+u", *"ep:charge_card", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 3, what="charge_card rows")
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert modal.preview.count == 0  # type: ignore[attr-defined]  # all three are held
        await pilot.press("escape")


async def test_list_that_failed_to_read_disables_bulk_actions(seeded: str) -> None:
    """A filter that parses but whose list read fails (a NUL in a text value) refuses `C`."""
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        screen.set_filter(parse_filter("payload:a\x00b"))
        await wait_until(pilot, lambda: screen.error is not None, what="read error")
        await pilot.press("C")
        await pilot.pause()
        for _ in range(5):
            await pilot.pause(0.05)
        assert not isinstance(app.screen, ActionConfirmScreen), "C offered a write"
        banner = str(screen.query_one("#jobs-error").render())
        assert "bulk actions are off" in banner


async def test_failures_read_error_disables_requeue_all(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        screen = app.screen
        await wait_until(pilot, lambda: table(app, "#held-table").row_count == 4)
        # The next read fails: the log table is gone for this role.
        import asyncpg

        connection = await asyncpg.connect(seeded)
        try:
            await connection.execute("ALTER TABLE pgqueuer_log RENAME TO pgqueuer_log_gone")
            screen.request_refresh()  # type: ignore[attr-defined]
            await wait_until(
                pilot,
                lambda: (
                    "bulk actions are off"
                    in str(screen.query_one("#failures-error", Static).render())
                ),
                what="failures banner",
            )
            await pilot.press("R")
            await pilot.pause()
            for _ in range(5):
                await pilot.pause(0.05)
            assert not isinstance(app.screen, ActionConfirmScreen), "R offered a write"
        finally:
            await connection.execute("ALTER TABLE pgqueuer_log_gone RENAME TO pgqueuer_log")
            await connection.close()


async def test_group_requeue_touches_only_the_held_jobs_the_group_counts(seeded: str) -> None:
    """A held job whose same failure was logged before the 24 h window is not in the group's
    `held` count, so requeueing the group must not touch it either."""
    import json

    import asyncpg

    from pgq_console.screens.failures import GroupTable
    from tests.jobs_seed import FIXED_NOW

    connection = await asyncpg.connect(seeded)
    try:
        [old] = await connection.fetch(
            "INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated, "
            "heartbeat, execute_after) VALUES (0, 'failed', 'charge_card', 'x', $1, $1, $1, $1) "
            "RETURNING id",
            FIXED_NOW.replace(day=1, month=1, year=2025),
        )
        await connection.execute(
            "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, traceback) "
            "VALUES ($1, 'failed', 0, 'charge_card', $2, $3::jsonb)",
            old["id"],
            FIXED_NOW.replace(day=1, month=1, year=2025),
            json.dumps({"exception_type": "ValueError", "exception_message": "card declined"}),
        )
    finally:
        await connection.close()
    app = console(seeded)
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        groups = app.screen.query_one(GroupTable)
        await wait_until(pilot, lambda: groups.row_count == 3)
        key = next(k for k, g in groups.groups.items() if g.exception_type == "ValueError")
        assert groups.groups[key].held == 3
        await pilot.press("tab")
        groups.move_cursor(row=groups.get_row_index(key))
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert modal.preview.count == 3  # type: ignore[attr-defined]
        assert int(old["id"]) not in modal.preview.ids  # type: ignore[attr-defined]
        await pilot.press("escape")
