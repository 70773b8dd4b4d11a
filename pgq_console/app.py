"""PgqConsole: the Textual app, and the embedding API that mirrors PgQueuer's classmethods."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import Channel
from rich.console import RenderableType
from textual import on, work
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import AwaitMount

from pgq_console.config import user_theme_dir
from pgq_console.context import ConsoleContext
from pgq_console.core.backend import (
    AnyBackend,
    AsyncpgBackend,
    AsyncpgPoolBackend,
    Backend,
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.consumers import ShutdownReport
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import Installation
from pgq_console.keyboard import KeyboardApp
from pgq_console.keymap import binding_ids, keymap_problem
from pgq_console.messages import OpenJobs
from pgq_console.navigation import SCREENS
from pgq_console.screens.charts import ChartsScreen
from pgq_console.screens.consumers import ConsumersScreen
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.screens.failures import FailuresScreen
from pgq_console.screens.health import HealthScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.screens.schedules import SchedulesScreen
from pgq_console.screens.workers import WorkersScreen
from pgq_console.themes import (
    VARIABLE_DEFAULTS,
    choose_theme,
    default_theme,
    load_themes,
    theme_dirs,
)
from pgq_console.widgets.live_table import LiveTable

# The screens built ahead of their first visit (`PgqConsole._build_ahead`), one per delay.
BUILT_AHEAD_MODES = ("jobs", "failures")
BUILD_AHEAD_DELAY_S = 0.5
# How long after the last screen is built the startup objects are frozen out of the GC's scans
# (`_freeze_startup_objects`): time for those screens' first reads to land.
GC_SETTLE_S = 1.0
# How long a number key waits for a screen to read fresh rows before showing it anyway.
PREPARE_WAIT_S = 0.15
# How long an exit waits for a screen still being built to finish mounting.
EXIT_MOUNT_WAIT_S = 2.0


def _async_backend(context: ConsoleContext) -> Backend:
    assert isinstance(context.backend, Backend)
    return context.backend


# How each mode's screen is built from the context, on its first visit (`navigation.SCREENS`
# lists the modes, their keys and titles).
SCREEN_FACTORIES: dict[str, Callable[[ConsoleContext], Screen[None]]] = {
    "overview": lambda c: OverviewScreen(
        _async_backend(c), c.clock, interval_s=c.refresh_interval, listen=c.listen
    ),
    "jobs": lambda c: JobsScreen(_async_backend(c), c.clock, interval_s=c.refresh_interval),
    "failures": lambda c: FailuresScreen(_async_backend(c), c.clock, interval_s=c.refresh_interval),
    "workers": lambda c: WorkersScreen(_async_backend(c), c.clock),
    "schedules": lambda c: SchedulesScreen(_async_backend(c), c.clock),
    "database": lambda c: HealthScreen(_async_backend(c), c.clock),
    "consumers": lambda c: ConsumersScreen(c),
    "charts": lambda c: ChartsScreen(_async_backend(c), c.clock),
}


@dataclass(frozen=True)
class LoggingState:
    """Level, handlers and propagation of the loggers the console may change while it runs."""

    loggers: tuple[tuple[logging.Logger, int, tuple[logging.Handler, ...], bool], ...]

    NAMES: ClassVar[tuple[str, ...]] = ("", "pgqueuer", "asyncio")

    @classmethod
    def capture(cls) -> LoggingState:
        return cls(
            tuple(
                (logger, logger.level, tuple(logger.handlers), logger.propagate)
                for logger in map(logging.getLogger, cls.NAMES)
            )
        )

    def restore(self) -> None:
        for logger, level, handlers, propagate in self.loggers:
            logger.setLevel(level)
            logger.propagate = propagate
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)


def console_binding_ids() -> set[str]:
    """Every binding id of the console's app, screens and widgets: what `[keymap]` may name."""
    # Screens opened from others are imported where they open; all are needed here.
    import pgq_console.screens.action_confirm
    import pgq_console.screens.enqueue_form
    import pgq_console.screens.job_detail  # noqa: F401

    classes: list[type] = []
    pending: list[type] = [DOMNode]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("pgq_console."):
            classes.append(cls)
    return binding_ids(classes)


