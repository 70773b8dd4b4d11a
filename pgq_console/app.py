"""PgqConsole: the Textual app, and the embedding API that mirrors PgQueuer's classmethods."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import Channel
from textual import work
from textual.binding import Binding
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
from pgq_console.core.consumers import ConsumerSupervisor
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
    ) -> None:
        super().__init__()
        # A coroutine function opens the backend on this app's own event loop (tests, serve).
        self._open_backend = None if isinstance(backend, Backend | SyncPsycopgBackend) else backend
        self.backend: AnyBackend | None = None if self._open_backend else backend  # type: ignore[assignment]
        self.clock = clock or SystemClock()
        self.refresh_interval = refresh_interval
        # Handed to the in-process consumers, as PgQueuer's `resources` are to its jobs.
        self.resources: MutableMapping[str, Any] = resources if resources is not None else {}
        # In-process consumers (issue 4): they outlive screen switches, so the app owns them.
        self.consumers = ConsumerSupervisor(self.resources, self.clock)
        self.listen = listen
        # Write actions hidden and refused; connections the console opens are read-only too.
        self.read_only = read_only
        self._requested_theme = theme or default_theme()
        self._theme_problems: list[str] = []
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
        if isinstance(backend, SyncPsycopgBackend):
            self.push_screen(EnqueueOnlyScreen(backend))
            return
        if backend is None:
            return
        backend.read_only = backend.read_only or self.read_only
        for spec in SCREENS:
            self.add_mode(spec.mode, functools.partial(spec.factory, self))
        self.switch_mode(mode or SCREENS[0].mode)
        if self.listen:
            # Toasts for writes made by other consoles (issue 3's audit channel).
            from pgq_console.screens.action_confirm import watch_audit

            watch_audit(self, backend)

    def switch_mode(self, mode: str) -> AwaitMount:
        # The screen being left keeps its tables up to date but does not paint them: free
        # their render caches instead of carrying every screen's renders for the whole session.
        for table in self.screen.query(LiveDataTable):
            table.release_render_caches()
        return super().switch_mode(mode)

    def action_jump(self, key: str) -> None:
        """Number keys: switch to that screen's mode (screens keep running in the background)."""
        if not isinstance(self.backend, Backend):
            return
        self._dismiss_overlays()
        for spec in SCREENS:
            if spec.key == key:
                self.switch_mode(spec.mode)

    def action_enqueue(self) -> None:
        """`e`: the enqueue form, from any screen."""
        from pgq_console.screens.enqueue_form import open_enqueue_form

        open_enqueue_form(self)

    async def action_quit(self) -> None:
        """`q`: asks first when in-process consumers are running, then drains them."""
        from pgq_console.screens.consumers import quit_console

        quit_console(self)

    async def on_unmount(self) -> None:
        await self.consumers.drain_all()
        self.consumers.close()
        if self._open_backend is not None and self.backend is not None:
            await self.backend.close()

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
