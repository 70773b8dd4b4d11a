"""PgqConsole: the Textual app, and the embedding API that mirrors PgQueuer's classmethods.

The wiring only: the screens as modes and building them ahead live in build_ahead.py, `I` (the
incident bundle) in console_bundle.py, the fleet's keys in fleet_mode.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
import signal
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import Channel
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode

from pgq_console.build_ahead import ScreenModesApp
from pgq_console.config import user_theme_dir
from pgq_console.console_bundle import FLEET_BUNDLE, IncidentBundles
from pgq_console.context import ConsoleContext
from pgq_console.core.backend import (
    AsyncpgBackend,
    AsyncpgPoolBackend,
    Backend,
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.consumers.capture import LoggingState
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import Installation
from pgq_console.fleet_mode import FleetModeApp
from pgq_console.keymap import binding_ids, keymap_conflict, keymap_problem
from pgq_console.themes import (
    VARIABLE_DEFAULTS,
    choose_theme,
    default_theme,
    load_themes,
    theme_dirs,
)


def console_binding_classes() -> list[type]:
    """The console's app, screen and widget classes that may declare bindings."""
    # Screens are imported where they are first opened; every one is needed here.
    import pgq_console.screens

    for module in pkgutil.iter_modules(pgq_console.screens.__path__, "pgq_console.screens."):
        importlib.import_module(module.name)
    classes: list[type] = []
    pending: list[type] = [DOMNode]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("pgq_console."):
            classes.append(cls)
    return classes


def console_keymap_problem(keymap: Mapping[str, str], app: type, where: str) -> str | None:
    """What is wrong with `keymap` for the console app `app` (an unknown id, a key no
    terminal sends, a key taken from another binding of the same class), in one line."""
    classes = console_binding_classes()
    others = [cls for cls in classes if not issubclass(cls, App)]
    return keymap_problem(keymap, binding_ids(classes), where) or keymap_conflict(
        keymap, [app, *others], where
    )


def console_binding_ids() -> set[str]:
    """Every binding id of the console's app, screens and widgets: what `[keymap]` may name."""
    return binding_ids(console_binding_classes())


if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg
    import psycopg

    from pgq_console.core.consumers import ShutdownReport


class PgqConsole(FleetModeApp, ScreenModesApp):
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

    def __init__(
        self,
        backend: Backend | Callable[[], Awaitable[Backend]],
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
        opener = None if isinstance(backend, Backend) else backend
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
        self.shutdown_report: ShutdownReport | None = None
        self.bundles = IncidentBundles(self, self.context)
        self._requested_theme = theme or default_theme()
        self._theme_problems: list[str] = []
        # Consumers' log capture changes the root logger; the exit puts everything back.
        self._logging = LoggingState.capture()
        themes, self._theme_problems = load_themes(theme_dirs(user_theme_dir()))
        for loaded in themes:
            self.register_theme(loaded)
        # A broken or unknown theme: the default theme, and one message once mounted.
        theme_name, self._theme_problem = choose_theme(
            self._requested_theme, self.available_themes, self._theme_problems
        )
        self.style_from(theme_name)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def on_mount(self) -> None:
        problem = self._theme_problem
        for warning in [*self.startup_warnings, *([problem] if problem else [])]:
            self.notify(warning, severity="warning", markup=False, timeout=10)
        if not self._apply_keymap():
            return
        if self.fleet_host is not None:
            self.show_fleet()
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
        problem = console_keymap_problem(keymap, type(self), str(settings.config_path))
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

    def _show_backend(self, mode: str | None = None) -> None:
        backend = self.backend
        if self._exiting():
            return
        if backend is not None and not backend.capabilities.can_read:
            from pgq_console.screens.enqueue_only import EnqueueOnlyScreen

            self.push_screen(EnqueueOnlyScreen(backend, self.clock))
            return
        if backend is None:
            return
        backend.read_only = backend.read_only or self.read_only
        self.add_screen_modes(mode)
        if self.listen:
            # Toasts for writes made by other consoles (the audit channel).
            from pgq_console.screens.action_confirm import watch_audit

            watch_audit(self, self.context, backend)

    def action_bundle(self) -> None:
        """`I`: write an incident bundle (Markdown + JSON) to the state directory."""
        from pgq_console.fleet_console import on_fleet_screen

        if on_fleet_screen(self.fleet_host, self.current_mode):
            # The backend is the installation opened last, not the row under the cursor.
            self.notify(FLEET_BUNDLE, severity="warning", markup=False)
            return
        self.bundles.write()

    @property
    def bundle_path(self) -> Path | None:
        """The last incident bundle written (`I`), its Markdown file."""
        return self.bundles.last_path

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
            if self.context.has_consumers:
                self.consumers.hurry()
            return
        self.exit_signal = signum
        running = 0
        if self.context.has_consumers:  # else no consumer ever ran
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
        if not self.context.has_consumers:
            return  # no consumer ever ran
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
        self.stop_startup_work()
        try:
            await self._shut_down_consumers()
            if self.context.has_consumers:
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
