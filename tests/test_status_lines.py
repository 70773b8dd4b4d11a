"""Header lines lay the screen out again only when their number of lines changes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from pgq_console.widgets.status_line import QuietStatic


class CountingLine(QuietStatic):
    DEFAULT_CSS = "CountingLine { height: auto; width: 40; }"
    layouts = 0

    def refresh(self, *args: Any, layout: bool = False, **kwargs: Any) -> Any:
        self.layouts += int(layout)
        return super().refresh(*args, layout=layout, **kwargs)


class LineApp(App[None]):
    """One header line, 40 cells wide."""

    def __init__(self, line: QuietStatic) -> None:
        super().__init__()
        self.line = line

    def compose(self) -> ComposeResult:
        yield self.line


async def test_same_height_repaints_without_layout_and_wrapping_still_lays_out() -> None:
    line = CountingLine()
    async with LineApp(line).run_test(size=(80, 10)) as pilot:
        line.show_text(Text("listening on ch  last event 0.1s ago"))
        await pilot.pause()
        assert line.size.height == 1
        before = line.layouts

        line.show_text(Text("listening on ch  last event 0.2s ago"))  # same one line
        await pilot.pause()
        assert line.layouts == before
        assert "0.2s" in str(line.render())

        line.show_text(Text("listening on ch  " + "a long status " * 4))  # now wraps
        await pilot.pause()
        assert line.layouts > before
        assert line.size.height == 2
        before = line.layouts

        line.show_text(Text("short again"))
        await pilot.pause()
        assert line.layouts > before
        assert line.size.height == 1
        assert "short again" in str(line.render())


class SteadyLine(CountingLine):
    DEFAULT_CSS = "SteadyLine { height: auto; width: 40; }"
    KEEP_HEIGHT = True


async def test_a_kept_height_does_not_shrink_while_the_width_stays() -> None:
    line = SteadyLine()
    async with LineApp(line).run_test(size=(80, 10)) as pilot:
        line.show_text(Text("queued 12,345  picked 10  " + "held 0  " * 3))  # wraps: 2 lines
        await pilot.pause()
        assert line.size.height == 2
        before = line.layouts

        line.show_text(Text("queued 9  picked 1"))  # would fit one line: the height stays
        await pilot.pause()
        assert line.size.height == 2 and line.layouts == before
        assert "queued 9" in str(line.render())

        line.show_text(Text("queued 9  picked 2"))  # the same shorter text again: unchanged
        await pilot.pause()
        assert line.size.height == 2 and line.layouts == before


async def test_a_new_state_gives_the_live_line_its_own_height() -> None:
    """The startup's "not listening (…)" wraps at 80 columns; once the console listens the
    line fits one: it must not keep a blank second line for good (it did on a busy machine,
    where the not-listening state was painted before the first listening one)."""
    from datetime import UTC, datetime

    from pgq_console.core.models import RefreshStatus
    from pgq_console.widgets.status_line import LiveLine

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    line = LiveLine()
    async with LineApp(line).run_test(size=(80, 10)) as pilot:
        waiting = RefreshStatus(channel="ch_pgqueuer", interval_s=2.0, effective_interval_s=2.0)
        line.show(waiting, now)
        await pilot.pause()
        assert line.size.height == 2, line.render()
        listening = RefreshStatus(
            channel="ch_pgqueuer", interval_s=2.0, effective_interval_s=2.0, listening=True
        )
        line.show(listening, now)
        await pilot.pause()
        assert line.size.height == 1, line.render()
