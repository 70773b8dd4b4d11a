"""Enter on a job list reads the job, then shows its detail (issue 15: the detail's p95 at 10M
rows). Against real PostgreSQL; the read is held back only by an event, never by time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.widgets import Static

from pgq_console.screens import job_detail as detail_module
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from tests.helpers import wait_until
from tests.test_jobs_screens import console, ids_shown, open_jobs, seeded, table

__all__ = ["seeded"]  # the fixture, used by name


def fields_at_mount(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each detail screen's fields said as it mounted (its first frame)."""
    seen: list[str] = []
    original = JobDetailScreen.on_mount

    def on_mount(self: JobDetailScreen) -> None:
        seen.append(str(self.query_one("#detail-fields", Static).render()))
        original(self)

    monkeypatch.setattr(JobDetailScreen, "on_mount", on_mount)
    return seen


class HeldReads:
    """`fetch_detail` (the real one) that waits for `release` first, counting its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.done = 0
        real = getattr(detail_module, "fetch_detail")  # noqa: B009 (patched below by name)

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            await self.release.wait()
            try:
                return await real(*args, **kwargs)
            finally:
                self.done += 1

        monkeypatch.setattr(detail_module, "fetch_detail", held)


async def test_enter_shows_the_detail_with_its_job_from_the_first_frame(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It showed "Loading…", then read: a frame, a layout and a message more before the job
    (most of the detail's 88/172 ms p50/p95 at 10M rows). Now the screen is composed with it.
    (The wait is long here: on a loaded machine the read may take longer than OPEN_WAIT_S,
    which is the other test's case.)"""
    monkeypatch.setattr(detail_module, "OPEN_WAIT_S", 60.0)
    seen = fields_at_mount(monkeypatch)
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(35))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        assert screen.detail is not None and screen.detail.job_id == 35
        assert len(seen) == 1 and "Loading" not in seen[0] and "entrypoint" in seen[0]
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))


async def test_a_slow_read_shows_loading_and_the_screen_takes_that_read_over(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past OPEN_WAIT_S the screen is shown without the job; the read under way fills it (one
    read, not a second one)."""
    monkeypatch.setattr(detail_module, "OPEN_WAIT_S", 0.0)
    reads = HeldReads(monkeypatch)
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        table(app).move_cursor(row=ids_shown(app).index(34))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        assert "Loading" in str(screen.query_one("#detail-fields", Static).render())
        reads.release.set()
        await wait_until(pilot, lambda: screen.detail is not None, what="the job")
        assert screen.detail is not None and screen.detail.job_id == 34
        assert "Loading" not in str(screen.query_one("#detail-fields", Static).render())
        assert reads.calls == 1


async def test_no_detail_opens_over_another_screen_when_the_read_lands_late(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter, then `1` before the job was read: the overview stays, no detail is pushed on it."""
    monkeypatch.setattr(detail_module, "OPEN_WAIT_S", 60.0)
    reads = HeldReads(monkeypatch)
    app = console(seeded)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_jobs(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: reads.calls == 1, what="the read began")
        await pilot.press("1")
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        reads.release.set()
        await wait_until(pilot, lambda: reads.done == 1, what="the read ended")
        await wait_until(
            pilot,
            lambda: all(w.is_finished for w in app.workers if w.group == "open-job-detail"),
            what="the opener finished",
        )
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen)
        stacks = [app.get_screen_stack(mode) for mode in ("overview", "jobs")]
        assert not any(isinstance(s, JobDetailScreen) for stack in stacks for s in stack)
