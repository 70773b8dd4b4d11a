"""Jobs, Failures and Job detail screens with Pilot, against real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from textual import events
from textual.widgets import Input, Static

from pgq_console.app import PgqConsole
from pgq_console.core import audit
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import FixedClock
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.failures import FailuresScreen, GroupTable
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.widgets.job_table import JobTable
from tests.helpers import wait_until
from tests.jobs_seed import EVIL_ENTRYPOINT, FIXED_NOW, LABEL, seed


@pytest.fixture
async def seeded(database_dsn: str) -> str:
    await seed(database_dsn)
    return database_dsn


def console(dsn: str, *, read_only: bool = False) -> PgqConsole:
    async def open_() -> Backend:
        return await open_backend(
            DriverKind.ASYNCPG_POOL, dsn, Installation(), LABEL, (), read_only=read_only
        )

    app = PgqConsole(open_, clock=FixedClock(FIXED_NOW), read_only=read_only, listen=False)
    app.animation_level = "none"
    return app


def table(app: PgqConsole, selector: str = "JobTable") -> JobTable:
    return app.screen.query_one(selector, JobTable)


def ids_shown(app: PgqConsole, selector: str = "JobTable") -> list[int]:
    t = table(app, selector)
    return [int(key) for key in t.row_keys]


async def statuses(dsn: str) -> dict[int, str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, status::text FROM pgqueuer")
        return {int(r["id"]): str(r["status"]) for r in rows}
    finally:
        await connection.close()


async def open_jobs_screen(pilot: Any) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
    await pilot.press("2")
    await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))


async def open_jobs(pilot: Any) -> None:
    """The Jobs screen of the `seeded` database, its 36 jobs shown."""
    await open_jobs_screen(pilot)
    await wait_until(pilot, lambda: table(pilot.app).row_count == 36, what="36 jobs")


async def test_jobs_screen_lists_newest_first_and_filters(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        assert ids_shown(app)[:3] == [36, 35, 34]
        assert table(app).get_cell("35", "entrypoint").plain == EVIL_ENTRYPOINT  # literal
        await pilot.press("slash")
        await pilot.press(*"ep:charge_card status:failed", "enter")
        await wait_until(pilot, lambda: ids_shown(app) == [33, 32, 31], what="filtered")
        header = str(app.screen.query_one("#jobs-header", Static).render())
        assert "ep:charge_card status:failed" in header
        # A bad filter: one clear line, the list and the typed text stay.
        await pilot.press("slash", "ctrl+u", *"prio:abc", "enter")
        await pilot.pause()
        assert any("prio: expects a number" in n.message for n in app._notifications)
        assert ids_shown(app) == [33, 32, 31]
        await pilot.press("ctrl+u", *"!ep:send_email prio:>0", "enter")
        await wait_until(pilot, lambda: ids_shown(app) == [36, 35, 34], what="negated")
        await pilot.press("o")  # oldest first
        await wait_until(pilot, lambda: ids_shown(app) == [34, 35, 36], what="order")


async def test_payload_search_is_explicit(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        await pilot.press("slash", *"payload:user7@", "enter")
        await wait_until(pilot, lambda: ids_shown(app) == [7], what="payload hit")
        assert "content search" in str(app.screen.query_one("#jobs-header", Static).render())


async def test_enter_opens_detail_with_hostile_text_shown_literally(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 60)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(35))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.detail is not None)  # type: ignore[attr-defined]
        await pilot.pause()
        text = "\n".join(
            str(w.render()) for w in screen.query(Static) if isinstance(w.render(), object)
        )
        assert "[bold]evil[/]" in text and "[@click=app.quit]x[/]" in text
        assert "\\x1b]52;c;SGVsbG8=\\x07" in text and "\x1b" not in text
        assert "[bold]hdr[/]" in text and "[red]key[/]" in text  # headers, dedupe key
        assert "[bold]Evil[/]Error" in text  # the traceback in the history
        assert "\\x1b]0;title\\x07" in text
        assert "2026-01-01 12:00:00+00:00" in text
        await pilot.press("t")  # local time: still renders
        await pilot.press("y")
        assert app.clipboard == "35"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert app.is_running  # no markup action ran


async def test_binary_payload_with_nul_is_a_hex_dump(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 50)) as pilot:
        await open_jobs(pilot)
        app.push_screen(JobDetailScreen(app.backend, app.clock, 36))  # type: ignore[arg-type]
        await wait_until(pilot, lambda: app.screen.detail is not None)  # type: ignore[attr-defined]
        await pilot.pause()
        payload = str(app.screen.query_one("#detail-payload", Static).render())
        assert "[hex, 13 bytes]" in payload
        assert "00000000  00 ff fe 5b 62 6f 6c 64 5d 1b 5b 32 4a" in payload
        assert "...[bold].[2J" in payload and "\x1b" not in payload


async def test_failures_screen_groups_and_requeues_a_group_with_audit(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        await wait_until(pilot, lambda: table(app, "#held-table").row_count == 4)
        groups = app.screen.query_one(GroupTable)
        await wait_until(pilot, lambda: groups.row_count == 3)
        counts = {g.exception_type: (g.count, g.held) for g in groups.groups.values()}
        assert counts == {
            "ValueError": (3, 3),
            "TimeoutError": (5, 0),
            "[bold]Evil[/]Error": (1, 1),
        }
        # Requeue the ValueError group from the groups table.
        await pilot.press("tab")
        key = next(k for k, g in groups.groups.items() if g.exception_type == "ValueError")
        groups.move_cursor(row=groups.get_row_index(key))
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert modal.preview.count == 3  # type: ignore[attr-defined]
        assert "previewing" not in str(modal.query_one("#confirm-count", Static).render()).lower()
        modal.query_one("#confirm-reason").focus()
        await pilot.press(*"card fix deployed", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        await wait_until(  # the write's report may land after the modal closed
            pilot, lambda: any("previewed 3, changed 3" in n.message for n in app._notifications)
        )
        state = await statuses(seeded)
        assert [state[i] for i in (31, 32, 33, 35)] == ["queued", "queued", "queued", "failed"]
        [record] = audit.read_records()
        assert record["reason"] == "card fix deployed" and record["job_ids"] == [31, 32, 33]
        await wait_until(pilot, lambda: table(app, "#held-table").row_count == 1)


async def test_mark_and_cancel_from_the_jobs_screen(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(30))
        await pilot.press("space", "j", "space")  # marks 30 and 29
        assert table(app).marked == {30, 29}
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        sample = modal.query_one("#confirm-sample")
        assert sample.row_count == 2  # type: ignore[attr-defined]
        assert "DELETE FROM pgqueuer" in str(modal.query_one("#confirm-statement", Static).render())
        await pilot.press("escape")  # cancelling the dialog changes nothing
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert {29, 30} <= set(await statuses(seeded))
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        await pilot.press("enter")  # Apply has the focus
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert not {29, 30} & set(await statuses(seeded))
        await wait_until(pilot, lambda: 30 not in ids_shown(app), what="row removed")


async def test_more_than_100_needs_the_typed_count_in_the_dialog(seeded: str) -> None:
    connection = await asyncpg.connect(seeded)
    await connection.execute(
        "INSERT INTO pgqueuer (priority, status, entrypoint) "
        "SELECT 0, 'queued', 'bulk' FROM generate_series(1, 150)"
    )
    await connection.close()
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("slash", *"ep:bulk", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 100)
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        await pilot.press(*"149", "enter")
        await pilot.pause()
        assert "type 150 to confirm" in str(modal.query_one("#confirm-error", Static).render())
        assert isinstance(app.screen, ActionConfirmScreen)
        await pilot.press("ctrl+u", *"150", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert "bulk" not in {str(v) for v in (await _entrypoints(seeded))}


async def _entrypoints(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        return {r["entrypoint"] for r in await connection.fetch("SELECT entrypoint FROM pgqueuer")}
    finally:
        await connection.close()


async def test_palette_lists_the_screen_actions(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        titles = [t for t, _, _ in app.screen.palette_commands()]  # type: ignore[attr-defined]
        assert "Requeue marked jobs" in titles and "Cancel all matching" in titles
        assert "Enqueue a copy" in titles and "Copy job id" in titles


async def test_palette_shows_one_hit_per_action(seeded: str) -> None:
    """Searching "requeue" on the Jobs screen: requeue and requeue-all, once each (one
    provider over one registry; a screen's palette command and its key count once)."""
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        titles: list[str] = []
        for source in [*app.COMMANDS, *app.screen.COMMANDS]:  # every provider the palette runs
            provider_type = source if isinstance(source, type) else source()
            provider = provider_type(app.screen)
            titles += [str(hit.text) async for hit in provider.search("requeue")]
        assert len(titles) == 2, titles
        assert sum(":requeue-all" in title for title in titles) == 1
        assert sum(title.endswith(":requeue") for title in titles) == 1


async def jobs_of_250(database_dsn: str) -> None:
    """Exactly 250 queued jobs, ids 1 to 250: two full pages and a half."""
    connection = await asyncpg.connect(database_dsn)
    await connection.execute("TRUNCATE pgqueuer RESTART IDENTITY")
    await connection.execute(
        "INSERT INTO pgqueuer (priority, status, entrypoint) "
        "SELECT 0, 'queued', 'many' FROM generate_series(1, 250)"
    )
    await connection.close()


async def test_scrolling_loads_the_next_keyset_page(database_dsn: str) -> None:
    await jobs_of_250(database_dsn)
    app = console(database_dsn)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs_screen(pilot)
        await wait_until(pilot, lambda: table(app).row_count == 100)
        await pilot.press("G")
        await wait_until(pilot, lambda: table(app).row_count == 200, what="page 2")
        await pilot.press("G")
        await wait_until(pilot, lambda: table(app).row_count == 250, what="page 3")
        assert ids_shown(app)[-1] == 1


async def test_a_refresh_read_before_the_next_page_does_not_take_that_page_away(
    database_dsn: str,
) -> None:
    # A refresh read covers the rows shown when it began; arriving after the next page was
    # appended, it would put the table back at one page with the cursor at its end, and no
    # further page would ever load (seen on a busy CI machine).
    await jobs_of_250(database_dsn)
    app = console(database_dsn)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs_screen(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await wait_until(pilot, lambda: table(app).row_count == 100)
        stale = await screen._read(append=False)  # begun with one page shown
        assert len(stale.page.rows) == 100
        await pilot.press("G")
        await wait_until(pilot, lambda: table(app).row_count == 200, what="page 2")
        screen.post_message(stale)
        await pilot.pause()
        await pilot.pause()
        assert table(app).row_count == 200
        assert table(app).cursor_row == 99  # still on the row it was on
        await pilot.press("G")
        await wait_until(pilot, lambda: table(app).row_count == 250, what="page 3")


async def test_another_consoles_write_shows_as_a_toast(seeded: str) -> None:
    async def open_() -> Backend:
        return await open_backend(DriverKind.ASYNCPG_POOL, seeded, Installation(), LABEL, ())

    app = PgqConsole(open_, clock=FixedClock(FIXED_NOW))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        record = audit.AuditRecord(
            action="requeue",
            predicate="x",
            count=3,
            previewed=3,
            job_ids=(1, 2, 3),
            database="db",
            reason="[bold]fixed[/]",
            user="alice",
            host="ops-1",
        )
        payload = record.announcement().replace(audit.CONSOLE_INSTANCE, "another-console")
        # As another console sends it: its session's name, the role the server filled in.
        payload = json.dumps({**json.loads(payload), "db_user": "postgres"})
        connection = await asyncpg.connect(
            seeded, server_settings={"application_name": "pgq-console"}
        )
        try:
            for _ in range(50):  # until the listener is up
                await connection.execute("SELECT pg_notify('ch_pgqueuer_console', $1)", payload)
                if any("alice@ops-1" in n.message for n in app._notifications):
                    break
                await pilot.pause(0.1)
        finally:
            await connection.close()
        # The NOTIFY may have gone out more than once: a copy heard after its sender's session
        # ended cannot be verified against pg_stat_activity, and says so in its own toast.
        toasts = {n.message for n in app._notifications if "alice@ops-1" in n.message}
        assert "db role postgres (alice@ops-1): requeue, changed 3 of 3 ([bold]fixed[/])" in toasts


async def test_jobs_screen_is_built_ahead_reads_fresh_rows_on_its_key_and_idles_hidden(
    seeded: str,
) -> None:
    app = console(seeded)
    app.refresh_interval = 0.2  # a visible Jobs screen would re-read five times a second
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(pilot, lambda: app.settled, what="startup work done")
        assert app.current_mode == "overview"
        (jobs,) = app.get_screen_stack("jobs")  # built before its first visit
        assert isinstance(jobs, JobsScreen)
        hidden = jobs.query_one(JobTable)
        assert len(hidden.jobs) == 36  # its first page, read while hidden
        connection = await asyncpg.connect(seeded)
        try:
            new_id = await connection.fetchval(
                "INSERT INTO pgqueuer (priority, status, entrypoint, payload)"
                " VALUES (0, 'queued', 'built_ahead', NULL) RETURNING id"
            )
        finally:
            await connection.close()
        await pilot.pause(1.0)  # five intervals: a hidden screen does not poll
        assert new_id not in hidden.jobs
        await pilot.press("2")
        await wait_until(pilot, lambda: app.screen is jobs, what="the jobs screen")
        # Read before the switch, so the first paint already shows the new job.
        assert new_id in hidden.jobs
        assert ids_shown(app)[0] == new_id


async def test_esc_clears_an_applied_filter(seeded: str) -> None:
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        await pilot.press("slash", *"ep:charge_card", "enter")
        await wait_until(pilot, lambda: ids_shown(app) == [33, 32, 31], what="filtered")
        await pilot.press("space")  # a mark: the first esc clears it, the filter stays
        await pilot.press("escape")
        assert not table(app).marked and ids_shown(app) == [33, 32, 31]
        await pilot.press("escape")
        await wait_until(pilot, lambda: table(app).row_count == 36, what="all jobs again")
        screen = app.screen
        assert isinstance(screen, JobsScreen) and screen.job_filter.text == ""
        assert "filter" not in str(screen.query_one("#jobs-header", Static).render())


async def test_esc_in_the_filter_line_cancels_the_edit_and_keeps_the_filter(seeded: str) -> None:
    """esc while editing the filter closes the line and keeps the applied filter, its rows and
    the scope of the bulk actions (it left the edit on the line, so the next esc, meant to
    cancel, cleared the filter and `R` previewed every job); clearing takes a further esc."""
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        await pilot.press("slash", *"ep:charge_card", "enter")
        await wait_until(pilot, lambda: ids_shown(app) == [33, 32, 31], what="filtered")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        line = screen.query_one("#jobs-filter", Input)
        await pilot.press("slash", "ctrl+u", *"status:queued")  # an edit, not applied
        await pilot.press("escape")
        await pilot.pause()
        assert not line.has_focus and line.display
        assert line.value == "ep:charge_card" and screen.job_filter.text == "ep:charge_card"
        # A filter that does not parse: bulk actions off, and they stay off when esc leaves
        # the line (tests/test_filter_safety.py); a further esc puts the applied one back.
        await pilot.press("slash", "ctrl+u", *"prio:abc", "enter")
        await wait_until(pilot, lambda: screen.bulk_problem() is not None, what="refused")
        assert screen.query_one("#jobs-error").display
        await pilot.press("escape")
        await pilot.pause()
        assert not line.has_focus and screen.bulk_problem() is not None
        await pilot.press("escape")
        await pilot.pause()
        assert line.value == "ep:charge_card" and not screen.query_one("#jobs-error").display
        assert screen.bulk_problem() is None
        assert ids_shown(app) == [33, 32, 31]
        assert not any("filter cleared" in n.message for n in app._notifications)
        # `R` previews exactly the rows shown: the held charge_card failures.
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert sorted(modal.preview.ids) == [31, 32, 33]  # type: ignore[attr-defined]
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        # The line shows the applied filter, unchanged: a further esc clears it, and says so.
        await pilot.press("escape")
        await wait_until(pilot, lambda: table(app).row_count == 36, what="all jobs again")
        assert screen.job_filter.text == "" and not line.display
        assert any("filter cleared" in n.message for n in app._notifications)


async def test_enter_on_the_overview_opens_that_entrypoints_jobs(seeded: str) -> None:
    from pgq_console.widgets.overview_table import OverviewTable

    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        overview = app.screen.query_one(OverviewTable)
        await wait_until(pilot, lambda: overview.row_count >= 3, what="overview rows")
        overview.move_cursor(row=overview.get_row_index("charge_card"))
        overview.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen), what="jobs screen")
        await wait_until(pilot, lambda: ids_shown(app) == [33, 32, 31], what="charge_card only")
        assert app.screen.job_filter.text == "ep:charge_card"  # type: ignore[attr-defined]


