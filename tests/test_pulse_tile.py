"""A headline tile whose number changes width (9 -> 10, "–" -> 0:01) is repainted, not laid out:
its width is its share of the row and Digits are always three lines high, and a layout of the
overview at 200 entrypoints cost more than everything else a refresh did."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget

from pgq_console.widgets.pulse import PulseTile, PulseTiles

CSS = """
PulseTile { width: 1fr; height: auto; border: round white; }
#auto-tile { width: auto; }
"""


class TilesApp(App[None]):
    CSS = CSS

    def compose(self) -> ComposeResult:
        yield PulseTiles()
        yield PulseTile("auto", id="auto-tile")


def spy_layouts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of widgets asked to lay the screen out again."""
    asked: list[str] = []
    refresh = Widget.refresh

    def spy(self: Widget, *regions: Any, **options: Any) -> Any:
        if options.get("layout"):
            asked.append(self.id or type(self).__name__)
        return refresh(self, *regions, **options)

    monkeypatch.setattr(Widget, "refresh", spy)
    return asked


async def test_digits_of_another_width_repaint_without_a_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = TilesApp()
    async with app.run_test(size=(120, 20)) as pilot:
        tiles = app.query_one(PulseTiles)
        tiles.show(
            ready=9, deferred=0, picked=0, held=0, oldest_ready_s=None, rate_in=0, rate_out=0
        )
        await pilot.pause()
        ready = app.query_one("#tile-ready", PulseTile)
        oldest = app.query_one("#tile-oldest", PulseTile)
        size = ready.size
        asked = spy_layouts(monkeypatch)
        tiles.show(
            ready=10, deferred=0, picked=0, held=0, oldest_ready_s=61.0, rate_in=0, rate_out=0
        )
        await pilot.pause()
        assert ready.value == "10" and oldest.value == "1:01"
        assert "tile-ready" not in asked and "tile-oldest" not in asked
        assert ready.size == size  # nothing to lay out: the same size

        # A tile sized by its content still lays out when its digits change width.
        auto = app.query_one("#auto-tile", PulseTile)
        auto.show("9")
        await pilot.pause()
        asked.clear()
        auto.show("1000")
        await pilot.pause()
        assert "auto-tile" in asked
