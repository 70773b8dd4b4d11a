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
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.events import DescendantFocus, Key, Unmount
from textual.screen import Screen
from textual.widgets import Input, Static

from pgq_console import navigation
from pgq_console.commands import CommandLine, ConsoleCommandsProvider
from pgq_console.context import ConsoleContext, QuitGuards
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line, printable
from pgq_console.messages import SwitchProfile
from pgq_console.screens.confirm import ConfirmDialog
from pgq_console.screens.help import HelpScreen
from pgq_console.widgets.status_line import ConnectionLine

if TYPE_CHECKING:
    from pgq_console.config import Environment, ProfileConfig, Settings, Target
    from pgq_console.core.backend import Backend
    from pgq_console.core.clock import Clock
    from pgq_console.core.consumers import ConsumerSupervisor

# Methods a focused list may offer, in order of preference, for each j/k/g/G move.
_CURSOR_ACTIONS = {
    "down": ("action_cursor_down", "action_scroll_down"),
    "up": ("action_cursor_up", "action_scroll_up"),
    "top": ("action_scroll_top", "action_first", "action_scroll_home"),
    "bottom": ("action_scroll_bottom", "action_last", "action_scroll_end"),
}

QUIT_QUESTION = "Quit pgq-console?"


class KeyboardApp(App[None]):
    """Keys, help, commands, quitting and profile switching, over a `ConsoleContext`.

    A subclass shows the screens: `show_screens(mode)` builds them on the context's backend,
    `action_jump(key)` switches to one.
    """

    # The one palette provider: Textual's system commands come through its registry.
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {
        ConsoleCommandsProvider
    }
    # Every binding has an id: `[keymap]` in the config file remaps keys by these ids.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("colon", "command_line", "Command", key_display=":", id="command-line"),
        Binding("escape", "back", "Back", show=False, id="back"),
        Binding("j", "cursor('down')", "Down", show=False, id="cursor.down"),
        Binding("k", "cursor('up')", "Up", show=False, id="cursor.up"),
        Binding("g", "cursor('top')", "Top", show=False, id="cursor.top"),
        Binding("G", "cursor('bottom')", "Bottom", show=False, id="cursor.bottom"),
    ]

    def __init__(self, context: ConsoleContext | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.context = context or ConsoleContext()
        # Shown once the app runs (config warnings such as a password readable by others).
        self.startup_warnings: list[str] = []
        self._switching = False
        # What a quit under way is waiting for (draining consumers, stopping an enqueue).
        self._quitting_because = ""
        self._owns_backend = False  # set once a profile switch opened the backend in use

    def on_key(self, event: Key) -> None:
        # A key that opens a field (`/`, `:`) moves the focus, but keys typed in the same burst
        # (pasted, or typed fast over SSH) were already sent to the widget that had it; they
        # bubble up here. A printable one belongs in the field that has the focus now: without
        # this it ran as a command (`/ep:x` in one burst opened the enqueue form with its `e`).
        # An input stops the printable keys it gets itself, so only such early keys get here.
        focused = self.focused
        if isinstance(focused, Input) and event.is_printable and event.character:
            focused.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    @on(ConnectionLine.EnvironmentWanted)
    def _hand_environment(self, message: ConnectionLine.EnvironmentWanted) -> None:
        message.line.set_environment(self.context.environment)

    # -- the context, under the names an embedding program and the CLI have always used ----

    @property
    def backend(self) -> Backend | None:
        return self.context.backend

    @backend.setter
    def backend(self, backend: Backend | None) -> None:
        self.context.backend = backend

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def consumers(self) -> ConsumerSupervisor:
        return self.context.consumers

    @property
    def read_only(self) -> bool:
        return self.context.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self.context.read_only = value

    @property
    def served(self) -> bool:
        return self.context.served

    @served.setter
    def served(self, value: bool) -> None:
        self.context.served = value

    @property
    def refresh_interval(self) -> float:
        return self.context.refresh_interval

    @refresh_interval.setter
    def refresh_interval(self, value: float) -> None:
        self.context.refresh_interval = value

    @property
    def listen(self) -> bool:
        return self.context.listen

    @listen.setter
    def listen(self, value: bool) -> None:
        self.context.listen = value

    @property
    def settings(self) -> Settings | None:
        return self.context.settings

    @settings.setter
    def settings(self, value: Settings | None) -> None:
        self.context.settings = value

    @property
    def profile(self) -> str | None:
        return self.context.profile

    @profile.setter
    def profile(self, value: str | None) -> None:
        self.context.profile = value

    @property
    def environment(self) -> Environment | None:
        return self.context.environment

    @environment.setter
    def environment(self, value: Environment | None) -> None:
        self.context.environment = value

    @property
    def quit_guards(self) -> QuitGuards:
        """Reasons to ask before quitting; anything that must not die silently registers."""
        return self.context.quit_guards

    @property
    def command_history(self) -> list[str]:
        return self.context.command_history

    # -- quitting: one flow, whatever asked for it (q, ctrl+q, :quit, the palette) -----------

    async def action_quit(self) -> None:
        """Asks first when a registered guard says so. A running enqueue (a `StoppableGuard`)
        is stopped after its batch in flight and says what it wrote; plain guards ask once;
        a `DrainingGuard` (running consumers) asks its own question and is drained (their
        running jobs finish) before the exit."""
        if any(worker.group == "quit" and worker.is_running for worker in self.workers):
            if self._quitting_because:  # draining or stopping: say so, a key is not lost
                self.notify(f"Already quitting: {self._quitting_because}", markup=False)
            return  # already asking (the dialog has the keys), or draining
        self._quit_flow()

    @work(group="quit", exit_on_error=False)
    async def _quit_flow(self) -> None:
        context = self.context
        reports: list[str] = []
        stoppable = context.quit_guards.stoppable_reason()
        if stoppable:
            if not await self._ask(QUIT_QUESTION, stoppable, yes="Quit", no="Stay"):
                return
            self._quitting_because = "stopping the enqueue after its batch in flight"
            reports = await context.quit_guards.stop_stoppable()
            self._quitting_because = ""
            for report in reports:
                self.notify(report, markup=False, timeout=30)
        other = context.quit_guards.plain_reason()
        if other and not await self._ask(QUIT_QUESTION, other, yes="Quit", no="Stay"):
            return
        for guard in context.quit_guards.draining():
            asked = guard.quit_question()
            if not await self._ask(asked.question, asked.detail, yes=asked.yes, no="Stay"):
                return
            self.notify(asked.draining, markup=False, timeout=30)
            self._quitting_because = asked.draining
            try:
                await guard.drain()
            finally:
                self._quitting_because = ""
        # Printed once the terminal is back: the last word on what was written.
        self.exit(message=Text("\n".join(reports)) if reports else None)

    async def _ask(self, question: str, detail: str, *, yes: str, no: str) -> bool:
        dialog = ConfirmDialog(question, detail, yes=yes, no=no)
        answer: bool = await self.push_screen_wait(dialog)
        return answer

    # -- help, command line, back, cursor ----------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.screen, self.context))

    def action_command_line(self) -> None:
        if isinstance(self.screen, CommandLine):
            return
        self.push_screen(CommandLine(self.screen, self.context))

    def action_cursor(self, where: str) -> None:
        focused = self.focused
        for name in _CURSOR_ACTIONS.get(where, ()):
            method = getattr(focused, name, None)
            if callable(method):
                method()
                return

    def action_jump(self, key: str) -> None:
        """Number keys: switch to that screen (a subclass shows screens; here, nothing)."""

    def _dismiss_overlays(self) -> None:
        """Help and the command line make way when the operator jumps elsewhere."""
        while len(self.screen_stack) > 1 and isinstance(self.screen, HelpScreen | CommandLine):
            self.pop_screen()

    # -- profiles ----------------------------------------------------------------------------

    def profiles(self) -> Mapping[str, ProfileConfig]:
        return self.context.profiles()

    # -- swapping the backend: one at a time (a profile switch, a fleet installation opened) --

    @property
    def switching(self) -> bool:
        """Whether a backend swap (a profile switch, an installation opened) is under way."""
        return self._switching

    def begin_switch(self) -> bool:
        """Claim the one backend swap at a time; False when another is under way. The
        claimer calls `end_switch` when it is done, however it ends."""
        if self._switching:
            return False
        self._switching = True
        return True

    def end_switch(self) -> None:
        self._switching = False

    @on(DescendantFocus)
    def _steady_cursor(self, event: DescendantFocus) -> None:
        # A blinking cursor repaints its field twice a second for as long as it has the focus:
        # bytes over a thin SSH link for nothing, and screenshots that depend on when they
        # were taken. A steady cursor shows the same.
        if isinstance(event.widget, Input):
            event.widget.cursor_blink = False

    @on(SwitchProfile)
    def _switch_profile_asked(self, message: SwitchProfile) -> None:
        self.switch_profile(message.name)

    def switch_profile(self, name: str) -> None:
        """`:db NAME`: connect to another profile; the current one stays until that works."""
        if self.settings is None or name not in self.settings.profiles:
            known = ", ".join(sorted(self.profiles())) or "none configured"
            self.notify(
                f"unknown profile {name!r} (profiles: {known})", severity="warning", markup=False
            )
            return
        if self.switching:
            self.notify("already switching profiles", severity="warning")
            return
        reason = self.context.reason_to_stay()
        if reason:
            self.notify(f"not switching to {name}: {reason}", severity="warning", markup=False)
            return
        stoppable = self.quit_guards.stoppable_reason()
        if stoppable:
            # Running work the console can stop (an enqueue): ask, stop it, say what it wrote.
            def answered(switch_anyway: bool | None) -> None:
                if switch_anyway and self.begin_switch():
                    self._stop_work_then_connect(name)

            self.push_screen(
                ConfirmDialog(f"Switch to {name}?", stoppable, yes="Stop it and switch", no="Stay"),
                answered,
            )
            return
        self.begin_switch()
        self.notify(f"connecting to {name}…", markup=False, timeout=3)
        self._connect_profile(name)

    @work(group="profile-stop", exclusive=True, exit_on_error=False)
    async def _stop_work_then_connect(self, name: str) -> None:
        for report in await self.quit_guards.stop_stoppable():
            self.notify(report, markup=False, timeout=30)
        reason = self.context.reason_to_stay()  # consumers may have started meanwhile
        if reason:
            self.end_switch()
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
            self.end_switch()
            return
        assert backend.capabilities.can_read  # psycopg-sync profiles are refused above
        try:
            await self.use_backend(backend, target)
        finally:
            self.end_switch()
        self.notify(f"connected to {name} ({backend.label})", markup=False)

    def _where(self) -> str:
        return self.profile or (self.backend.label if self.backend else "the current database")

    async def use_backend(self, backend: Backend, target: Target) -> None:
        """Swap the backend and rebuild every screen on it, staying on the same screen (the
        caller holds the swap: `begin_switch`). The swap is audited; the old backend closed."""
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

    def _audit_switch(self, old: Backend | None, new: Backend, target: Target) -> None:
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
                f"the audit file could not be written: {one_line(exc)}",
                severity="warning",
                markup=False,
            )

    def show_screens(self, mode: str) -> None:
        """Build the screens on the context's backend and show `mode` (a subclass does)."""

    @on(Unmount)
    async def _close_switched_backend(self) -> None:
        # A backend opened by a profile switch belongs to the app; the first one to its opener.
        if self._owns_backend and self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()


class _SwitchingScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static(Text(" switching profile…"))
