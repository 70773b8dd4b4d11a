"""What screens and commands read from the running console, handed to them when they are built.

The app owns one `ConsoleContext` and passes it on (constructor injection): screens and
commands never import the app class or reach into it. They talk back to the app with messages
(`messages.py`) and Textual actions (`app.quit`, `app.jump('2')`). A profile switch replaces
the backend here and rebuilds the screens, so a screen may keep what it read at construction.

No Textual here: this module sits below the UI layers (the import-linter contracts in
pyproject.toml).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.text import one_line

if TYPE_CHECKING:
    from pgq_console.config import Environment, ProfileConfig, Settings
    from pgq_console.core.audit import AuditAnnouncement
    from pgq_console.core.backend import Backend
    from pgq_console.core.consumers import ConsumerSupervisor
    from pgq_console.core.overview.early import EarlyRefresher
    from pgq_console.core.workers import WorkerRow

QuitGuard = Callable[[], str | None]
HEARD_AUDIT_KEPT = 200  # the newest announcements of other consoles the bundle lists


@runtime_checkable
class StoppableGuard(Protocol):
    """A quit guard for work the console can stop itself (a running enqueue): after the
    operator confirms, `stop()` ends it and returns one line saying what it had done."""

    def __call__(self) -> str | None: ...

    async def stop(self) -> str | None: ...


@dataclass(frozen=True)
class QuitQuestion:
    """What quitting asks of a `DrainingGuard`, and what it says while the work drains."""

    question: str
    detail: str
    yes: str
    draining: str


@runtime_checkable
class DrainingGuard(Protocol):
    """A quit guard for work that ends by itself once asked to (running consumers: they stop
    picking and their running jobs finish). Quitting asks `quit_question()`, then awaits
    `drain()` before the exit; a profile switch cannot wait for it, so its reason keeps the
    console where it is."""

    def __call__(self) -> str | None: ...

    def quit_question(self) -> QuitQuestion: ...

    async def drain(self) -> None: ...


class QuitGuards(list[QuitGuard]):
    """Reasons to ask before quitting (or switching profile). Anything that must not die
    silently registers here: a running enqueue (a `StoppableGuard`), the in-process consumers
    (a `DrainingGuard`, registered as their supervisor is created). A list, so registering is
    `append` and leaving is `remove`."""

    def reason(self, *, include_stoppable: bool = True) -> str | None:
        """The first reason to ask, or None."""
        return self._first_reason(lambda guard: include_stoppable or not _stoppable(guard))

    def plain_reason(self) -> str | None:
        """The first reason of a guard that is neither stoppable nor draining: quitting asks
        once with it."""
        return self._first_reason(
            lambda guard: not _stoppable(guard) and not isinstance(guard, DrainingGuard)
        )

    def draining(self) -> list[DrainingGuard]:
        """The draining guards that have a reason now, in registration order."""
        return [
            guard
            for guard in list(self)
            if isinstance(guard, DrainingGuard) and _reason_of(guard) is not None
        ]

    def _first_reason(self, wanted: Callable[[QuitGuard], bool]) -> str | None:
        for guard in list(self):
            if wanted(guard):
                reason = _reason_of(guard)
                if reason:
                    return reason
        return None

    def stoppable_reason(self) -> str | None:
        """Why work the console can stop itself needs a confirmation, or None."""
        return self._first_reason(_stoppable)

    async def stop_stoppable(self) -> list[str]:
        """Stop every `StoppableGuard`'s work; one line per guard on what it had done."""
        reports = []
        for guard in list(self):
            if isinstance(guard, StoppableGuard):
                try:
                    report = await guard.stop()
                except Exception as exc:  # reported, never a reason to stay stuck
                    report = f"could not stop cleanly: {one_line(exc)}"
                if report:
                    reports.append(report)
        return reports


def _stoppable(guard: QuitGuard) -> bool:
    return isinstance(guard, StoppableGuard)


def _reason_of(guard: QuitGuard) -> str | None:
    with contextlib.suppress(Exception):  # a broken guard must not trap the operator
        return guard() or None
    return None


