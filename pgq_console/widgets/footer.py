"""The key footer of every screen."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer

# Kept when keys are dropped for width: the way to every other key.
ALWAYS_SHOWN = ("help",)


def key_width(item: Widget) -> int:
    """Cells a footer key takes: " key description " (Textual's FooterKey padding)."""
    key = str(getattr(item, "key_display", "") or "")
    description = str(getattr(item, "description", "") or "")
    return cell_len(key) + 2 + (cell_len(description) + 1 if description else 0)


class ConsoleFooter(Footer):
    """Textual's Footer, without its leak.

    Keys that do not fit the width are left out whole, the last first (help stays): a key is
    never cut mid-word ("o Ord", "? He").

    Footer recomposes its keys on every screen switch, and each old key stays referenced by a
    `data_bind` watcher on the footer's `compact` until that value next changes (Textual then
    drops the watchers of closed widgets): over a long session of switching screens that is
    megabytes. So after each recompose `compact` is flipped and put back, through the public
    reactive: the removed keys' watchers go, the live keys end with the value they had.
    """

    _composed_width = 0

    async def recompose(self) -> None:
        await super().recompose()
        compact = self.compact
        self.compact = not compact
        self.compact = compact

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        width = self._composed_width = self.size.width
        if width <= 0:
            yield from items
            return
        palette = [item for item in items if item.has_class("-command-palette")]
        keys = [item for item in items if not item.has_class("-command-palette")]
        room = width - sum(key_width(item) + 1 for item in palette)  # its left border
        kept: set[int] = set()
        for index in sorted(
            range(len(keys)),
            key=lambda i: (getattr(keys[i], "action", "") not in ALWAYS_SHOWN, i),
        ):
            needed = key_width(keys[index])
            if needed > room:
                break
            kept.add(index)
            room -= needed
        shown = [item for index, item in enumerate(keys) if index in kept]
        self.styles.grid_size_columns = len(shown)
        yield from shown
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._composed_width:
            self.call_later(self.recompose)
