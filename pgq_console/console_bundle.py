"""`I` inside the console: the incident bundle (Markdown + JSON) written from the console's own
connection, with the writes other consoles announced while this one listened.

`pgq-console bundle` (incident.py) writes the same bundle from a shell.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pgq_console.core.text import one_line

if TYPE_CHECKING:
    from pathlib import Path

    from textual.app import App

    from pgq_console.context import ConsoleContext
    from pgq_console.core.backend import Backend

# How many announced writes the bundle lists, the latest ones.

NOTHING_TO_READ = (
    "no incident bundle: this console has no database to read (the psycopg-sync driver only "
    "enqueues)"
)
SERVED = (
    "no incident bundle from a browser session: it would be written on the server; "
    "run `pgq-console bundle` there"
)

FLEET_BUNDLE = "a bundle covers one installation: open it with enter, then press I there"


class IncidentBundles:
    """Writes a bundle on `I`, one at a time (a second `I` replaces a bundle being written)."""

    def __init__(self, app: App[Any], context: ConsoleContext) -> None:
        self.app = app
        self.context = context
        self.last_path: Path | None = None  # the Markdown file of the last bundle written

    def write(self) -> None:
        """`I`: write a bundle to the state directory, or say in one line why not."""
        backend = self.context.backend
        if backend is None:
            self.app.notify("no database to bundle yet", severity="warning", markup=False)
            return
        if not backend.capabilities.can_read:
            self.app.notify(NOTHING_TO_READ, severity="warning", markup=False)
            return
        if self.context.served:
            # A browser session's user is not the server's: no files written on its behalf.
            self.app.notify(SERVED, severity="warning", markup=False)
            return
        self.app.notify("writing the incident bundle…", markup=False, timeout=3)
        self.app.run_worker(
            self._write(backend),
            name="write_bundle",
            group="bundle",
            exclusive=True,
            exit_on_error=False,
        )

    async def _write(self, backend: Backend) -> None:
        from pgq_console.core import bundle
        from pgq_console.incident import known_secrets

        settings = self.context.settings
        secrets = known_secrets(settings) if settings is not None else ()
        try:
            made = await bundle.collect(
                backend,
                secrets=secrets,
                heard=tuple(self.context.heard_audit),
                seen_workers=self.context.workers_seen(),
            )
            written = await asyncio.to_thread(bundle.write, made, secrets=secrets)
        except Exception as exc:
            self.app.notify(
                f"incident bundle failed: {one_line(exc, limit=200)}",
                severity="error",
                markup=False,
            )
            return
        self.last_path = written.markdown
        self.app.notify(f"incident bundle written: {written.markdown}", markup=False, timeout=15)
