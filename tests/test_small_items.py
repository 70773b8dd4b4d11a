"""Small items: global commands everywhere, help names the screen and lists the
commands, tab completes the console's own names and cycles, help explains the columns."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from pgq_console.commands import CommandInput, console_commands
from pgq_console.screens.help import HelpScreen, human_name
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from tests.helpers import MovingClock, wait_until
from tests.test_jobs_screens import console, open_jobs, seeded  # noqa: F401  (fixture)


def help_text(app: Any) -> str:
    from rich.console import Console

    console_ = Console(width=300, record=True)
    console_.print(app.screen.query_one("#help-text", Static).content)
    return console_.export_text()


def overview(app: Any) -> OverviewScreen:
    stack = app.get_screen_stack("overview")
    assert isinstance(stack[0], OverviewScreen)
    return stack[0]


async def test_pause_works_from_the_jobs_screen(seeded: str) -> None:  # noqa: F811
    app = console(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_jobs(pilot)
        await wait_until(pilot, lambda: overview(app).refresher is not None, what="refresher")
        refresher = overview(app).refresher
        assert refresher is not None and not refresher.status.paused
        await pilot.press("colon", *"pause", "enter")
        await wait_until(pilot, lambda: refresher.status.paused, what="paused from Jobs")
        assert isinstance(app.screen, JobsScreen)
        assert not any("unknown command" in n.message for n in app._notifications)


async def test_help_names_the_screen_and_lists_commands(seeded: str) -> None:  # noqa: F811
    assert human_name("JobDetailScreen") == "Job detail"
    app = console(seeded)
    async with app.run_test(size=(120, 50)) as pilot:
        await open_jobs(pilot)
        app.push_screen(JobDetailScreen(app.backend, app.clock, 31))  # type: ignore[arg-type]
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = help_text(app)
        assert "This screen: Job detail" in text and "JobDetailScreen" not in text
        assert ":jobs" in text and ":pause" in text and ":theme NAME" in text and ":quit" in text


async def test_colon_help_opens_help_with_the_commands(seeded: str) -> None:  # noqa: F811
    app = console(seeded)
    async with app.run_test(size=(120, 50)) as pilot:
        await open_jobs(pilot)
        await pilot.press("colon", *"help", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = help_text(app)
        assert "This screen: 2 Jobs" in text
        assert ":pause" in text and ":jobs" in text and ":quit" in text and ":theme NAME" in text


async def test_tab_cycles_console_names_without_textual_themes(seeded: str) -> None:  # noqa: F811
    app = console(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        names = [c.name for c in console_commands(app, app.screen)]
        assert "theme pgq-light" in names
        assert not any(n in names for n in ("theme nord", "theme textual-light", "theme gruvbox"))
        await pilot.press("colon", *"theme ")
        line = app.screen.query_one(CommandInput)
        themes = [n for n in names if n.startswith("theme ")]
        seen = []
        for _ in range(len(themes) + 1):
            await pilot.press("tab")
            seen.append(line.value)
        assert seen[: len(themes)] == themes and seen[-1] == themes[0]  # cycles round


async def test_help_explains_the_overview_columns(seeded: str) -> None:  # noqa: F811
    app = console(seeded)
    async with app.run_test(size=(120, 60)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = help_text(app)
        for term in ("Ready", "Deferred", "Held", "Oldest", "p50 p95", "→ N more"):
            assert term in text
        assert "execute_after is still in the future" in text


def test_every_screen_explains_each_of_its_columns() -> None:
    """Help's glossary names every column label of the screen's tables."""
    from pgq_console.screens import charts, consumers, failures, health, schedules, workers
    from pgq_console.widgets import job_table, overview_table

    cases = [
        (OverviewScreen, overview_table.COLUMNS),
        (JobsScreen, job_table.COLUMNS),
        (failures.FailuresScreen, failures.GROUP_COLUMNS),
        (workers.WorkersScreen, workers.WORKER_COLUMNS),
        (schedules.SchedulesScreen, schedules.COLUMNS),
        (health.HealthScreen, health.TABLE_COLUMNS),
        (charts.ChartsScreen, charts.COLUMNS),
        (consumers.ConsumersScreen, tuple((key, label) for key, label, _ in consumers.COLUMNS)),
    ]
    obvious = {
        "Entrypoint",
        "Id",
        "Worker",
        "Table",
        "Size",
        "Pid",
        "State",
        "Application",
        "Query",
        "Why",
        " ",
        "Entrypoints",
        "Job",
    }
    for screen, columns in cases:
        glossary = " ".join(term for term, _ in screen.GLOSSARY)  # type: ignore[attr-defined]
        for _, label in columns:
            if label in obvious:
                continue
            assert any(word in glossary for word in label.split()), (screen.__name__, label)


async def test_detail_relative_times_move_on(seeded: str) -> None:  # noqa: F811
    from datetime import timedelta

    from tests.jobs_seed import FIXED_NOW

    app = console(seeded)
    async with app.run_test(size=(120, 50)) as pilot:
        await open_jobs(pilot)
        clock = MovingClock(FIXED_NOW)
        app.push_screen(JobDetailScreen(app.backend, clock, 31))  # type: ignore[arg-type]
        await wait_until(pilot, lambda: getattr(app.screen, "detail", None) is not None)
        fields = app.screen.query_one("#detail-fields", Static)
        assert "(5m00s ago)" in str(fields.render())
        clock.at = FIXED_NOW + timedelta(minutes=2)
        await wait_until(pilot, lambda: "(7m00s ago)" in str(fields.render()), what="ticking")


async def test_preview_wording(database_dsn: str) -> None:
    from datetime import timedelta

    from pgq_console.core.actions import requeue
    from pgq_console.core.jobs import HELD_FILTER
    from pgq_console.core.workers import ReclaimAction
    from tests.helpers import backend_for

    backend = await backend_for(database_dsn)
    try:
        action = ReclaimAction.for_worker(backend, "w-1", timedelta(seconds=90))
        preview = await action.preview(backend)
        assert "$3 = interval '90 seconds'" in preview.parameters
        assert not any("datetime" in p for p in preview.parameters)
        held = requeue(backend, HELD_FILTER.scope("pgqueuer"))
        # Without the held-failures index the write is bounded like the list, and says so.
        assert held.predicate.description == "held (failed) and held (newest 100,000 jobs scanned)"
        exact = requeue(backend, HELD_FILTER.scope("pgqueuer", held_index=True))
        assert exact.predicate.description == "held (failed)"
    finally:
        await backend.close()
