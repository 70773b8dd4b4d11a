"""A hot standby for the heavy reads (jobs pages, job detail, failures, charts, table sizes).

Only reads that may be a little stale go there (`Backend.read_heavy`): LISTEN, writes, the depth
query behind the live overview and every read a write's preview depends on stay on the primary,
so a preview is never computed on stale rows. The standby is used while its replay lag stays
under `max_lag_s`; when it lags more, is down or is not a standby at all, reads fall back to the
primary and the status says why. Checks run in the background (every `CHECK_EVERY_S`, every
`RETRY_DOWN_S` while it is unfit): no read, and not the live overview, ever waits on a standby
that stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgq_console.core.text import error_line

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

DEFAULT_MAX_LAG_S = 10.0
CHECK_EVERY_S = 2.0
RETRY_DOWN_S = 5.0

# Replay lag: zero when everything received is replayed (an idle primary sends nothing, and
# now() - last replay timestamp would grow forever), else the age of the last replayed commit.
LAG_SQL = """SELECT pg_is_in_recovery() AS standby,
    CASE WHEN NOT pg_is_in_recovery() THEN NULL
         WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0
         ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
    END AS lag_s"""


@dataclass(frozen=True)
class ReplicaStatus:
    """Whether heavy reads go to the standby, its lag, and why not when they do not."""

    in_use: bool = False
    lag_s: float | None = None
    problem: str | None = None  # why reads are on the primary

    def describe(self) -> str:
        if self.in_use:
            return f"replica lag {self.lag_s or 0.0:.1f}s"
        return f"replica {self.problem or 'not checked yet'}: reads on the primary"


class ReplicaLink:
    """The standby's connection (opened lazily, so a standby down at start is retried)."""

    def __init__(
        self,
        open_backend: Callable[[], Awaitable[Backend]],
        *,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_backend
        self.max_lag_s = max_lag_s
        self._monotonic = monotonic
        self.backend: Backend | None = None
        self.status = ReplicaStatus()
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Future[ReplicaStatus] | None = None

    def usable(self) -> Backend | None:
        """The standby's backend when heavy reads may go there now (as last checked), else None;
        starts a check when one is due."""
        self.check_soon()
        return self.backend if self.status.in_use else None

    def check_soon(self) -> None:
        """Start a check in the background when one is due and none is running."""
        if self._task is not None and not self._task.done():
            return
        every = CHECK_EVERY_S if self.status.in_use else RETRY_DOWN_S
        if self._checked_at is None or self._monotonic() - self._checked_at >= every:
            self._task = asyncio.ensure_future(self.check(force=True))

    async def check(self, *, force: bool = False) -> ReplicaStatus:
        """Measure the lag (at most every CHECK_EVERY_S unless forced)."""
        async with self._lock:
            now = self._monotonic()
            recent = self._checked_at is not None and now - self._checked_at < CHECK_EVERY_S
            if recent and not force:
                return self.status
            self._checked_at = now
            try:
                if self.backend is None:
                    self.backend = await self._open()
                rows = await self.backend.read(LAG_SQL)
            except Exception as exc:
                self.status = ReplicaStatus(problem=f"down ({error_line(exc, limit=80)})")
                return self.status
            row: dict[str, Any] = rows[0]
            lag = None if row["lag_s"] is None else float(row["lag_s"])
            if not row["standby"]:
                self.status = ReplicaStatus(problem="is not a standby (pg_is_in_recovery() false)")
            elif lag is not None and lag > self.max_lag_s:
                problem = f"lag {lag:.0f}s > {self.max_lag_s:g}s"
                self.status = ReplicaStatus(lag_s=lag, problem=problem)
            else:
                self.status = ReplicaStatus(in_use=True, lag_s=lag)
            return self.status

    def failed(self, exc: BaseException) -> None:
        """A heavy read failed on the standby: the primary answers until the next check."""
        self.status = ReplicaStatus(problem=f"down ({error_line(exc, limit=80)})")
        self._checked_at = self._monotonic()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        backend, self.backend = self.backend, None
        if backend is not None:
            await backend.close()
