"""The key footer of every screen."""

from __future__ import annotations

from textual.widgets import Footer


class ConsoleFooter(Footer):
    """Textual's Footer, without its leak.

    Footer recomposes its keys on every screen switch, and each old key stays referenced by a
    `data_bind` watcher on the footer until `compact` next changes (Textual 8.2.8): over a long
    session of switching screens that is megabytes. Drop the watchers of removed keys.
    """

    async def recompose(self) -> None:
        await super().recompose()
        watchers: dict[str, list[tuple[object, object]]] = getattr(self, "__watchers", {})
        for entries in watchers.values():
            entries[:] = [
                (node, callback)
                for node, callback in entries
                if not (getattr(node, "_closing", False) or getattr(node, "_closed", False))
            ]
