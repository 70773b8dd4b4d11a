"""One command registry behind the `:` command line and the `ctrl+p` palette.

Commands are derived, not listed: every described key binding active on the current screen
(so a screen's own actions appear as soon as it binds them, and write actions hidden in
read-only mode stay hidden), every screen in `navigation.SCREENS`, every profile (`:db NAME`),
every theme (`:theme NAME`) and Textual's system commands the console has no form of its own
for (screenshot, maximize). `ConsoleCommandsProvider` is the palette's only provider: one hit
per action.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.theme import BUILTIN_THEMES
from textual.widgets import Input, Static

from pgq_console import navigation
from pgq_console.context import ConsoleContext, context_of
from pgq_console.messages import SwitchProfile
from pgq_console.widgets.screen_commands import HasPaletteCommands

# Textual's system commands the registry has its own form of: `theme NAME` (the console's
# themes, not Textual's), `help` (this screen's keys) and `quit` (the console's quit flow).
_SYSTEM_COVERED = ("Theme", "Keys", "Quit")

# Actions the registry lists in their own, better-named form.
_LISTED_ELSEWHERE = ("jump(", "help", "command_line", "command_palette", "quit", "back", "cursor(")


@dataclass(frozen=True)
class ConsoleCommand:
    name: str  # what `:` takes, e.g. "jobs", "db prod", "pause"
    title: str  # what the palette shows
    help: str
    run: Callable[[], Any]
    key: str = ""


def declared_by_textual(node: DOMNode, binding: Binding) -> bool:
    """A binding Textual's own classes declare (a list's page-up, copy text...): generic moves
    that help sums up in one line and the command registry leaves out."""
    for cls in type(node).__mro__:
        for item in cls.__dict__.get("BINDINGS", ()):
            if not isinstance(item, Binding) or item.action != binding.action:
                continue
            if binding.key in [key.strip() for key in item.key.split(",")]:
                return cls.__module__.startswith("textual.")
    return False


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def console_commands(
    app: App[Any], screen: Screen[Any], context: ConsoleContext | None = None
) -> list[ConsoleCommand]:
    """Every command available on `screen`, in a stable order, names unique.

    `context` is the console's (the app's own when not given): profiles for `:db NAME`.
    Commands reach the app through its actions and messages, never its class.
    """
    context = context or context_of(app) or ConsoleContext()
    commands: list[ConsoleCommand] = []
    seen: set[str] = set()
    # Actions already listed from a binding, per node: a screen's palette command for the
    # same action is the same command (one palette hit per action).
    bound: set[tuple[int, str]] = set()

    def later(action: str, node: DOMNode | None = None) -> Callable[[], Any]:
        return partial(app.call_later, app.run_action, action, node)

    def add(command: ConsoleCommand) -> None:
        if command.name and command.name not in seen:
            seen.add(command.name)
            commands.append(command)

    for spec in navigation.SCREENS:
        add(
            ConsoleCommand(
                spec.mode,
                f"Go to {spec.title}",
                f"switch to the {spec.title} screen",
                later(f"app.jump({spec.key!r})"),
                spec.key,
            )
        )
    for active in screen.active_bindings.values():
        binding = active.binding
        if not active.enabled or not binding.description:
            continue
        if binding.action.startswith(_LISTED_ELSEWHERE):
            continue
        if active.node is not app and declared_by_textual(active.node, binding):
            continue
        bound.add((id(active.node), binding.action))
        add(
            ConsoleCommand(
                slug(binding.description),
                binding.description,
                binding.tooltip or f"same as the {app.get_key_display(binding)} key",
                later(binding.action, active.node),
                app.get_key_display(binding),
            )
        )
    # The overview's live-refresh keys are global commands: `:pause` works on every screen.
    overview = _overview_screen(app)
    if overview is not None and overview is not screen:
        for active in overview.active_bindings.values():
            binding = active.binding
            if active.node is not overview or not binding.description or not active.enabled:
                continue
            add(
                ConsoleCommand(
                    slug(binding.description),
                    f"{binding.description} (overview)",
                    binding.tooltip or "the overview's live refresh",
                    later(binding.action, overview),
                )
            )
    if isinstance(screen, HasPaletteCommands):  # a screen's own palette commands
        for title, help_text, callback in screen.palette_commands():
            action = getattr(callback, "__name__", "").removeprefix("action_")
            owner = getattr(callback, "__self__", None)
            if owner is not None and (id(owner), action) in bound:
                continue  # already listed from its key
            add(ConsoleCommand(slug(title), title, help_text, callback))
    for name, profile in sorted(context.profiles().items()):
        badge = f" [{profile.label}]" if profile.label else ""
        add(
            ConsoleCommand(
                f"db {name}",
                f"Connect to profile {name}{badge}",
                "switch database without restarting",
                partial(app.post_message, SwitchProfile(name)),
            )
        )
    for theme in sorted(app.available_themes):
        if theme in BUILTIN_THEMES and theme != app.theme:
            continue  # Textual's own themes are not the console's (see themes/)
        add(
            ConsoleCommand(
                f"theme {theme}",
                f"Theme: {theme}",
                "change the colours",
                partial(setattr, app, "theme", theme),
            )
        )
    add(ConsoleCommand("help", "Help", "keys of this screen", later("app.help"), "?"))
    # Through the action, so the app's own quit flow (asking, draining consumers) runs.
    add(ConsoleCommand("quit", "Quit", "leave the console", later("app.quit"), "q"))
    # The rest of what Textual offers app-wide (a screenshot, maximizing the focused table):
    # this is the palette's one provider, so they come through the same registry.
    for system in app.get_system_commands(screen):
        if system.title not in _SYSTEM_COVERED:
            add(ConsoleCommand(slug(system.title), system.title, system.help, system.callback))
    return commands


ALIASES = {"q": "quit", "q!": "quit", "exit": "quit", "h": "help", "?": "help", "profile": "db"}


def find_command(commands: list[ConsoleCommand], text: str) -> ConsoleCommand | str:
    """The command `text` names (exact, alias, number key or unique prefix), or why none."""
    words = text.strip().lstrip(":").split()
    if not words:
        return "empty command"
    words[0] = ALIASES.get(words[0].lower(), words[0].lower())
    typed = " ".join(words)
    by_name = {command.name: command for command in commands}
    if typed in by_name:
        return by_name[typed]
    for command in commands:
        if command.key and command.key == typed and command.name in _screen_modes():
            return command
    matches = [command for command in commands if command.name.startswith(typed)]
    if len(matches) == 1:
        return matches[0]
    if words[0] == "db":
        names = [c.name.removeprefix("db ") for c in commands if c.name.startswith("db ")]
        if len(words) == 1:
            return f"profiles: {', '.join(names)}" if names else "no profiles configured"
        return f"unknown profile {words[1]!r}" + (f": choose {', '.join(names)}" if names else "")
    if matches:
        shown = ", ".join(c.name for c in matches[:6])
        return f"ambiguous command {typed!r}: {shown}"
    return f"unknown command {typed!r} (:help lists keys and commands; tab completes)"


def _overview_screen(app: App[Any]) -> Screen[Any] | None:
    try:
        stack = app.get_screen_stack(navigation.SCREENS[0].mode)
    except KeyError:
        return None
    return stack[0] if stack else None


def _screen_modes() -> set[str]:
    return {spec.mode for spec in navigation.SCREENS}


class ConsoleCommandsProvider(Provider):
    """The palette over the same registry as `:`."""

    def _commands(self) -> list[ConsoleCommand]:
        context = context_of(self.app)
        if context is None:
            return []
        return console_commands(self.app, self.screen, context)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(_title(command), command.run, help=escape(command.help))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            for candidate in (command.title, f":{command.name}"):
                score = matcher.match(candidate)
                if score > 0:
                    yield Hit(
                        score,
                        matcher.highlight(_title(command)),
                        command.run,
                        help=escape(command.help),
                    )
                    break


def escape(text: str) -> str:
    """Literal text for the palette, which reads markup (`[PROD]` would vanish as a tag)."""
    return text.replace("[", "\\[")


def _title(command: ConsoleCommand) -> str:
    """Palette text is markup: names from screens and the config file are escaped."""
    key = f"  ({command.key})" if command.key else ""
    return escape(f"{command.title}{key}  :{command.name}")


class CommandInput(Input):
    BINDINGS = [
        Binding("tab", "complete", "Complete", show=False, id="command-line.complete"),
        Binding("up", "history(-1)", "Previous", show=False, id="command-line.previous"),
        Binding("down", "history(1)", "Next", show=False, id="command-line.next"),
    ]

    def __init__(self, history: list[str], names: list[str] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.history = history
        self.names = names or []
        self._position = len(history)
        self._cycle: tuple[str, list[str], int] | None = None  # (typed, matches, index)

    def action_complete(self) -> None:
        """Tab: the first command starting with what was typed; tab again: the next one."""
        if self._cycle is not None and self.value == self._cycle[1][self._cycle[2]]:
            typed, matches, index = self._cycle
            index = (index + 1) % len(matches)
        else:
            typed = self.value.lower()
            matches = [name for name in self.names if name.startswith(typed)]
            if not matches:
                return
            index = 0
        self._cycle = (typed, matches, index)
        self.value = matches[index]
        self.cursor_position = len(self.value)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)


class CommandLine(ModalScreen[None]):
    """`:` — a one-line prompt at the bottom, like k9s and vim; esc leaves it."""

    BINDINGS = [
        Binding("escape", "dismiss_line", "Close", show=False, id="command-line.dismiss-line")
    ]

    def __init__(self, origin: Screen[Any], context: ConsoleContext) -> None:
        super().__init__()
        self.origin = origin
        self.context = context

    def compose(self) -> ComposeResult:
        names = [c.name for c in console_commands(self.app, self.origin, self.context)]
        yield Static(
            Text("enter runs · tab completes · ↑↓ history · esc closes"), id="command-hint"
        )
        yield CommandInput(
            self.context.command_history,
            names,
            placeholder="command, e.g. jobs, db prod, theme pgq-light, quit",
            suggester=SuggestFromList(names, case_sensitive=False),
            id="command-input",
        )

    def on_mount(self) -> None:
        self.query_one(CommandInput).focus()

    def action_dismiss_line(self) -> None:
        self.dismiss()

    @on(Input.Submitted)
    def run_command(self, event: Input.Submitted) -> None:
        app = self.app
        text = event.value.strip()
        self.dismiss()
        if not text:
            return
        history = self.context.command_history
        if not history or history[-1] != text:
            history.append(text)
        found = find_command(console_commands(app, self.origin, self.context), text)
        if isinstance(found, str):
            app.notify(found, severity="warning", markup=False)
            return
        app.call_later(found.run)
