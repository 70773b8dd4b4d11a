"""`?`: the keys of the screen you are on, derived from the live bindings, never hard-coded.

Sections: this screen's own keys (its BINDINGS and the focused widget's), the screens the
number keys jump to (`navigation.SCREENS`), and the keys that work everywhere. Keys hidden
from the footer are listed too, so every key is shown in one of the two places.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from pgq_console import navigation
from pgq_console.commands import console_commands, declared_by_textual
from pgq_console.context import ConsoleContext
from pgq_console.widgets.footer import ConsoleFooter

# Textual's own bindings that are no keys an operator needs to learn here.
_INTERNAL_ACTIONS = {"app.focus_next", "app.focus_previous", "focus_next", "focus_previous"}
# The one-line list hint: (binding ids shown as a pair, what they do), each part shown only
# when the screen under the help has those bindings, with the keys in use (`[keymap]`).
_TABLE_HINT: tuple[tuple[tuple[str, ...], str], ...] = (
    (("cursor.down", "cursor.up"), ""),
    (("live-table.cursor-up", "live-table.cursor-down"), "move"),
    (("cursor.top", "cursor.bottom"), "top/bottom"),
    (("live-table.select",), "open"),
    (("job.mark",), "mark"),
    (("jobs.filter",), "filter"),
    (("back",), "back"),
)


def screen_title(app: App[Any], screen: Screen[Any]) -> str:
    if app.screen_stack and screen is app.screen_stack[0]:  # a mode's own screen
        for spec in navigation.SCREENS:
            if app.current_mode == spec.mode:
                return f"{spec.key} {spec.title}"
    return screen.title or human_name(type(screen).__name__)


def human_name(class_name: str) -> str:
    """ "JobDetailScreen" -> "Job detail": what an operator calls the screen."""
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", class_name.removesuffix("Screen"))
    text = " ".join(words).lower()
    return text[:1].upper() + text[1:]


def _section(node: DOMNode, screen: Screen[Any], app: App[Any]) -> str:
    if node is app:
        return "everywhere"
    if node is screen:
        return "screen"
    return "focused"


def keys_by_id(app: App[Any], screen: Screen[Any]) -> dict[str, list[str]]:
    """The keys in use (as shown) of each binding id active on `screen`."""
    found: dict[str, list[str]] = defaultdict(list)
    for active in screen.active_bindings.values():
        binding_id = active.binding.id
        if binding_id:
            display = app.get_key_display(active.binding).replace("⏎", "enter")
            if display not in found[binding_id]:
                found[binding_id].append(display)
    return found


def list_hint(keys: Mapping[str, list[str]]) -> str:
    """`j/k ↑/↓ move · g/G top/bottom · …` for the list keys the screen has."""
    parts: list[str] = []
    pending = ""
    for ids, does in _TABLE_HINT:
        shown = "/".join(" ".join(keys[i]) for i in ids if keys.get(i))
        if shown:
            pending = f"{pending} {shown}".strip()
        if does and pending:
            parts.append(f"{pending} {does}")
            pending = ""
    return " · ".join(parts)


def grouped_bindings(app: App[Any], screen: Screen[Any]) -> dict[str, list[tuple[str, str, bool]]]:
    """(keys, description, enabled) per section; one row per action, its keys joined."""
    rows: dict[str, dict[tuple[int, str], tuple[list[str], str, bool]]] = defaultdict(dict)
    for active in screen.active_bindings.values():
        binding: Binding = active.binding
        if binding.action in _INTERNAL_ACTIONS or not binding.description:
            continue
        if declared_by_textual(active.node, binding):
            continue  # a list's generic moves: summed up in one line instead
        if binding.action.startswith(("jump(", "cursor(")):
            continue  # listed with their screens / in the one-line list hint
        section = _section(active.node, screen, app)
        key = (id(active.node), f"{binding.action}\x00{binding.description}")
        keys, description, enabled = rows[section].get(key, ([], binding.description, False))
        display = app.get_key_display(binding)
        if display not in keys:
            keys.append(display)
        rows[section][key] = (keys, description, enabled or active.enabled)
    return {
        section: [
            (" ".join(keys), description, enabled) for keys, description, enabled in found.values()
        ]
        for section, found in rows.items()
    }


class HelpScreen(ModalScreen[None]):
    """Keys for the screen it was opened on; `?` or esc closes it."""

    # A modal hides the app's bindings: the ones that make sense here are repeated.
    BINDINGS = [
        Binding("escape,question_mark", "close", "Close", key_display="esc", id="help.close"),
        Binding("q", "app.quit", "Quit", id="quit"),
        *(
            Binding(str(n), f"app.jump('{n}')", f"Screen {n}", show=False, id=f"screen.{n}")
            for n in range(1, 10)
        ),
    ]

    def __init__(self, origin: Screen[Any], context: ConsoleContext | None = None) -> None:
        super().__init__()
        self.origin = origin
        self.context = context

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(self._render_help(), id="help-text")
        yield ConsoleFooter()

    def _render_help(self) -> Table:
        app = self.app
        groups = grouped_bindings(app, self.origin)
        muted = app.theme_variables.get("muted", "")
        key_style = app.theme_variables.get("accent", "")

        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", no_wrap=True, min_width=9)
        table.add_column()

        def heading(text: str) -> None:
            if table.row_count:
                table.add_row("", "")
            table.add_row("", Text(text, style="bold underline"))

        def row(keys: str, description: str, enabled: bool = True) -> None:
            table.add_row(
                Text(keys, style=f"bold {key_style}"),
                Text(description, style="" if enabled else muted),
            )

        heading(f"This screen: {screen_title(app, self.origin)}")
        own = groups.get("screen", []) + groups.get("focused", [])
        for keys, description, enabled in own:
            row(keys, description, enabled)
        if not own:
            row("", "no keys of its own")
        in_use = keys_by_id(app, self.origin)
        hint = list_hint(in_use)
        if hint:
            table.add_row("", Text(hint, style=muted))
        glossary: tuple[tuple[str, str], ...] = getattr(self.origin, "GLOSSARY", ())
        if glossary:
            heading("What the columns and states mean")
            for term, meaning in glossary:
                table.add_row(Text(term, style="bold"), Text(meaning))
        heading("Screens (number keys)")
        screens = Text()
        for spec in navigation.SCREENS:
            here = app.current_mode == spec.mode
            key = " ".join(in_use.get(f"screen.{spec.key}", [])) or "–"
            screens.append(key, style=f"bold {key_style}")
            screens.append(f" {spec.title}", style="reverse" if here else "")
            screens.append("   ")
        table.add_row("", screens)
        heading("Everywhere")
        for keys, description, enabled in groups.get("everywhere", []):
            row(keys, description, enabled)
        if self.context is not None:
            heading("Commands (type : then a name; tab completes; ctrl+p searches)")
            names: list[str] = []
            for command in console_commands(app, self.origin, self.context):
                name = command.name
                if name.startswith(("db ", "theme ")):
                    name = name.split()[0] + " NAME"
                if name not in names:
                    names.append(name)
            table.add_row("", Text("  ".join(f":{name}" for name in names)))
        return table

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss()