async def test_keys_typed_in_one_burst_after_slash_go_into_the_filter(database_dsn: str) -> None:
    # Pasted, or typed fast over SSH: the keys after `/` were sent before the line had the
    # focus, and `e` opened the enqueue form.
    app = console(database_dsn)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs_screen(pilot)
        screen = app.screen
        await wait_until(pilot, lambda: app.focused is screen.query_one(JobTable))
        for key, character in [("slash", "/"), ("e", "e"), ("p", "p"), ("colon", ":")]:
            app.post_message(events.Key(key, character))
        line = screen.query_one("#jobs-filter", Input)
        await wait_until(pilot, lambda: line.value == "ep:" or app.screen is not screen)
        assert app.screen is screen
        assert app.focused is line


def banner_of(app: PgqConsole, selector: str) -> str:
    banner = app.screen.query_one(selector, Static)
    return str(banner.render()) if banner.display else ""


async def connection_gone(*_args: Any, **_kwargs: Any) -> Any:
    raise ConnectionResetError("server closed the connection unexpectedly")


async def test_a_lost_connection_on_the_jobs_screen_says_so_and_when_the_next_try_is(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said as the other screens say it (the shared loop's outage line), backed off; a key
    still reads at once, and the first good read clears it."""
    from pgq_console.screens import jobs as jobs_module

    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        monkeypatch.setattr(jobs_module, "fetch_page", connection_gone)
        screen.request_refresh()
        await wait_until(pilot, lambda: "lost the connection" in banner_of(app, "#jobs-error"))
        text = banner_of(app, "#jobs-error")
        assert f"lost the connection to {LABEL} at {FIXED_NOW:%H:%M:%S}" in text
        assert "retry 1 at" in text and "bulk actions are off" in text
        assert screen.loop.lost and screen.loop.retry_delay > 0  # backed off
        assert table(app).row_count == 36  # the rows stay, as of when they were read
        monkeypatch.undo()
        screen.request_refresh()
        await wait_until(pilot, lambda: banner_of(app, "#jobs-error") == "", what="recovered")
        assert not screen.loop.lost and screen.loop.failures == 0


async def test_a_lost_connection_in_the_job_detail_says_so_and_reads_again(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said 'cannot read job N: [Errno 2] …' and stayed so; now it names the lost
    connection, as the lists do, and shows the job once the server answers again."""
    from pgq_console.screens import job_detail as detail_module

    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        monkeypatch.setattr(detail_module, "fetch_detail", connection_gone)
        monkeypatch.setattr(detail_module, "DETAIL_RETRY_S", 0.2)
        table(app).move_cursor(row=ids_shown(app).index(35))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        await wait_until(
            pilot, lambda: "lost the connection" in banner_of(app, "#detail-banner"), what="said"
        )
        text = banner_of(app, "#detail-banner")  # the outage line every screen shows
        assert f"lost the connection to {LABEL} at {FIXED_NOW:%H:%M:%S}" in text
        assert "no numbers yet" in text and "; retry " in text  # every 0.2 s here
        assert "job 35 not read yet" in banner_of(app, "#detail-fields")
        monkeypatch.undo()
        await wait_until(pilot, lambda: screen.detail is not None, what="read again")
        await wait_until(pilot, lambda: banner_of(app, "#detail-banner") == "", what="cleared")
        assert "lost the connection" not in banner_of(app, "#detail-fields")


async def test_a_preview_cut_by_a_lost_connection_says_so_and_offers_nothing(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dialog showed 'Previewing…' beside 'preview failed: …' for good."""
    from pgq_console.core.actions.rows import RowAction

    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(30))
        monkeypatch.setattr(RowAction, "preview", connection_gone)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(
            pilot, lambda: "lost the connection" in banner_of(app, "#confirm-error"), what="said"
        )
        assert f"lost the connection to {LABEL}" in banner_of(app, "#confirm-error")
        assert "nothing was changed" in banner_of(app, "#confirm-error")
        count = banner_of(app, "#confirm-count")
        assert "Previewing" not in count and "Nothing can be changed" in count
        assert modal.query_one("#confirm-apply").disabled
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
    assert 30 in await statuses(seeded)


async def test_a_lost_connection_on_the_failures_screen_says_so_and_when_the_next_try_is(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgq_console.screens import failures as failures_module

    app = console(seeded)
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        screen = app.screen
        assert isinstance(screen, FailuresScreen)
        await wait_until(pilot, lambda: table(app, "#held-table").row_count == 4)
        monkeypatch.setattr(failures_module, "fetch_page", connection_gone)
        screen.request_refresh()
        await wait_until(pilot, lambda: "lost the connection" in banner_of(app, "#failures-error"))
        text = banner_of(app, "#failures-error")
        assert f"lost the connection to {LABEL} at {FIXED_NOW:%H:%M:%S}" in text
        assert "retry 1 at" in text and "bulk actions are off" in text
        assert screen.loop.lost and screen.loop.retry_delay > 0