@dataclass(eq=False)
class ConsumersGuard:
    """The in-process consumers' quit guard: running ones are drained before the exit (their
    running jobs finish and are recorded), and keep a profile switch from happening."""

    supervisor: ConsumerSupervisor

    def __call__(self) -> str | None:
        active = self.supervisor.active
        return f"{len(active)} in-process consumer(s) running" if active else None

    def quit_question(self) -> QuitQuestion:
        active = self.supervisor.active
        running = sum(consumer.in_flight for consumer in active)
        return QuitQuestion(
            question=f"{len(active)} consumer(s) are running ({running} job(s) in flight). Quit?",
            detail=(
                "They stop picking, the running jobs finish and are recorded, then the console "
                "exits."
            ),
            yes="Drain and quit",
            draining=(
                f"Draining {len(active)} consumer(s): {running} running job(s) finish first…"
            ),
        )

    async def drain(self) -> None:
        await self.supervisor.drain_all()


@dataclass(eq=False)
class ConsoleContext:
    """The console's shared state: the open backend, the clock, the in-process consumers,
    the settings and what they decided (read-only, profile, badge), and the quit guards."""

    backend: Backend | None = None
    clock: Clock = field(default_factory=SystemClock)
    # Handed to the in-process consumers, as PgQueuer's `resources` are to its jobs.
    resources: MutableMapping[str, Any] = field(default_factory=dict)
    # Given to the consumers' supervisor when it is created (`consumers`); None: its default.
    consumer_reconnect_attempts: int | None = None
    refresh_interval: float = 2.0
    listen: bool = True
    # Write actions hidden and refused; connections the console opens are read-only too.
    read_only: bool = False
    # Started by `serve` for a browser session: no `file` payloads (see serve.py).
    served: bool = False
    settings: Settings | None = None
    profile: str | None = None
    # The header badge (e.g. PROD in red); ConnectionLine shows it.
    environment: Environment | None = None
    quit_guards: QuitGuards = field(default_factory=QuitGuards)
    command_history: list[str] = field(default_factory=list)
    # The workers the overview remembers (idle ones too): the incident bundle lists them.
    workers_seen: Callable[[], Sequence[WorkerRow]] = field(default=lambda: ())
    # Writes other consoles announced while this one listened (the incident bundle lists them).
    heard_audit: collections.deque[AuditAnnouncement] = field(
        default_factory=lambda: collections.deque(maxlen=HEARD_AUDIT_KEPT)
    )

    # The overview's refresher the command line started as the backend opened, for the
    # overview screen to adopt (core/overview/early.py).
    early_refresher: EarlyRefresher | None = field(default=None, repr=False)

    _consumers: ConsumerSupervisor | None = field(default=None, init=False, repr=False)

    @property
    def consumers(self) -> ConsumerSupervisor:
        """The in-process consumers. They outlive screen switches, so the console (not a
        screen) owns them; created on first use (their modules are not imported before the
        console's first paint)."""
        if self._consumers is None:
            from pgq_console.core.consumers import ConsumerSupervisor

            self._consumers = ConsumerSupervisor(self.resources, self.clock)
            self._consumers.max_reconnect_attempts = self.consumer_reconnect_attempts
            self.quit_guards.append(ConsumersGuard(self._consumers))
        return self._consumers

    def take_early_refresher(self) -> EarlyRefresher | None:
        """The early refresher, once, if it reads this context's backend with its settings."""
        early, self.early_refresher = self.early_refresher, None
        if early is None or self.backend is None:
            return None
        if not early.fits(self.backend, interval_s=self.refresh_interval, listen=self.listen):
            early.task.cancel()
            return None
        return early

    @property
    def has_consumers(self) -> bool:
        """Whether the consumers' supervisor exists (else no consumer ever ran)."""
        return self._consumers is not None

    def profiles(self) -> Mapping[str, ProfileConfig]:
        return self.settings.profiles if self.settings else {}

    def quit_reason(self) -> str | None:
        """Why quitting needs a confirmation (a running enqueue, running consumers), or None."""
        return self.quit_guards.reason()

    def reason_to_stay(self) -> str | None:
        """What keeps a profile switch from happening: what the console cannot stop itself
        (running consumers)."""
        return self.quit_guards.reason(include_stoppable=False)


@runtime_checkable
class HasContext(Protocol):
    """An app that hands out a `ConsoleContext` (the palette provider, built by Textual,
    finds the context through it)."""

    context: ConsoleContext


def context_of(app: object) -> ConsoleContext | None:
    return app.context if isinstance(app, HasContext) else None
