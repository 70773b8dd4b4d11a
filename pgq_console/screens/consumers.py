"""In-process consumers (mode "consumers", key 7): start, watch, drain and stop them.

The table is fed from `app.consumers` (a `ConsumerSupervisor`, memory only: no database
reads in handlers) every half second and reconciled by row key. The log pane shows the
highlighted consumer's handler output and tracebacks as plain text, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Log, Select, Static

from pgq_console.core.consumers import (
    CONSUMER_FIELDS,
    HANDLER_LABELS,
    ConsumerSnapshot,
    ConsumerSpec,
    ConsumerState,
    ConsumerSupervisor,
    HandlerKind,
    consumer_refusal,
    parse_consumer_form,
)
from pgq_console.core.enqueue import FormErrors, known_entrypoints
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line, printable
from pgq_console.screens.confirm import ConfirmDialog
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.form_field import FieldRow, show_field_errors
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.status_line import ConnectionLine
from pgq_console.widgets.suggest import ListItemSuggester

if TYPE_CHECKING:
    from pgq_console.context import ConsoleContext

REFRESH_S = 0.5
COLUMNS = (
    # What an on-call engineer scans first comes first; names trail (dropped first when narrow).
    ("id", "Id", 4),
    ("state", "State", 12),
    ("done", "Done", 7),
    ("rate", "Jobs/s", 6),
    ("errors", "Errors", 6),
    ("in_flight", "Running", 7),
    ("uptime", "Uptime", 7),
    ("entrypoints", "Entrypoints", 20),
    ("handler", "Handler", 18),
)


def _cells(snapshot: ConsumerSnapshot) -> dict[str, Text]:
    return {
        "id": Text(snapshot.name),
        # Reconnecting: the details (attempt, next try, down since) are in the log's title.
        "state": Text(
            snapshot.state.value
            if snapshot.state is ConsumerState.RECONNECTING
            else snapshot.state_text,
            style="bold" if snapshot.state.active else "",
        ),
        "done": Text(fmt.count(snapshot.done), justify="right"),
        "rate": Text(fmt.rate(snapshot.rate), justify="right"),
        "errors": Text(fmt.count(snapshot.errors), justify="right"),
        # Sync handlers: running on a thread, +waiting for one (picked, not started yet).
        "in_flight": Text(
            f"{snapshot.in_flight}+{snapshot.waiting}"
            if snapshot.waiting
            else str(snapshot.in_flight),
            justify="right",
        ),
        "uptime": Text(fmt.seconds(snapshot.uptime_s), justify="right"),
        "entrypoints": Text(printable(", ".join(snapshot.entrypoints), limit=20)),
        "handler": Text(printable(snapshot.handler, limit=18)),
    }


class ConsumersScreen(Screen[None]):
    BINDINGS = [
        Binding("n", "new_consumer", "New consumer", id="consumers.new-consumer"),
        Binding("s", "stop", "Stop (drain)", id="consumers.stop"),
        Binding("x", "cancel_running", "Cancel running jobs", id="consumers.cancel-running"),
        Binding("d", "forget", "Remove stopped", show=False, id="consumers.forget"),
    ]

    GLOSSARY = (
        ("Id", "the consumer's name in this console (c1, c2, …) and in its log lines"),
        (
            "State",
            "starting, running, reconnecting (N), draining N (s: finishing N running "
            "jobs), cancelling N (x), stopped, failed; ⚠: see its log",
        ),
        ("Done", "jobs whose handler returned; failed, retried and cancelled jobs are not done"),
        ("Jobs/s", "jobs finished per second (done, failed, retried or cancelled), recent seconds"),
        ("Errors", "jobs whose handler raised (logged `exception`, held or deleted)"),
        ("Running", "jobs its handlers run now (+N: picked, waiting for a thread)"),
        ("Uptime", "time since it started"),
        ("Entrypoints", "the entrypoints it picks jobs for"),
        (
            "Handler",
            "what runs each job: no-op, sleep, log, fail (sometimes), a Python callable "
            "or a factory",
        ),
        ("x", "cancel the selected consumer's running jobs (logged `canceled`) and stop it"),
    )

    def __init__(self, context: ConsoleContext) -> None:
        super().__init__()
        self.console = context
        self.supervisor: ConsumerSupervisor = context.consumers
        self.shown_id: int | None = None
        self.shown_lines = 0
        self.shown_title = ""
        # Keys typed right after `n`, until the form is there to take them (`on_key`).
        self.typed_for_form: list[str] | None = None
        self.opening_form: ConsumerFormScreen | None = None

    def compose(self) -> ComposeResult:
        yield ConnectionLine(id="connection-line")
        yield Banner(id="consumers-banner")
        yield Static(
            Text(" In-process consumers: n new · s stop (drain) · x cancel running jobs"),
            id="consumers-title",
        )
        yield LiveTable(COLUMNS, id="consumers-table", zebra_stripes=False)
        yield Static(Text(" Log"), id="consumer-log-title")
        yield Log(id="consumer-log", max_lines=2000)
        yield ConsoleFooter()

    def on_screen_resume(self) -> None:
        self.refresh_rows()

    def on_mount(self) -> None:
        backend = self.console.backend
        if backend is not None:
            self.query_one(ConnectionLine).show(
                backend.label,
                backend.kind.value,
                backend.installation.label,
                read_only=self.console.read_only,
            )
        table = self.query_one("#consumers-table", LiveTable)
        problem = consumer_refusal(backend, self.console.read_only)
        banner = self.query_one("#consumers-banner", Banner)
        if problem:
            banner.show(f"⚠ Consumers are off: {problem}")
        else:
            banner.hide()
        self.refresh_rows()
        self.set_interval(REFRESH_S, self.refresh_rows)
        table.focus()

    def refresh_rows(self) -> None:
        if not self.is_current:
            return  # another screen is showing: no repaint work while consumers run
        table = self.query_one("#consumers-table", LiveTable)
        snapshots = {str(s.id): s for s in self.supervisor.snapshots()}
        table.apply({key: _cells(snapshot) for key, snapshot in snapshots.items()})
        if not snapshots:
            self.shown_title = ""
            self.query_one("#consumer-log-title", Static).update(
                Text(" No consumers yet: press n to start one.")
            )
        self._follow_log()

    def selected_id(self) -> int | None:
        key = self.query_one("#consumers-table", LiveTable).selected_key
        return None if key is None else int(key)

    @on(LiveTable.RowHighlighted, "#consumers-table")
    def _row_highlighted(self) -> None:
        self._follow_log()

    def _follow_log(self) -> None:
        consumer_id = self.selected_id()
        log = self.query_one("#consumer-log", Log)
        consumer = self.supervisor.get(consumer_id) if consumer_id is not None else None
        if consumer is None:
            if self.shown_id is not None:
                log.clear()
                self.shown_id, self.shown_lines = None, 0
            return
        if consumer_id != self.shown_id:
            log.clear()
            self.shown_id, self.shown_lines = consumer_id, 0
        title = f" Log of {consumer.name}: {consumer.spec.label}"
        snapshot = consumer.snapshot()
        if snapshot.state is ConsumerState.RECONNECTING:
            title += f"  ⟳ {snapshot.state_text}"
        elif consumer.reconnects and consumer.state.active:
            title += f"  (connected since {consumer.connected_since:%H:%M:%S})"
        if consumer.error:
            title += f"  ✗ {consumer.error}"
        elif consumer.warning:
            title += f"  ⚠ {consumer.warning}"
        if title != self.shown_title:  # an error or warning can come at any time
            self.shown_title = title
            self.query_one("#consumer-log-title", Static).update(Text(printable(title)))
        lines, self.shown_lines = consumer.new_lines(self.shown_lines)
        if lines:
            # Log renders plain strings (no markup); printable() already escaped controls.
            log.write_lines(lines)

    def action_new_consumer(self) -> None:
        problem = consumer_refusal(self.console.backend, self.console.read_only)
        if problem:
            self.typed_for_form = None
            self.notify(f"Cannot start a consumer: {problem}", severity="warning", markup=False)
            return
        if self.typed_for_form is None:
            self.typed_for_form = []
        form = ConsumerFormScreen(self.console, typed=self.typed_for_form)
        self.opening_form = form
        self.app.push_screen(form, self._started)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys typed right after `n` reach this screen before the form is up: they are the
        # form's text, not commands (an `s` in an entrypoint name must not stop a consumer).
        return self.typed_for_form is None or action == "new_consumer"

    def on_key(self, event: events.Key) -> None:
        if event.key == "n" and self.typed_for_form is None and self.app.screen is self:
            self.typed_for_form = []  # the form takes what follows (`action_new_consumer`)
            return
        typed = self.typed_for_form
        if typed is None or not event.is_printable or not event.character:
            return
        event.stop()
        event.prevent_default()
        form = self.opening_form
        if form is not None and form.is_mounted:
            form.post_message(events.Key(event.key, event.character))
        else:
            typed.append(event.character)

    def _started(self, consumer_id: int | None) -> None:
        self.opening_form = None
        self.typed_for_form = None
        self.refresh_rows()
        if consumer_id is None:
            return
        self.query_one("#consumers-table", LiveTable).move_cursor_to_key(str(consumer_id))

    def action_stop(self) -> None:
        consumer_id = self.selected_id()
        consumer = self.supervisor.get(consumer_id) if consumer_id is not None else None
        if consumer is None:
            self.notify("No consumer selected.", markup=False)
            return
        if not consumer.state.active:
            self.notify(f"{consumer.name} has already ended.", markup=False)
            return
        if consumer.shutdown.is_set():
            self.action_cancel_running()
            return
        consumer.request_stop()
        if consumer.in_flight:
            message = (
                f"{consumer.name}: stopped picking; draining {consumer.in_flight} running "
                "job(s). Press s again to cancel them."
            )
        else:
            message = f"{consumer.name}: stopped picking; no job was running."
        self.notify(message, markup=False)
        self.refresh_rows()

    def action_cancel_running(self) -> None:
        consumer_id = self.selected_id()
        consumer = self.supervisor.get(consumer_id) if consumer_id is not None else None
        if consumer is None or not consumer.state.active:
            return
        running = consumer.in_flight
        if not running:
            consumer.request_stop()
            self.notify(f"{consumer.name}: no job is running; it is stopping.", markup=False)
            return

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                count = consumer.cancel_running()
                self.notify(f"{consumer.name}: cancelling {count} running job(s).", markup=False)
                self.refresh_rows()

        self.app.push_screen(
            ConfirmDialog(
                f"Cancel the {running} running job(s) of {consumer.name}?",
                "Their handlers are interrupted and each job is logged `canceled` (not retried). "
                "Without this the consumer ends once they finish.",
                yes="Cancel running jobs",
                no="Keep draining",
            ),
            answer,
        )

    def action_forget(self) -> None:
        consumer_id = self.selected_id()
        if consumer_id is not None:
            self.supervisor.forget(consumer_id)
            self.refresh_rows()


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
            shown = ", ".join(printable(name, limit=30) for name in names[:6])
            self.query_one("#row-entrypoints", FieldRow).set_hint(f"known: {shown}  (→ completes)")

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
            self._status(f"Fix {len(exc.by_field)} field(s) first")
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

    def _status(self, message: str) -> None:
        self.query_one("#consumer-form-status", Static).update(Text(printable(message)))

    def action_close(self) -> None:
        self.dismiss(None)
