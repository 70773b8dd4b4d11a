"""The overview's refresher started before its screen: the first reading's round trips overlap
the console's own start.

From the connection to the overview's first snapshot, the console spends CPU (the app's modules
imported in the background, Textual's start, the first layout) and the first reading waits on
the server (LISTEN, the first look, the exact count, the windows: at 50 ms RTT ~0.3 s). One after
the other, the first numbers waited for both. The command line starts the refresher as soon as
the backend is open (`EarlyRefresher`); it reads, listens and holds what it read; the overview
screen, once built on the same backend, adopts it (`adopt`): the held snapshots and the latest
status are replayed in order, later ones go to the screen, and the screen's worker owns the task.
A refresher never adopted (the app stopped before showing the overview) is cancelled (`cancel`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.core.overview.refresher import Refresher


class EarlyRefresher:
    """A running `Refresher` with no screen yet (see the module)."""

    def __init__(self, backend: Backend, clock: Clock, *, interval_s: float, listen: bool) -> None:
        self.backend = backend
        self.interval_s = interval_s
        self.listen = listen
        self._snapshots: list[OverviewSnapshot] = []
        self._status: RefreshStatus | None = None
        self.adopted = False
        self.refresher = Refresher(
            backend,
            clock,
            on_snapshot=self._snapshots.append,
            on_status=self._hold_status,
            interval_s=interval_s,
            listen=listen,
        )
        self.task: asyncio.Task[None] = asyncio.ensure_future(self.refresher.run())

    def _hold_status(self, status: RefreshStatus) -> None:
        self._status = status

    def fits(self, backend: Backend, *, interval_s: float, listen: bool) -> bool:
        """Whether a screen with these settings can adopt it (else it starts its own)."""
        return (
            not self.adopted
            and not self.task.done()
            and backend is self.backend
            and interval_s == self.interval_s
            and listen == self.listen
        )

    def adopt(
        self,
        *,
        on_snapshot: Callable[[OverviewSnapshot], None],
        on_status: Callable[[RefreshStatus], None],
        active: Callable[[], bool],
    ) -> Refresher:
        """The screen's from now on: what was read so far is replayed to it, in order."""
        self.adopted = True
        held, self._snapshots = self._snapshots, []
        status, self._status = self._status, None
        self.refresher.attach(on_snapshot=on_snapshot, on_status=on_status, active=active)
        for snapshot in held:
            on_snapshot(snapshot)
        if status is not None:
            on_status(status)
        return self.refresher

    async def cancel(self) -> None:
        """Stop it unless a screen adopted it (the screen's worker stops it then)."""
        if self.adopted:
            return
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
