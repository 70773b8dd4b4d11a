"""The console's keyboard model, shared by every screen (the app class builds on it).

`?` help for the current screen, `:` command line, `ctrl+p` palette over the same commands,
`j/k` and `g/G` on whatever list has focus, `esc` back (never quits), `q` quits and asks first
when something registered in `quit_guards` (running consumers) says so. Profile switching
(`:db NAME`) lives here too: it replaces the backend and rebuilds every screen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Unmount
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static

from pgq_console import navigation
from pgq_console.commands import CommandLine, ConsoleCommandsProvider
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import printable

if TYPE_CHECKING:
    from pgq_console.config import Environment, ProfileConfig, Settings, Target
    from pgq_console.core.backend import AnyBackend

QuitGuard = Callable[[], str | None]


@runtime_checkable
class StoppableGuard(Protocol):
    """A quit guard for work the console can stop itself (a running enqueue): after the
    operator confirms, `stop()` ends it and returns one line saying what it had done."""

    def __call__(self) -> str | None: ...

    async def stop(self) -> str | None: ...


# Methods a focused list may offer, in order of preference, for each j/k/g/G move.
_CURSOR_ACTIONS = {
    "down": ("action_cursor_down", "action_scroll_down"),
    "up": ("action_cursor_up", "action_scroll_up"),
    "top": ("action_scroll_top", "action_first", "action_scroll_home"),
    "bottom": ("action_scroll_bottom", "action_last", "action_scroll_end"),
}


class ConfirmQuit(ModalScreen[bool]):
    """Quit anyway? Says why it asks; `y`/enter quits, `n`/esc stays."""

    BINDINGS = [
        Binding("y", "answer(True)", "Quit", show=False),
        Binding("n,escape", "answer(False)", "Stay", show=False),
    ]

    def __init__(
        self, reason: str, *, title: str = "Quit pgq-console?", yes: str = "Quit (y)"
    ) -> None:
        super().__init__()
        self.reason = reason
        self.title_text = title
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            yield Static(Text(self.title_text), id="quit-title")
            yield Static(Text(self.reason), id="quit-reason")
            with Horizontal(id="quit-buttons"):
                yield Button("Stay (n)", id="quit-no")
                yield Button(self.yes, id="quit-yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")


class KeyboardApp(App[None]):
    """Keys, help, commands, quitting and profile switching; PgqConsole adds the wiring."""

    COMMANDS = App.COMMANDS | {ConsoleCommandsProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("colon", "command_line", "Command", key_display=":"),
        Binding("escape", "back", "Back", show=False),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
        Binding("g", "cursor('top')", "Top", show=False),
        Binding("G", "cursor('bottom')", "Bottom", show=False),
    ]

    backend: AnyBackend | None
    read_only: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.settings: Settings | None = None
        self.profile: str | None = None
        # The header badge (e.g. PROD in red); ConnectionLine shows it.
        self.environment: Environment | None = None
        # Consumers (and anything else that must not die silently) register a reason to ask.
        self.quit_guards: list[QuitGuard] = []
        self.command_history: list[str] = []
        # Shown once the app runs (config warnings such as a password readable by others).
        self.startup_warnings: list[str] = []
        self._switching = False
        self._owns_backend = False  # set once a profile switch opened the backend in use

    # -- quitting --------------------------------------------------------------------------

    def confirm_quit_reason(self) -> str | None:
        """Why quitting needs a confirmation (e.g. consumers are running), or None."""
        return self._guard_reason(include_stoppable=True)

    def _guard_reason(self, *, include_stoppable: bool) -> str | None:
        for guard in self.quit_guards:
            if not include_stoppable and isinstance(guard, StoppableGuard):
                continue
            with contextlib.suppress(Exception):  # a broken guard must not trap the operator
                reason = guard()
                if reason:
                    return reason
        # The in-process consumers' supervisor (core/consumers.py), when the app has one.
        active = getattr(getattr(self, "consumers", None), "active", None)
        if callable(active):
            active = active()
        if active:
            return f"{len(active)} in-process consumer(s) running"
        return None

    def _reason_to_stay(self) -> str | None:
        """What keeps a profile switch from happening: guards the console cannot stop itself
        (running consumers)."""
        return self._guard_reason(include_stoppable=False)

    def guarded_work_reason(self) -> str | None:
        """Why work the console can stop itself (`StoppableGuard`) needs a confirmation."""
        for guard in self.quit_guards:
            if isinstance(guard, StoppableGuard):
                with contextlib.suppress(Exception):
                    reason = guard()
                    if reason:
                        return reason
        return None

    async def stop_guarded_work(self) -> list[str]:
        """Stop every `StoppableGuard`'s work; one line per guard on what it had done."""
        reports = []
        for guard in list(self.quit_guards):
            if isinstance(guard, StoppableGuard):
                try:
                    report = await guard.stop()
                except Exception as exc:  # reported, never a reason to stay stuck
                    report = f"could not stop cleanly: {' '.join(str(exc).split())}"
                if report:
                    reports.append(report)
        return reports

    async def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        reason = self.confirm_quit_reason()
        if reason is None:
            self.exit()
            return
        if isinstance(self.screen, ConfirmQuit):
            return

        def answered(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit()

        self.push_screen(ConfirmQuit(reason), answered)

    # -- help, command line, back, cursor ----------------------------------------------------

    def action_help(self) -> None:
        from pgq_console.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.screen))

    def action_command_line(self) -> None:
        if isinstance(self.screen, CommandLine):
            return
        self.push_screen(CommandLine(self.screen))

    def action_cursor(self, where: str) -> None:
        focused = self.focused
        for name in _CURSOR_ACTIONS.get(where, ()):
            method = getattr(focused, name, None)
            if callable(method):
                method()
                return

    def action_jump(self, key: str) -> None:  # PgqConsole implements it
        raise NotImplementedError

    def _dismiss_overlays(self) -> None:
        """Help and the command line make way when the operator jumps elsewhere."""
        from pgq_console.screens.help import HelpScreen

        while len(self.screen_stack) > 1 and isinstance(self.screen, HelpScreen | CommandLine):
            self.pop_screen()

    # -- profiles ----------------------------------------------------------------------------

    def profiles(self) -> Mapping[str, ProfileConfig]:
        return self.settings.profiles if self.settings else {}

    def switch_profile(self, name: str) -> None:
        """`:db NAME`: connect to another profile; the current one stays until that works."""
        if self.settings is None or name not in self.settings.profiles:
            known = ", ".join(sorted(self.profiles())) or "none configured"
            self.notify(
                f"unknown profile {name!r} (profiles: {known})", severity="warning", markup=False
            )
            return
        if self._switching:
            self.notify("already switching profiles", severity="warning")
            return
        reason = self._reason_to_stay()
        if reason:
            self.notify(f"not switching to {name}: {reason}", severity="warning", markup=False)
            return
        stoppable = self.guarded_work_reason()
        if stoppable:
            # Running work the console can stop (an enqueue): ask, stop it, say what it wrote.
            def answered(switch_anyway: bool | None) -> None:
                if switch_anyway and not self._switching:
                    self._switching = True
                    self._stop_work_then_connect(name)

            self.push_screen(
                ConfirmQuit(stoppable, title=f"Switch to {name}?", yes="Stop it and switch (y)"),
                answered,
            )
            return
        self._switching = True
        self.notify(f"connecting to {name}…", markup=False, timeout=3)
        self._connect_profile(name)

    @work(group="profile-stop", exclusive=True, exit_on_error=False)
    async def _stop_work_then_connect(self, name: str) -> None:
        for report in await self.stop_guarded_work():
            self.notify(report, markup=False, timeout=30)
        reason = self._reason_to_stay()  # consumers may have started meanwhile
        if reason:
            self._switching = False
            self.notify(f"not switching to {name}: {reason}", severity="warning", markup=False)
            return
        self.notify(f"connecting to {name}…", markup=False, timeout=3)
        self._connect_profile(name)

    @work(group="profile", exclusive=True, exit_on_error=False)
    async def _connect_profile(self, name: str) -> None:
        from pgq_console.config import open_target

        assert self.settings is not None
        try:
            target = self.settings.target_for(name)
            if target.driver == "psycopg-sync":
                raise ConsoleError(
                    f"profile {name!r} uses the enqueue-only psycopg-sync driver: "
                    f"restart with --profile {name}"
                )
            backend = await open_target(target)
        except ConsoleError as exc:
            self.notify(f"still on {self._where()}: {exc}", severity="error", markup=False)
            self._switching = False
            return
        assert backend.capabilities.can_read  # psycopg-sync profiles are refused above
        try:
            await self._use_backend(backend, target)
        finally:
            self._switching = False
        self.notify(f"connected to {name} ({backend.label})", markup=False)

    def _where(self) -> str:
        return self.profile or (self.backend.label if self.backend else "the current database")

    async def _use_backend(self, backend: AnyBackend, target: Target) -> None:
        """Swap the backend and rebuild every screen on it, staying on the same screen."""
        old = self.backend
        current = self.current_mode
        modes = [spec.mode for spec in navigation.SCREENS]
        self.add_mode("_switching", _SwitchingScreen)
        await self.switch_mode("_switching")
        for mode in modes:
            with contextlib.suppress(Exception):  # a mode never opened has nothing to remove
                await self.remove_mode(mode)
        self.backend = backend
        self.read_only = target.read_only
        self.profile = target.profile
        self.environment = target.environment
        self.show_screens(current if current in modes else modes[0])
        await asyncio.sleep(0)
        await self.remove_mode("_switching")
        self._owns_backend = True
        self._audit_switch(old, backend, target)
        if old is not None and old is not backend:
            # Its opener (the CLI, an embedding program) may close it again: close is idempotent.
            with contextlib.suppress(Exception):
                await old.close()

    def _audit_switch(self, old: AnyBackend | None, new: AnyBackend, target: Target) -> None:
        """A profile switch goes into the audit file: later writes reach another database."""
        from pgq_console.core import audit

        record = audit.AuditRecord(
            action="switch-profile",
            predicate=printable(
                f"from {old.label if old else 'nothing'} to profile {target.profile!r}", limit=300
            ),
            count=0,
            previewed=0,
            job_ids=(),
            database=new.label,
        )
        try:
            audit.append(record)
        except OSError as exc:
            self.notify(
                f"the audit file could not be written: {' '.join(str(exc).split())}",
                severity="warning",
                markup=False,
            )

    def show_screens(self, mode: str) -> None:  # PgqConsole implements it
        raise NotImplementedError

    @on(Unmount)
    async def _close_switched_backend(self) -> None:
        # A backend opened by a profile switch belongs to the app; the first one to its opener.
        if self._owns_backend and self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()


class _SwitchingScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static(Text(" switching profile…"))
