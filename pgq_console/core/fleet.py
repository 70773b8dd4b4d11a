"""The fleet: many PgQueuer installations watched at once, each on one connection of its own.

Every installation has its own task: it connects (with a timeout), LISTENs where the path allows
it, reads the cheap depth tier on every event and timer tick and the log windows and workers on
a slower cadence, and on a lost connection backs off and reconnects on its own. An unreachable or
slow installation therefore never delays the others: nothing waits on another task. When each
round is due is the shared `RefreshLoop`'s (due time, events, jittered backoff, the injected
clock; no reads while the fleet is not seen, `Fleet.visible`).

Each refresh publishes one immutable `FleetRow`; `Fleet.sorted_rows()` orders them by trouble:
down first, then oldest ready job over its threshold, then held (failed) jobs growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pgqueuer.domain import models as pgq_models

from pgq_console.core.backend import ANY_DRIVER_ERRORS, Backend
from pgq_console.core.clock import Clock
from pgq_console.core.errors import SchemaNotReady
from pgq_console.core.nagios import NagiosState
from pgq_console.core.overview import Pacer
from pgq_console.core.refresh_loop import RefreshLoop, Wait, wait_for_event
from pgq_console.core.stats import fetch_depth, fetch_windows
from pgq_console.core.text import error_line
from pgq_console.core.workers import DEFAULT_STALE_AFTER, WorkerMemory, fetch_workers

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
# The log windows (errors/min, held) and the workers' read: heavier, and slower to change.
SLOW_EVERY_S = 10.0
# A busy installation NOTIFYs hundreds of times a second: at most one event refresh this often.
EVENT_GAP_S = 1.0
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 12.0  # the backend's own is statement timeout + grace; this bounds the rest
CLOSE_TIMEOUT_S = 5.0
DEFAULT_MAX_AGE_S = 300.0
HELD_GROWTH_WINDOW_S = 300.0
# A worker between jobs holds none: it counts as alive this long after it last held one.
WORKER_MEMORY = timedelta(minutes=2)
COST_BUDGET = 0.02  # per installation: twenty of them stay near the console's own 5 % mark


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"  # not connected: the connection failed or was lost
    ERROR = "error"  # connected, but its reads fail (no schema, permission denied)


@dataclass(frozen=True)
class Member:
    """One installation of the fleet: how to open its connection and how to show it."""

    key: str  # unique within the fleet (the profile name, or `dsn-N`)
    label: str
    open: Callable[[], Awaitable[Backend]] = field(compare=False, repr=False)
    environment: str | None = None
    color: str | None = None  # the profile's colour for its environment, if it has one
    max_age_s: float = DEFAULT_MAX_AGE_S  # oldest ready job older than this is trouble


@dataclass(frozen=True)
class FleetRow:
    """One installation as last seen. Counts are None until they were read once."""

    key: str
    label: str
    environment: str | None = None
    color: str | None = None
    state: LinkState = LinkState.CONNECTING
    since: datetime | None = None  # down/error since, or up since (the console's clock)
    error: str | None = None
    listening: bool = False
    ready: int | None = None
    oldest_ready_since: datetime | None = None
    oldest_ready_s: float | None = None  # its age at `read_at`
    held: int | None = None
    held_growth: int = 0  # held now minus held up to `HELD_GROWTH_WINDOW_S` ago
    errors_per_min: int | None = None
    workers_alive: int | None = None
    stale_jobs: int | None = None
    db_cost: float = 0.0  # the console's database seconds per second on it
    read_at: datetime | None = None
    max_age_s: float = DEFAULT_MAX_AGE_S

    @property
    def down(self) -> bool:
        return self.state in (LinkState.DOWN, LinkState.ERROR)

    @property
    def over_threshold(self) -> bool:
        return self.oldest_ready_s is not None and self.oldest_ready_s > self.max_age_s

    def trouble(self) -> tuple[int, float, str]:
        """The sort key: down, then oldest ready over its threshold, then held growth."""
        if self.down:
            since = self.since.timestamp() if self.since else 0.0
            return (0, since, self.label)  # down longest first
        if self.over_threshold:
            return (1, -(self.oldest_ready_s or 0.0), self.label)
        if self.held_growth > 0:
            return (2, -float(self.held_growth), self.label)
        if self.state is LinkState.CONNECTING:
            return (3, 0.0, self.label)
        return (4, 0.0, self.label)

    def nagios_state(self) -> NagiosState:
        """Without thresholds of its own: down is CRITICAL, over its threshold WARNING."""
        if self.down or self.state is LinkState.CONNECTING:
            return NagiosState.CRITICAL
        if self.over_threshold:
            return NagiosState.WARNING
        return NagiosState.OK


def by_trouble(rows: Iterable[FleetRow]) -> list[FleetRow]:
    return sorted(rows, key=FleetRow.trouble)


def _closed(backend: Backend) -> bool:
    """Whether the backend's own connection is gone (a failed reconnect leaves it closed)."""
    connection = getattr(backend, "connection", None)
    if connection is None:
        return False
    is_closed = getattr(connection, "is_closed", None)
    if callable(is_closed):  # asyncpg
        return bool(is_closed())
    return bool(getattr(connection, "closed", False) or getattr(connection, "broken", False))


