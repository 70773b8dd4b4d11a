"""The key footer of every screen."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.dom import NoScreen
from textual.screen import Screen
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
    megabytes. So in each recompose, once the old keys are removed and before the new ones
    mount, `compact` is flipped and put back through the public reactive: the removed keys'
    watchers go, and no live key is restyled for it.

    Only a footer on screen recomposes. Every screen's bindings change (focus, a table's rows,
    suspend and resume), hidden screens' too (built ahead, or left), and recomposing their
    footers was most of a console start's CPU. A footer skipped while hidden is stale, and
    recomposes as soon as its screen is current again: on the app's screen change, on its own
    Show, and on the bindings change every resume brings. Its first composition is never
    skipped (a footer never stays blank for want of a catch-up).

    A footer on screen recomposes only when its keys would change: Textual asks on every
    focus change and screen resume, and most of those leave every key as it was (a recompose
    mounts and restyles a dozen widgets: ~5 ms, ~40 times in a console's first second).
    """

    _composed_width = 0
    _stale = False  # a recompose was skipped while the footer's screen was hidden
    _composed_keys: tuple[object, ...] | None = None  # what the keys shown were made of

    def _shown(self) -> bool | None:
        """The footer's screen is the one shown (or under a modal); None if it has none (a
        closed screen: nothing to compose)."""
        if not self.is_attached:
            return None
        try:
            return self.screen.is_current
        except NoScreen:
            return None

    async def recompose(self) -> None:
        shown = self._shown()
        if shown is None:
            return
        if not shown and self.children:
            self._stale = True
            return
        self._stale = False
        keys = self._keys_made_of()
        if self.children and keys == self._composed_keys:
            return
        async with self.batch():  # one update: no paint of an empty footer in between
            await self.query_children("*").exclude(".-textual-system").remove()
            # The removed keys are closing: flipping `compact` now drops their watchers, and
            # restyles only the empty footer (after the new keys mounted, it restyled each
            # key twice: ~40 % of a recompose).
            compact = self.compact
            self.compact = not compact
            self.compact = compact
            await super().recompose()
        self._composed_keys = keys

    def _keys_made_of(self) -> tuple[object, ...]:
        """Everything the keys' composition reads: the width, the compact style and each shown
        binding of the screen (and the command palette's) with its display, state and tooltip."""
        app = self.app
        palette = app.COMMAND_PALETTE_BINDING
        bindings = tuple(
            (
                binding.key,
                app.get_key_display(binding),
                binding.description,
                binding.action,
                binding.show,
                binding.group,
                enabled,
                tooltip,
            )
            for key, (_node, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == palette
        )
        return (self.size.width, self.compact, self.show_command_palette, bindings)

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

    def on_mount(self) -> None:
        self.app.screen_change_signal.subscribe(self, self._screen_changed)
        # Textual's Footer composes its keys on the screen's next bindings update: one mounted
        # after the screen published its bindings (a busy start) would stay blank for good.
        self.call_after_refresh(self._compose_if_blank)

    def _compose_if_blank(self) -> None:
        if not self.children and self._shown():
            self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.app.screen_change_signal.unsubscribe(self)

    def _screen_changed(self, screen: Screen[object]) -> None:
        # Every footer hears every screen change (of screens being closed too): only a stale
        # one whose own screen is now shown does anything.
        self._catch_up()

    def on_show(self) -> None:
        self._catch_up()

    def _catch_up(self) -> None:
        if not self.children:
            self._compose_if_blank()
        elif self._stale and self._shown():
            self._stale = False
            self.call_after_refresh(self.recompose)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._composed_width:
            self.call_later(self.recompose)
