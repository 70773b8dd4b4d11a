"""PgqConsole: the Textual app, and the embedding API that mirrors PgQueuer's classmethods."""

from __future__ import annotations

import asyncio
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
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import AwaitMount

from pgq_console.config import user_theme_dir
from pgq_console.core.backend import (
    AnyBackend,
    AsyncpgBackend,
    AsyncpgPoolBackend,
    Backend,
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.consumers import ConsumerSupervisor, ShutdownReport
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import Installation
from pgq_console.keyboard import KeyboardApp
from pgq_console.navigation import SCREENS
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.themes import (
    VARIABLE_DEFAULTS,
    choose_theme,
    default_theme,
    load_themes,
    theme_dirs,
)
from pgq_console.widgets.live_table import LiveDataTable

# The screens built ahead of their first visit (`PgqConsole._prebuild`), and when.
PREBUILT_MODES = ("jobs", "failures")
PREBUILD_DELAY_S = 0.5
# How long after the last screen is built the startup objects are frozen out of the GC's scans
# (`_freeze_startup_objects`): time for those screens' first reads to land.
GC_SETTLE_S = 1.0
# How long a number key waits for a screen to read fresh rows before showing it anyway.
PREPARE_WAIT_S = 0.15


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


@runtime_checkable
class PreparesToShow(Protocol):
    """A screen that reads fresh rows before it is shown (`PgqConsole._prepare_and_show`)."""

    async def prepare_to_show(self) -> None: ...


if TYPE_CHECKING:
    import asyncpg
    import psycopg


class PgqConsole(KeyboardApp):
    """The console. Build it from a connection you own with the `from_*` classmethods."""

    TITLE = "pgq-console"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("e", "enqueue", "Enqueue", show=False),
        *(Binding(str(n), f"jump('{n}')", f"Screen {n}", show=False) for n in range(1, 10)),
    ]

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
        super().__init__()
        # A coroutine function opens the backend on this app's own event loop (tests, serve).
        self._open_backend = None if isinstance(backend, Backend) else backend
        self.backend: AnyBackend | None = None if self._open_backend else backend  # type: ignore[assignment]
        self.clock = clock or SystemClock()
        self.refresh_interval = refresh_interval
        # Handed to the in-process consumers, as PgQueuer's `resources` are to its jobs.
        self.resources: MutableMapping[str, Any] = resources if resources is not None else {}
        # In-process consumers (issue 4): they outlive screen switches, so the app owns them.
        self.consumers = ConsumerSupervisor(self.resources, self.clock)
        # On SIGHUP/SIGTERM (or any exit) running consumer jobs get this long to finish; the
        # rest go back to the queue (`ConsumerSupervisor.shut_down`).
        self.shutdown_drain_s = shutdown_drain_s
        self.exit_signal: int | None = None
        self.shutdown_report: ShutdownReport | None = None
        self.listen = listen
        # Write actions hidden and refused; connections the console opens are read-only too.
        self.read_only = read_only
        # Started by `serve` for a browser session: no `file` payloads (see serve.py).
        self.served = False
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
        if self._open_backend is not None:
            self.open_backend()
        else:
            self._show_backend()

    @work(exit_on_error=False)
    async def open_backend(self) -> None:
        assert self._open_backend is not None
        try:
            self.backend = await self._open_backend()
        except ConsoleError as exc:
            self.exit(message=str(exc), return_code=2)
            return
        self._show_backend()

    def show_screens(self, mode: str) -> None:
        self._show_backend(mode)

    def _show_backend(self, mode: str | None = None) -> None:
        backend = self.backend
        if backend is not None and not backend.capabilities.can_read:
            self.push_screen(EnqueueOnlyScreen(backend))
            return
        if backend is None:
            return
        backend.read_only = backend.read_only or self.read_only
        for spec in SCREENS:
            self.add_mode(spec.mode, functools.partial(spec.factory, self))
        self.switch_mode(mode or SCREENS[0].mode)
        self.set_timer(PREBUILD_DELAY_S, lambda: self._prebuild([*PREBUILT_MODES]))
        if self.listen:
            # Toasts for writes made by other consoles (issue 3's audit channel).
            from pgq_console.screens.action_confirm import watch_audit

            watch_audit(self, backend)

    def _prebuild(self, modes: list[str]) -> None:
        """Build the next of `modes`' screens off screen, one per tick, while the console idles.

        Composing and mounting a table screen takes longer than the jobs page's 100 ms budget on
        a busy box; built in advance, its key only lays it out and repaints. A built screen
        reads its first page, then waits hidden until it is shown (see `next_refresh`).
        """
        if not self.is_running or self.return_code is not None:
            return  # exiting: a screen built now would change the stacks being closed
        while modes:
            mode = modes.pop(0)
            if mode not in self._modes or self._mode_screen(mode) is not None:
                continue  # removed by a profile switch, or already visited
            # Textual builds a mode's screen on the first switch_mode; this is that step alone.
            self._init_mode(mode)
            self.get_screen_stack(mode)[0].post_message(events.ScreenSuspend())
            self.set_timer(PREBUILD_DELAY_S, lambda: self._prebuild(modes))
            return
        # All built: what is alive now lives as long as the console.
        self.set_timer(GC_SETTLE_S, self._freeze_startup_objects)

    def switch_mode(self, mode: str) -> AwaitMount:
        # The screen being left keeps its tables up to date but does not paint them: free
        # their render caches instead of carrying every screen's renders for the whole session.
        for table in self.screen.query(LiveDataTable):
            table.release_render_caches()
        return super().switch_mode(mode)

    def _freeze_startup_objects(self) -> None:
        """Take the objects alive once the screens are built out of the cyclic GC's scans.

        Modules, widgets and styles are most of the heap and live as long as the console, yet
        every full collection walks them: 60-150 ms pauses at random moments, the slowest
        refreshes and key presses. Frozen, a full collection walks only what came later.
        `on_unmount` unfreezes them (an embedding program keeps collecting what the console
        leaves behind); a profile switch freezes again, after collecting the old screens.
        """
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

    def action_jump(self, key: str) -> None:
        """Number keys: switch to that screen's mode (screens keep running in the background)."""
        if self.backend is None or not self.backend.capabilities.can_read:
            return
        self._dismiss_overlays()
        for spec in SCREENS:
            if spec.key != key:
                continue
            screen = self._mode_screen(spec.mode)
            if spec.mode != self.current_mode and isinstance(screen, PreparesToShow):
                self._prepare_and_show(spec.mode, screen)
            else:
                self.workers.cancel_group(self, "jump")  # a slower jump must not land after
                self.switch_mode(spec.mode)

    @work(group="jump", exclusive=True, exit_on_error=False)
    async def _prepare_and_show(self, mode: str, screen: PreparesToShow) -> None:
        """Let a built screen read fresh rows, then switch to it.

        One paint of current rows instead of a paint of the last visit's rows and another
        when the refresh lands: the jobs page's 100 ms. A slow database only delays the
        switch by `PREPARE_WAIT_S`; the screen's own refresh then takes over.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(screen.prepare_to_show(), PREPARE_WAIT_S)
        self.switch_mode(mode)

    def action_enqueue(self) -> None:
        """`e`: the enqueue form, from any screen."""
        from pgq_console.screens.enqueue_form import open_enqueue_form

        open_enqueue_form(self)

    async def action_quit(self) -> None:
        """`q`, `ctrl+q`, `:quit`: asks first when work is running (an enqueue, consumers);
        a confirmed quit stops an enqueue after its batch in flight and says what it wrote,
        then drains the consumers."""
        from pgq_console.keyboard import ConfirmQuit
        from pgq_console.screens.consumers import quit_console

        reason = self.guarded_work_reason()
        if reason is None:
            quit_console(self)
            return
        if isinstance(self.screen, ConfirmQuit):
            return

        def answered(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self._stop_work_and_quit()

        self.push_screen(ConfirmQuit(reason), answered)

    @work(group="quit-stop", exclusive=True, exit_on_error=False)
    async def _stop_work_and_quit(self) -> None:
        from pgq_console.screens.consumers import quit_console

        reports = await self.stop_guarded_work()
        for report in reports:
            self.notify(report, markup=False, timeout=30)
        if self.consumers.active:
            quit_console(self)  # asks about the consumers, drains them, exits
        else:
            # Printed once the terminal is back: the last word on what was written.
            self.exit(message=Text("\n".join(reports)) if reports else None)

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