def without_label(message: str, label: str) -> str:
    """An installation's error without its own label: every place showing the error names the
    installation first ("u@h:5432/db down (cannot reach u@h:5432/db: ...)" said it twice). The
    label goes with the word tying it in ("to", "for", "of", ": "); "cannot reach" keeps an
    object."""
    if not label or label not in message:
        return message
    pattern = rf"(?::|\s+(?:to|for|of|in))?\s+{re.escape(label)}(?=$|[\s:;,)])"
    shorter = re.sub(pattern, "", message)
    return re.sub(r"\breach(?=:|$)", "reach the server", shorter) or message


@dataclass
class _Reading:
    ready: int = 0
    oldest_ready_since: datetime | None = None
    held: int | None = None
    errors_per_min: int | None = None
    workers_alive: int | None = None
    stale_jobs: int | None = None


class Watch:
    """One installation's loop: connect, listen, refresh, back off. Run `run()` in a task."""

    def __init__(
        self,
        member: Member,
        clock: Clock,
        publish: Callable[[FleetRow], None],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        listen: bool = True,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        slow_every_s: float = SLOW_EVERY_S,
        visible: Callable[[], bool] = lambda: True,
        wait: Wait = wait_for_event,
        rng: random.Random | None = None,
    ) -> None:
        self.member = member
        self.slow_every_s = slow_every_s
        self.clock = clock
        self._publish_row = publish
        self.interval_s = interval_s
        self.listen = listen
        self.stale_after = stale_after
        self.backend: Backend | None = None
        self.row = FleetRow(
            key=member.key,
            label=member.label,
            environment=member.environment,
            color=member.color,
            max_age_s=member.max_age_s,
        )
        self._reading = _Reading()
        self._slow_due = float("-inf")  # the console's monotonic clock
        self._held_history: deque[tuple[float, int]] = deque()
        self.pacer = Pacer(COST_BUDGET, clock.monotonic())
        self.events_seen = 0
        self._workers = WorkerMemory(remember=WORKER_MEMORY)
        # Every interval (longer when the depth reads cost more than the budget allows), an
        # event at most every EVENT_GAP_S, backoff after a failure, nothing while not seen.
        self.loop = RefreshLoop(
            clock,
            interval_s=interval_s,
            visible=visible,
            wait=wait,
            rng=rng,
            pace=self.pacer.depth_gap,
            event_gap=lambda: max(EVENT_GAP_S, self.pacer.depth_gap()),
        )

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.loop.run(self._round)
        finally:
            await self.close()

    async def _round(self) -> None:
        """Connect when not connected, then read; a failure backs the loop off (`_down`,
        `_failed`)."""
        if self.backend is None and not await self._connect():
            return
        try:
            await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(exc)
            return
        self.loop.succeeded()

    async def read_once(self) -> FleetRow:
        """Connect, read everything once, close: the one-shot modes (`fleet snapshot/check`)."""
        try:
            if await self._connect(listen=False):
                try:
                    await self.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._failed(exc)
        finally:
            await self.close()
        return self.row

    async def close(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.close(), CLOSE_TIMEOUT_S)

    def request_refresh(self) -> None:
        """Read now (`r`), a backoff cut short."""
        self.loop.request_refresh()

    async def _connect(self, *, listen: bool = True) -> bool:
        try:
            backend = await asyncio.wait_for(self.member.open(), CONNECT_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._down(f"no answer within {CONNECT_TIMEOUT_S:g}s while connecting")
            return False
        except SchemaNotReady as exc:  # it answers: in error (no schema), not down
            self._down(error_line(exc), state=LinkState.ERROR)
            return False
        except Exception as exc:
            self._down(error_line(exc))
            return False
        self.backend = backend
        self._slow_due = float("-inf")
        listening = False
        if listen and self.listen and backend.can_listen:
            try:
                await asyncio.wait_for(backend.listen(self._on_event), CONNECT_TIMEOUT_S)
                listening = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polls instead; the row says it does not listen
                log.warning("fleet %s: LISTEN failed: %s", self.member.key, error_line(exc))
        self._replace(listening=listening)
        return True

    def _on_event(self, envelope: pgq_models.AnyEvent) -> None:
        self.events_seen += 1
        if isinstance(envelope.root, pgq_models.TableChangedEvent):
            self.loop.notify()  # a burst is one read, no sooner than EVENT_GAP_S after the last

    def _down(self, message: str, *, state: LinkState = LinkState.DOWN) -> None:
        self.loop.failed(lost=state is LinkState.DOWN)
        since = self.row.since if self.row.down and self.row.since else self.clock.now()
        message = without_label(message, self.member.label)
        self._replace(state=state, since=since, error=message, listening=False)

    async def _failed(self, exc: BaseException) -> None:
        lost = ANY_DRIVER_ERRORS.connection_lost(exc)
        if lost or self.backend is None or _closed(self.backend):
            await self.close()
            self._down(error_line(exc))
            return
        self.loop.failed(lost=False)
        since = self.row.since if self.row.state is LinkState.ERROR and self.row.since else None
        error = without_label(error_line(exc), self.member.label)
        self._replace(state=LinkState.ERROR, since=since or self.clock.now(), error=error)

    # -- reading -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        backend = self.backend
        assert backend is not None
        if self.row.listening and not backend.listener_alive():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.listen(self._on_event), CONNECT_TIMEOUT_S)
            self._replace(listening=backend.listener_alive())
        started = self.clock.monotonic()
        spent = 0.0
        depth = await asyncio.wait_for(fetch_depth(backend), READ_TIMEOUT_S)
        depth_s = self.clock.monotonic() - started
        if depth.server_s is not None:
            depth_s = min(depth_s, depth.server_s)
        self.pacer.depth_took(depth_s)
        spent += depth_s
        reading = self._reading
        reading.ready = sum(d.ready for d in depth.depth.values())
        reading.oldest_ready_since = min(
            (d.oldest_ready_since for d in depth.depth.values() if d.oldest_ready_since),
            default=None,
        )
        now = self.clock.monotonic()
        if now >= self._slow_due:
            spent += await self._read_slow(backend)
            self._slow_due = now + self.slow_every_s
        ended = self.clock.monotonic()
        self.pacer.book(ended, spent)
        self._show(ended)

    async def _read_slow(self, backend: Backend) -> float:
        started = self.clock.monotonic()
        windows = await asyncio.wait_for(fetch_windows(backend), READ_TIMEOUT_S)
        workers = await asyncio.wait_for(
            fetch_workers(backend, self.stale_after, self.clock.now()), READ_TIMEOUT_S
        )
        workers = self._workers.merge(workers, self.clock.now())
        spent = self.clock.monotonic() - started
        if windows.server_s is not None:
            spent = min(spent, windows.server_s + 0.001)
        now = self.clock.now()
        reading = self._reading
        reading.held = sum(w.held for w in windows.windows.values())
        reading.errors_per_min = sum(w.exceptions_1m for w in windows.windows.values())
        reading.workers_alive = sum(1 for w in workers.workers if not w.dead(now, self.stale_after))
        if workers.truncated:  # most are not listed: the read's own count
            reading.workers_alive = workers.holding_total - workers.dead_total
        reading.stale_jobs = workers.stale_total
        mono = self.clock.monotonic()
        history = self._held_history
        history.append((mono, reading.held))
        while len(history) > 1 and history[1][0] <= mono - HELD_GROWTH_WINDOW_S:
            history.popleft()
        return spent

    def _show(self, ended: float) -> None:
        reading = self._reading
        now = self.clock.now()
        oldest_s = None
        if reading.oldest_ready_since is not None:
            oldest_s = max(0.0, (now - reading.oldest_ready_since).total_seconds())
        growth = 0
        if self._held_history and reading.held is not None:
            growth = max(0, reading.held - self._held_history[0][1])
        up_since = self.row.since if self.row.state is LinkState.UP and self.row.since else now
        self._replace(
            state=LinkState.UP,
            since=up_since,
            error=None,
            ready=reading.ready,
            oldest_ready_since=reading.oldest_ready_since,
            oldest_ready_s=oldest_s,
            held=reading.held,
            held_growth=growth,
            errors_per_min=reading.errors_per_min,
            workers_alive=reading.workers_alive,
            stale_jobs=reading.stale_jobs,
            db_cost=self.pacer.cost(ended),
            read_at=now,
        )

    def _replace(self, **changes: Any) -> None:
        from dataclasses import replace

        self.row = replace(self.row, **changes)
        self._publish_row(self.row)