@runtime_checkable
class PreparesToShow(Protocol):
    """A screen that reads fresh rows before it is shown (`PgqConsole._prepare_and_show`):
    also before its first visit, built but not mounted yet, when it keeps the rows for its
    first paint."""

    async def prepare_to_show(self) -> None: ...


if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg
    import psycopg

    from pgq_console.core.audit import AuditAnnouncement
    from pgq_console.fleet_console import FleetHost


class PgqConsole(KeyboardApp):
    """The console. Build it from a connection you own with the `from_*` classmethods."""

    TITLE = "pgq-console"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("e", "enqueue", "Enqueue", show=False, id="enqueue"),
        *(
            Binding(str(n), f"jump('{n}')", f"Screen {n}", show=False, id=f"screen.{n}")
            for n in range(1, 10)
        ),
        Binding("I", "bundle", "Incident bundle", show=False, id="bundle"),
        Binding("0", "fleet", "Fleet", show=False, id="fleet"),
    ]
    # Set by `pgq-console fleet` before the app runs (see fleet_console.py).
    fleet_host: FleetHost | None = None

    def __init__(
        self,
        backend: AnyBackend | Callable[[], Awaitable[AnyBackend]],
        *,
        clock: Clock | None = None,
        refresh_interval: float = 2.0,
        resources: MutableMapping[str, Any] | None = None,
        theme: str | None = None,  # None: pgq-dark, or pgq-monochrome under NO_COLOR
        listen: bool = True,
        read_only: bool = False,
        shutdown_drain_s: float = 5.0,
    ) -> None:
        # A coroutine function opens the backend on this app's own event loop (tests, serve).
        opener = None if isinstance(backend, Backend | SyncPsycopgBackend) else backend
        super().__init__(
            ConsoleContext(
                backend=None if opener else backend,  # type: ignore[arg-type]
                clock=clock or SystemClock(),
                resources=resources if resources is not None else {},
                refresh_interval=refresh_interval,
                listen=listen,
                read_only=read_only,
            )
        )
        self._open_backend = opener
        # On SIGHUP/SIGTERM (or any exit) running consumer jobs get this long to finish; the
        # rest go back to the queue (`ConsumerSupervisor.shut_down`).
        self.shutdown_drain_s = shutdown_drain_s
        self.exit_signal: int | None = None
        # Writes other consoles announced while this one listened (for the incident bundle).
        self.heard_audit: collections.deque[AuditAnnouncement] = collections.deque(maxlen=200)
        self.shutdown_report: ShutdownReport | None = None
        # Screens built for a first visit, waiting for their mode's first switch.
        self._built: dict[str, Screen[None]] = {}
        self._startup_timer: Timer | None = None  # building ahead, then the GC freeze
        self._exit_deferred = False
        self._switches: list[AwaitMount] = []  # the latest mode switches' mounts
        self.bundle_path: Path | None = None  # the last incident bundle written (`I`)
        self._requested_theme = theme or default_theme()
        self._theme_problems: list[str] = []
        self._gc_frozen = False
        # Consumers' log capture changes the root logger; the exit puts everything back.
        self._logging = LoggingState.capture()
        themes, self._theme_problems = load_themes(theme_dirs(user_theme_dir()))
        for loaded in themes:
            self.register_theme(loaded)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def on_mount(self) -> None:
        # A broken or unknown theme: one message, and the default theme.
        self.theme, problem = choose_theme(
            self._requested_theme, self.available_themes, self._theme_problems
        )
        for warning in [*self.startup_warnings, *([problem] if problem else [])]:
            self.notify(warning, severity="warning", markup=False, timeout=10)
        if not self._apply_keymap():
            return
        if self.fleet_host is not None:
            from pgq_console.fleet_console import show_fleet

            show_fleet(self)
        elif self._open_backend is not None:
            self.open_backend()
        else:
            self._show_backend()

    def _apply_keymap(self) -> bool:
        """`[keymap]` from the config file; an unknown binding id ends the console with one
        line (False), as any other configuration error does."""
        settings = self.settings
        keymap = settings.file.keymap if settings is not None else {}
        if not keymap:
            return True
        assert settings is not None
        problem = keymap_problem(keymap, console_binding_ids(), str(settings.config_path))
        if problem:
            self.exit(message=problem, return_code=2)
            return False
        self.set_keymap(keymap)
        return True

    @work(exit_on_error=False)
    async def open_backend(self) -> None:
        assert self._open_backend is not None
        try:
            self.backend = await self._open_backend()
        except ConsoleError as exc:
            self.exit(message=str(exc), return_code=2)
            return
        self._show_backend()

    @property
    def resources(self) -> MutableMapping[str, Any]:
        """Handed to the in-process consumers, as PgQueuer's `resources` are to its jobs."""
        return self.context.resources

    def show_screens(self, mode: str) -> None:
        self._show_backend(mode)

    def _exiting(self) -> bool:
        """The app is exiting: no screen may be built or switched to (Textual is closing the
        screen stacks, and a new one would change them under it)."""
        return not self.is_running or self.return_code is not None

    def _show_backend(self, mode: str | None = None) -> None:
        backend = self.backend
        if self._exiting():
            return
        if backend is not None and not backend.capabilities.can_read:
            self.push_screen(EnqueueOnlyScreen(backend))
            return
        if backend is None:
            return
        backend.read_only = backend.read_only or self.read_only
        self._built.clear()
        for spec in SCREENS:
            self.add_mode(spec.mode, functools.partial(self._build_screen, spec.mode))
        self.switch_mode(mode or SCREENS[0].mode)
        if self._startup_timer is None:
            # Only modes this console has (an embedding program may list fewer screens).
            ahead = [mode for mode in BUILT_AHEAD_MODES if any(s.mode == mode for s in SCREENS)]
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(ahead)
            )
        if self.listen:
            # Toasts for writes made by other consoles (the audit channel).
            from pgq_console.screens.action_confirm import watch_audit

            watch_audit(self, backend)

    def exit(
        self, result: None = None, return_code: int = 0, message: RenderableType | None = None
    ) -> None:
        """Exit, once the screens being built have mounted (a key may have just switched to a
        new one). Textual closes the screens as it exits: one still composing would mount none
        of its widgets and fail in its own `on_mount`, a crash in place of a clean exit."""
        if self._startup_timer is not None:
            self._startup_timer.stop()  # nothing is built while the console closes
        if self.is_running and self._mounting() and not self._exit_deferred:
            self._exit_deferred = True
            self.run_worker(
                self._exit_when_mounted(result, return_code, message),
                group="exit",
                exit_on_error=False,
            )
            return
        super().exit(result, return_code, message)

    def _mounting(self) -> list[Screen[Any]]:
        """The screens built (a mode switched to) but not mounted yet."""
        screens: list[Screen[Any]] = []
        for spec in SCREENS:
            with contextlib.suppress(KeyError):
                screens += [s for s in self.get_screen_stack(spec.mode) if not s.is_mounted]
        return screens

    async def _exit_when_mounted(
        self, result: None, return_code: int, message: RenderableType | None
    ) -> None:
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(EXIT_MOUNT_WAIT_S):
                    for mounting in list(self._switches):
                        await mounting
        finally:
            super().exit(result, return_code, message)

    def _build_ahead(self, modes: list[str]) -> None:
        """Build the next of `modes`' screens off screen, one per delay, while the console idles.

        Composing and mounting a table screen takes longer than the jobs page's 100 ms budget
        on a busy box; built in advance, its key only lays it out and repaints. Built with two
        public mode switches in one go (there and straight back, no paint between): the screen
        mounts hidden, reads its first page, then waits until it is shown (`next_refresh`).
        The timer is stopped by `exit`, so none of this runs while the console closes.
        """
        if self._exiting():
            return
        if len(self.screen_stack) > 1:
            # Help, the command line or a dialog is open: switching modes away and back under it
            # would take its focus (keys typed then are lost). Build once it is closed.
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(modes)
            )
            return
        while modes and not self._switching:  # a profile switch rebuilds every screen anyway
            mode = modes.pop(0)
            current = self.current_mode
            if mode == current or self._mode_screen(mode) is not None:
                continue  # visited already
            self._switch(mode, release=False)
            self._switch(current, release=False)
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(modes)
            )
            return
        # All built: what is alive now lives as long as the console.
        self._startup_timer = self.set_timer(GC_SETTLE_S, self._freeze_startup_objects)

    def _build_screen(self, mode: str) -> Screen[None]:
        """A mode's screen, on its first visit: the one a number key built and let read its
        first rows (`action_jump`), else a new one."""
        return self._built.pop(mode, None) or SCREEN_FACTORIES[mode](self.context)

    def switch_mode(self, mode: str) -> AwaitMount:
        return self._switch(mode, release=True)

    def _switch(self, mode: str, *, release: bool) -> AwaitMount:
        # The screen being left keeps its tables up to date but does not paint them: free
        # their render caches instead of carrying every screen's renders for the whole session.
        if release:
            for table in self.screen.query(LiveTable):
                table.release_render_caches()
        mounting = super().switch_mode(mode)
        # A mode's first switch mounts its screen: an exit meanwhile waits for it (`exit`).
        self._switches = [*self._switches[-len(SCREENS) :], mounting]
        return mounting

    def _freeze_startup_objects(self) -> None:
        """Take the objects alive once the screens are built out of the cyclic GC's scans.

        Modules, widgets and styles are most of the heap and live as long as the console, yet
        every full collection walks them: 60-150 ms pauses at random moments, the slowest
        refreshes and key presses. Frozen, a full collection walks only what came later.
        `on_unmount` unfreezes them (an embedding program keeps collecting what the console
        leaves behind).
        """
        if self._exiting():
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._gc_frozen = True

    @property
    def settled(self) -> bool:
        """Startup work is over: screens built ahead, startup objects frozen."""
        return self._gc_frozen

    def _mode_screen(self, mode: str) -> Screen[Any] | None:
        """The top screen of a mode already built, or None."""
        try:
            stack = self.get_screen_stack(mode)
        except KeyError:
            return None
        return stack[-1] if stack else None

    def _screen_for(self, mode: str) -> Screen[Any]:
        """A mode's screen: the one shown before, or one built for its first visit."""
        screen = self._mode_screen(mode) or self._built.get(mode)
        if screen is None:
            screen = self._built[mode] = SCREEN_FACTORIES[mode](self.context)
        return screen

    @on(OpenJobs)
    def _open_jobs(self, message: OpenJobs) -> None:
        """Enter on the overview: the Jobs screen filtered to one entrypoint, built for this
        visit if need be (the filter is set before its first read)."""
        jobs = self._screen_for("jobs")
        if isinstance(jobs, JobsScreen):
            jobs.filter_entrypoint(message.entrypoint)
        self.action_jump(next(spec.key for spec in SCREENS if spec.mode == "jobs"))

    def action_jump(self, key: str) -> None:
        """Number keys: switch to that screen's mode (screens keep running in the background).

        A screen is built on its first visit; one that can (`PreparesToShow`) reads fresh rows
        before it is shown, on every visit, so its first paint has current rows.
        """
        if self.backend is None or not self.backend.capabilities.can_read:
            return
        self._dismiss_overlays()
        for spec in SCREENS:
            if spec.key != key:
                continue
            screen = self._screen_for(spec.mode) if spec.mode != self.current_mode else None
            if isinstance(screen, PreparesToShow):
                self._prepare_and_show(spec.mode, screen)
            else:
                self.workers.cancel_group(self, "jump")  # a slower jump must not land after
                self.switch_mode(spec.mode)

    @work(group="jump", exclusive=True, exit_on_error=False)
    async def _prepare_and_show(self, mode: str, screen: PreparesToShow) -> None:
        """Let a screen read fresh rows, then switch to it.

        One paint of current rows instead of a paint of the last visit's rows (or an empty
        table) and another when the refresh lands: the jobs page's 100 ms. A slow database only
        delays the switch by `PREPARE_WAIT_S`; the screen's own refresh then takes over.
        """
        # Slow or failing, the read only delays the switch: the screen's refresh reports it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(screen.prepare_to_show(), PREPARE_WAIT_S)
        if self._exiting():
            return  # exiting while the rows were read: nothing more to show
        self.switch_mode(mode)

    def action_bundle(self) -> None:
        """`I`: write an incident bundle (Markdown + JSON) to the state directory."""
        if not isinstance(self.backend, Backend):
            self.notify("no database to bundle yet", severity="warning", markup=False)
            return
        self.notify("writing the incident bundle…", markup=False, timeout=3)
        self.write_bundle(self.backend)

    @work(group="bundle", exclusive=True, exit_on_error=False)
    async def write_bundle(self, backend: Backend) -> None:
        from pgq_console.core import bundle
        from pgq_console.incident import known_secrets

        settings = getattr(self, "settings", None)
        secrets = known_secrets(settings) if settings is not None else ()
        try:
            made = await bundle.collect(backend, secrets=secrets, heard=tuple(self.heard_audit))
            written = await asyncio.to_thread(bundle.write, made, secrets=secrets)
        except Exception as exc:
            self.notify(
                f"incident bundle failed: {' '.join(str(exc).split())[:200]}",
                severity="error",
                markup=False,
            )
            return
        self.bundle_path = written.markdown
        self.notify(f"incident bundle written: {written.markdown}", markup=False, timeout=15)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from pgq_console.fleet_console import fleet_hides

        if fleet_hides(self, action):
            return False
        return super().check_action(action, parameters)

    def action_fleet(self) -> None:
        """`0`: the fleet screen, in a console started on several installations."""
        from pgq_console.fleet_console import to_fleet

        self._dismiss_overlays()
        to_fleet(self)

    async def action_back(self) -> None:
        """esc: back to the fleet from an installation's screen, else Textual's back."""
        from pgq_console.fleet_console import back_to_fleet

        if not back_to_fleet(self):
            await super().action_back()

    def action_enqueue(self) -> None:
        """`e`: the enqueue form, from any screen."""
        from pgq_console.screens.enqueue_form import open_enqueue_form

        open_enqueue_form(self, self.context)

    def stop_on_signal(self, signum: int) -> None:
        """SIGHUP/SIGTERM (the CLI routes both here; an embedding program may too).

        Consumers stop picking at once; running jobs get `shutdown_drain_s` to finish, the rest
        go back to the queue; then the console exits with code 128 + signum. A second signal
        cuts the drain short.
        """
        if self.exit_signal is not None:
            self.consumers.hurry()
            return
        self.exit_signal = signum
        self.consumers.stop_picking()
        running = sum(consumer.in_flight for consumer in self.consumers.active)
        if running:
            self.notify(
                f"{signal.Signals(signum).name}: consumers stopped picking; {running} running "
                f"job(s) get {self.shutdown_drain_s:g} s to finish, the rest go back to the "
                "queue. Exiting…",
                severity="warning",
                markup=False,
                timeout=self.shutdown_drain_s + 10,
            )
        self.run_worker(self._shut_down_and_exit(signum), group="signal", exit_on_error=False)

    async def _shut_down_and_exit(self, signum: int) -> None:
        await self._shut_down_consumers()
        self.exit(return_code=128 + signum)

    async def _shut_down_consumers(self) -> None:
        """However the console ends, no running job is lost or logged `canceled`."""
        reason = (
            f"{signal.Signals(self.exit_signal).name} received"
            if self.exit_signal is not None
            else "console exiting"
        )
        report = await self.consumers.shut_down(self.shutdown_drain_s, reason)
        if report.running or report.released or report.unsettled:
            self.shutdown_report = report

    async def on_unmount(self) -> None:
        """Leave what the console was handed as it found it (README, Embedding): consumers
        drained, the audit listener's connection closed, LISTEN and the console's listener
        callbacks removed, logging as it was; a connection the console opened itself closed."""
        if self._startup_timer is not None:
            self._startup_timer.stop()
        if self._gc_frozen:
            gc.unfreeze()
        try:
            await self._shut_down_consumers()
            self.consumers.close()
            await self._stop_workers("audit-toasts")
            backend = self.backend
            if backend is not None and self._open_backend is not None:
                await backend.close()
            elif backend is not None:
                await backend.stop_listening()
        finally:
            self._logging.restore()

    async def _stop_workers(self, group: str) -> None:
        """Cancel a group's workers and wait until their clean-up (`finally`) has run."""
        workers = [worker for worker in self.workers if worker.group == group]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(worker.wait(), 10)

    # -- embedding API: the seed's PgQueuer classmethods, with the same defaults --------------

    @classmethod
    def from_asyncpg_connection(
        cls,
        connection: asyncpg.Connection,
        channel: str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        **options: Any,
    ) -> PgqConsole:
        installation = _installation(channel)
        label = options.pop("label", None) or _asyncpg_label(connection)
        return cls(AsyncpgBackend(connection, installation, label), resources=resources, **options)

    @classmethod
    def from_asyncpg_pool(
        cls,
        pool: asyncpg.Pool,
        channel: str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        **options: Any,
    ) -> PgqConsole:
        installation = _installation(channel)
        label = options.pop("label", None) or "asyncpg pool"
        return cls(AsyncpgPoolBackend(pool, installation, label), resources=resources, **options)

    @classmethod
    def from_psycopg_connection(
        cls,
        connection: psycopg.AsyncConnection[Any],
        channel: str | None = None,
        resources: MutableMapping[str, Any] | None = None,
        **options: Any,
    ) -> PgqConsole:
        installation = _installation(channel)
        label = options.pop("label", None) or _psycopg_label(connection)
        return cls(PsycopgBackend(connection, installation, label), resources=resources, **options)

    @classmethod
    def from_sync_psycopg_connection(
        cls,
        connection: psycopg.Connection[Any],
        channel: str | None = None,
        **options: Any,
    ) -> PgqConsole:
        installation = _installation(channel)
        label = options.pop("label", None) or _psycopg_label(connection)
        return cls(SyncPsycopgBackend(connection, installation, label), **options)


def _installation(channel: str | None) -> Installation:
    # The seed's default is Channel(DBSettings().channel): PGQUEUER_* settings apply.
    return Installation(DBSettings(channel=Channel(channel))) if channel else Installation()


def _asyncpg_label(connection: asyncpg.Connection) -> str:
    # asyncpg keeps the target only in private attributes; a label is worth that risk.
    address = getattr(connection, "_addr", "?")
    where = f"[{address}]" if isinstance(address, str) else f"{address[0]}:{address[1]}"
    params = getattr(connection, "_params", None)
    return f"{getattr(params, 'user', '?')}@{where}/{getattr(params, 'database', '?')}"


def _psycopg_label(connection: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> str:
    info = connection.info
    host = info.host
    where = f"[{host}]" if host.startswith("/") else host
    return f"{info.user}@{where}:{info.port}/{info.dbname}"
