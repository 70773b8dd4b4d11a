"""The form that starts an in-process consumer (`n` on the Consumers screen): handler,
entrypoints (suggested from the queue), its argument, concurrency, batch size, failure policy
and heartbeat timeout; checked before the consumer starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from pgq_console.core.consumers import (
    CONSUMER_FIELDS,
    HANDLER_LABELS,
    ConsumerSpec,
    HandlerKind,
    parse_consumer_form,
)
from pgq_console.core.enqueue import FormErrors, known_entrypoints
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line, printable
from pgq_console.widgets.form_field import (
    FieldRow,
    fix_fields_first,
    invalid_fields,
    show_field_errors,
)
from pgq_console.widgets.suggest import ListItemSuggester

if TYPE_CHECKING:
    from pgq_console.context import ConsoleContext


# Known entrypoint names listed under the field (the rest: "+N more", → completes them).
KNOWN_SHOWN = 6


class ConsumerFormScreen(ModalScreen[int | None]):
    """Start a consumer; dismisses with its id once it runs (None when closed)."""

    # Focused as soon as the form is composed (the default handler takes no argument).
    AUTO_FOCUS = "#entrypoints"

    BINDINGS = [
        Binding("escape", "close", "Close", id="consumer-form.close"),
        Binding("ctrl+s", "start", "Start", id="consumer-form.start"),
    ]

    def __init__(
        self,
        context: ConsoleContext,
        initial: Mapping[str, str] | None = None,
        typed: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._asking_fixes = False  # the status line says "Fix N fields first"
        self.console = context
        self.initial = dict(initial or {})
        # Keys typed between `n` and this form being up (the opener keeps appending).
        self.typed = typed if typed is not None else []
        self.starting = False
        # Entrypoint names the database knows (None: not read yet), and the unknown names the
        # operator was warned about: starting again with exactly those starts anyway.
        self.known: list[str] | None = None
        self.warned_unknown: frozenset[str] = frozenset()

    def compose(self) -> ComposeResult:
        value = self.initial.get
        with VerticalScroll(id="consumer-dialog"):
            yield Label("Start an in-process consumer", id="consumer-form-title")
            yield FieldRow(
                "handler",
                "Handler",
                Select(
                    [(HANDLER_LABELS[kind], kind.value) for kind in HandlerKind],
                    value=value("handler", HandlerKind.NOOP.value),
                    allow_blank=False,
                    compact=True,
                    id="handler",
                ),
            )
            yield FieldRow(
                "argument",
                "Argument",
                Input(value("argument", ""), id="argument", compact=True),
            )
            yield FieldRow(
                "entrypoints",
                "Entrypoints",
                Input(
                    value("entrypoints", ""),
                    placeholder="comma-separated names",
                    id="entrypoints",
                    compact=True,
                ),
            )
            yield FieldRow(
                "concurrency_limit",
                "Concurrency",
                Input(value("concurrency_limit", "0"), id="concurrency_limit", compact=True),
                hint="per-entrypoint limit across all workers; 0 = none",
            )
            yield FieldRow(
                "batch_size",
                "Batch size",
                Input(value("batch_size", "10"), id="batch_size", compact=True),
            )
            yield FieldRow(
                "on_failure",
                "On failure",
                Select(
                    [("delete (log only)", "delete"), ("hold (requeue later)", "hold")],
                    value=value("on_failure", "delete"),
                    allow_blank=False,
                    compact=True,
                    id="on_failure",
                ),
            )
            yield FieldRow(
                "heartbeat_timeout_s",
                "Heartbeat (s)",
                Input(value("heartbeat_timeout_s", "30"), id="heartbeat_timeout_s", compact=True),
            )
            yield Static(Text(""), id="consumer-form-status")
            with Horizontal(id="consumer-form-buttons"):
                yield Button("Start", id="consumer-start", variant="primary", compact=True)
                yield Button("Close", id="consumer-close", compact=True)
            yield Static(Text("enter/ctrl+s start · esc close"), id="consumer-form-keys")

    def on_mount(self) -> None:
        self._show_argument_hint(self._handler())
        # The first text field (Entrypoints for the default no-op handler): what is typed right
        # after `n` lands there, not in the handler list.
        first = self.query_one(
            "#argument" if self._handler().argument_hint else "#entrypoints", Input
        )
        first.focus()
        if self.typed:
            first.insert_text_at_cursor("".join(self.typed))
            self.typed.clear()
        self.load_suggestions()

    def on_key(self, event: events.Key) -> None:
        # Keys typed right after `n` reach the form before its field had focus (an Input stops
        # the keys it takes): they belong in the field that has focus now.
        focused = self.focused
        if isinstance(focused, Input) and event.is_printable and event.character:
            focused.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    @work(group="consumer-suggest", exclusive=True, exit_on_error=False)
    async def load_suggestions(self) -> None:
        if self.console.backend is None:
            return
        names = await known_entrypoints(self.console.backend)
        self.known = names
        entry = self.query_one("#entrypoints", Input)
        entry.suggester = ListItemSuggester(names)
        if entry.value:  # typed before the names came: suggest for it now, not at the next key
            typed, cursor = entry.value, entry.cursor_position
            entry.value = ""
            entry.value = typed
            entry.cursor_position = cursor
        if names and not entry.value:
            shown = ", ".join(printable(name, limit=30) for name in names[:KNOWN_SHOWN])
            more = f" (+{len(names) - KNOWN_SHOWN} more)" if len(names) > KNOWN_SHOWN else ""
            self.query_one("#row-entrypoints", FieldRow).set_hint(
                f"known: {shown}{more}  (→ completes)"
            )

    def _handler(self) -> HandlerKind:
        value = self.query_one("#handler", Select).value
        # Blank for a moment while the Select builds its options (Select.Changed can come then).
        return HandlerKind(value) if isinstance(value, str) else HandlerKind.NOOP

    @on(Select.Changed, "#handler")
    def _handler_changed(self) -> None:
        self._show_argument_hint(self._handler())

    def _show_argument_hint(self, kind: HandlerKind) -> None:
        row = self.query_one("#row-argument", FieldRow)
        row.display = bool(kind.argument_hint)
        row.set_hint(kind.argument_hint)
        factory = kind is HandlerKind.FACTORY
        entry_row = self.query_one("#row-entrypoints", FieldRow)
        for name in ("entrypoints", "concurrency_limit", "on_failure"):
            # A factory registers its own entrypoints with their own options.
            self.query_one(f"#row-{name}", FieldRow).display = not factory
        entry_row.display = not factory

    def raw_values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in CONSUMER_FIELDS:
            widget: Any = self.query_one(f"#{name}")
            values[name] = str(widget.value)
        return values

    def validate_fields(self) -> ConsumerSpec | None:
        rows = list(self.query(FieldRow))
        try:
            spec = parse_consumer_form(self.raw_values())
        except FormErrors as exc:
            show_field_errors(rows, exc.by_field)
            self._status(fix_fields_first(len(exc.by_field)))
            self._asking_fixes = True
            return None
        show_field_errors(rows, {})
        return spec

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#consumer-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#consumer-close")
    def _close_pressed(self) -> None:
        self.action_close()

    def action_start(self) -> None:
        if self.starting:
            return
        spec = self.validate_fields()
        if spec is None:
            return
        self.starting = True
        self._status("Starting…")
        self.start_consumer(spec)

    async def unknown_entrypoints(self, spec: ConsumerSpec) -> frozenset[str]:
        """The spec's entrypoints no job, log row, statistic or schedule has (typos, most
        likely: a consumer on them waits for nothing)."""
        if self.known is None and self.console.backend is not None:
            self.known = await known_entrypoints(self.console.backend)
        known = set(self.known or ())
        return frozenset(name for name in spec.entrypoints if name not in known)

    @work(group="consumer-start", exclusive=True, exit_on_error=False)
    async def start_consumer(self, spec: ConsumerSpec) -> None:
        unknown = await self.unknown_entrypoints(spec)
        if unknown and unknown != self.warned_unknown:
            self.warned_unknown = unknown
            self.starting = False
            names = ", ".join(sorted(printable(name, limit=40) for name in unknown))
            self._status(
                f"⚠ nothing in this database uses {names} yet (a typo?): "
                "start again (enter/ctrl+s) to start anyway"
            )
            return
        try:
            consumer = await self.console.consumers.start(
                self.console.backend, spec, read_only=self.console.read_only
            )
        except ConsoleError as exc:
            self._status(f"✗ {exc}")
            return
        except Exception as exc:  # user code or the server: one line, never a traceback
            self._status(f"✗ {type(exc).__name__}: {one_line(exc)}")
            return
        finally:
            self.starting = False
        self.notify(f"{consumer.name} started: {consumer.spec.label}", markup=False)
        self.dismiss(consumer.id)

    @on(FieldRow.ErrorCleared)
    def _error_cleared(self) -> None:
        # "Fix 1 field first" under a fixed field would send the operator looking for a problem.
        if self._asking_fixes:
            invalid = invalid_fields(self.query(FieldRow))
            self._status(fix_fields_first(invalid) if invalid else "")
            self._asking_fixes = bool(invalid)

    def _status(self, message: str) -> None:
        self._asking_fixes = False  # the line says something else now
        self.query_one("#consumer-form-status", Static).update(Text(printable(message)))

    def action_close(self) -> None:
        self.dismiss(None)