class Fleet:
    """Every installation's `Watch`, each in a task of its own; rows arrive via `on_row`."""

    def __init__(
        self,
        members: Iterable[Member],
        clock: Clock,
        *,
        on_row: Callable[[FleetRow], None] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        listen: bool = True,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        slow_every_s: float = SLOW_EVERY_S,
        visible: Callable[[], bool] = lambda: True,
        wait: Wait = wait_for_event,
    ) -> None:
        self.members = tuple(members)
        keys = [member.key for member in self.members]
        if len(set(keys)) != len(keys):
            raise ValueError(f"fleet members need distinct keys: {keys}")
        self.clock = clock
        self.on_row = on_row
        # Whether anyone sees the rows: the watches do not read while not (their screen sets it
        # and `wake`s them when it is shown again).
        self.visible = visible
        self.watches = {
            member.key: Watch(
                member,
                clock,
                self._publish,
                interval_s=interval_s,
                listen=listen,
                stale_after=stale_after,
                slow_every_s=slow_every_s,
                visible=lambda: self.visible(),
                wait=wait,
            )
            for member in self.members
        }

    def _publish(self, row: FleetRow) -> None:
        if self.on_row is not None:
            self.on_row(row)

    @property
    def rows(self) -> dict[str, FleetRow]:
        return {key: watch.row for key, watch in self.watches.items()}

    def sorted_rows(self) -> list[FleetRow]:
        return by_trouble(self.rows.values())

    def member(self, key: str) -> Member:
        return self.watches[key].member

    def request_refresh(self) -> None:
        """Read every installation now."""
        for watch in self.watches.values():
            watch.request_refresh()

    def wake(self) -> None:
        """Look at the visibility again: shown, a watch whose read is due reads at once."""
        for watch in self.watches.values():
            watch.loop.wake()

    async def run(self) -> None:
        """Watch every installation until cancelled; each is closed on the way out."""
        tasks = [
            asyncio.create_task(watch.run(), name=f"fleet-{key}")
            for key, watch in self.watches.items()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def read_once(self) -> list[FleetRow]:
        """Every installation read once, concurrently; sorted by trouble."""
        rows = await asyncio.gather(*(watch.read_once() for watch in self.watches.values()))
        return by_trouble(rows)


def worst_state(rows: Iterable[FleetRow]) -> NagiosState:
    return max((row.nagios_state() for row in rows), default=NagiosState.UNKNOWN)
