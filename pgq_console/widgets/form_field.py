"""One labelled form field with its validation message right under it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static


class FieldRow(Vertical):
    """`label  [widget…]` on one line; the error (hidden when none) on the next."""

    class ErrorCleared(Message):
        """An edit took the field's error away (the form's "Fix N fields first" may be stale)."""

    def __init__(self, name: str, label: str, *widgets: Widget, hint: str = "") -> None:
        super().__init__(id=f"row-{name}", classes="field-row")
        self.field_name = name
        self._label = label
        self._widgets = widgets
        self._hint = hint
        self._invalid_values: tuple[str, ...] | None = None  # what the shown error is about

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-line"):
            yield Label(self._label, classes="field-label")
            yield from self._widgets
        yield Static(Text(self._hint), classes="field-hint", id=f"hint-{self.field_name}")
        yield Static("", classes="field-error", id=f"error-{self.field_name}")

    def on_mount(self) -> None:
        self.query_one(f"#error-{self.field_name}", Static).display = False
        self.query_one(f"#hint-{self.field_name}", Static).display = bool(self._hint)

    def set_error(self, message: str | None) -> None:
        error = self.query_one(f"#error-{self.field_name}", Static)
        self.set_class(bool(message), "-invalid")
        # Messages can quote what the operator typed: plain Text, never markup.
        error.update(Text(f"✗ {message}") if message else Text(""))
        error.display = bool(message)
        self._invalid_values = self._values() if message else None

    def _values(self) -> tuple[str, ...]:
        return tuple(str(getattr(widget, "value", "")) for widget in self._widgets)

    @on(Input.Changed)
    @on(Select.Changed)
    def _edited(self) -> None:
        """The error spoke of the value before this edit: gone until the form is checked
        again (a stale '✗ name at least one entrypoint' under a typed name misleads)."""
        # Compared by value: a change message of the last key typed before the check may come
        # after it, and must not take away the error it was checked with.
        if self._invalid_values is not None and self._values() != self._invalid_values:
            self.set_error(None)
            self.post_message(self.ErrorCleared())

    def set_hint(self, hint: str) -> None:
        static = self.query_one(f"#hint-{self.field_name}", Static)
        static.update(Text(hint))
        static.display = bool(hint)


def fix_fields_first(count: int) -> str:
    """The form's line while `count` fields show an error."""
    return f"Fix {count} field{'s' if count != 1 else ''} first"


def invalid_fields(rows: Iterable[FieldRow]) -> int:
    return sum(1 for row in rows if row.has_class("-invalid"))


def show_field_errors(rows: Iterable[FieldRow], errors: Mapping[str, str]) -> None:
    for row in rows:
        row.set_error(errors.get(row.field_name))
