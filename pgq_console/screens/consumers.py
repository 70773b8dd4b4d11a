"""In-process consumers (mode "consumers", key 7): start, watch, drain and stop them.

The table is fed from `app.consumers` (a `ConsumerSupervisor`, memory only: no database
reads in handlers) every half second and reconciled by row key. The log pane shows the
highlighted consumer's handler output and one line per failed job (its traceback is in the
job's detail) as plain text, never markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Log, Static

from pgq_console.core.consumers import (
    ConsumerSnapshot,
    ConsumerState,
    ConsumerSupervisor,
    consumer_refusal,
)
from pgq_console.core.consumers.runtime import LISTED_IDS, listed_ids
from pgq_console.core.text import printable
from pgq_console.screens.confirm import ConfirmDialog
from pgq_console.screens.consumer_form import ConsumerFormScreen
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.status_line import ConnectionLine

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
        "uptime": Text(
            "–" if snapshot.uptime_s is None else fmt.seconds(snapshot.uptime_s),
            justify="right",
        ),
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
        (
            "Errors",
            "jobs whose handler raised (logged `exception`, held or deleted): one line each "
            "in the log, the traceback in the job's detail",
        ),
        ("Running", "jobs its handlers run now (+N: picked, waiting for a thread)"),
        ("Uptime", "time since it started"),
        ("Entrypoints", "the entrypoints it picks jobs for"),
        (
            "Handler",
            "what runs each job: no-op, sleep, log, fail (sometimes), a Python callable "
            "or a factory",
        ),
        (
            "x",
            "cancel the running jobs it lists (each logged `canceled`) and stop the consumer; "
            "jobs it starts while asking are not cancelled: they run to the end",
        ),
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
        new = "" if self.read_only else "n new · "
        yield Static(
            Text(f" In-process consumers: {new}s stop (drain) · x cancel running jobs"),
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
                Text(" No consumers (read-only).")
                if self.read_only
                else Text(" No consumers yet: press n to start one.")
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

    @property
    def read_only(self) -> bool:
        """No consumer can start: they update and delete jobs (`consumer_refusal`)."""
        backend = self.console.backend
        return self.console.read_only or (backend is not None and backend.read_only)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new_consumer" and self.read_only:
            return False  # not offered (footer, help, `:`, palette), as every write key
        # Keys typed right after `n` reach this screen before the form is up: they are the
        # form's text, not commands (an `s` in an entrypoint name must not stop a consumer).
        return self.typed_for_form is None or action == "new_consumer"

    def on_key(self, event: events.Key) -> None:
        if event.key == "n" and self.typed_for_form is None and self.app.screen is self:
            if self.read_only:  # not offered, but pressed anyway: say why nothing opens
                self.action_new_consumer()
                return
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
        """Ask, showing the running jobs by id; `y` cancels exactly those (never a job picked
        while the question was open) and stops the consumer, as `s` does."""
        consumer_id = self.selected_id()
        consumer = self.supervisor.get(consumer_id) if consumer_id is not None else None
        if consumer is None:
            self.notify("No consumer selected.", markup=False)
            return
        name = consumer.name
        if not consumer.state.active:
            self.notify(f"{name} has already ended.", markup=False)
            return
        shown = tuple(sorted(consumer.running_ids()))
        stopping = consumer.shutdown.is_set()
        if not shown:
            if consumer.cancelling:
                message = f"{name}: its running jobs are already being cancelled."
            elif stopping:
                message = f"{name}: nothing to cancel (no job is running); it is stopping."
            else:
                consumer.request_stop()  # what `x` does after its cancel: as `s`, unasked
                message = (
                    f"{name}: nothing to cancel (no job was running); stopped picking, as s does."
                )
            self.notify(message, markup=False)
            self.refresh_rows()
            return
        count = len(shown)
        if stopping:
            question = f"Cancel the {count} running job(s) of {name}?"
            yes_does = f"y: these {count} job(s) are cancelled"
            no_does = f"n: nothing is cancelled; {name} keeps draining and ends once they finish."
            yes, no = "Cancel these jobs", "Keep draining"
        else:
            question = f"Cancel the {count} running job(s) of {name} and stop it?"
            yes_does = f"y: {name} stops picking and these {count} job(s) are cancelled"
            no_does = f"n: nothing changes: {name} keeps running and picking jobs."
            yes, no = "Cancel them and stop", "Keep running"
        detail = (
            f"{yes_does}: their handlers are interrupted and each job is logged `canceled` "
            "(gone from the queue, never run again). Jobs it starts while this question is "
            f"open are not cancelled: they run to the end, then {name} ends.\n"
            f"{no_does}\n"
            f"Jobs: {listed_ids(shown)}"
        )
        shown_set = set(shown)

        def status() -> str:
            if not consumer.state.active:
                return f"{name} has ended: nothing is left to cancel."
            running = consumer.running_ids()
            still = sum(1 for job_id in running if job_id in shown_set)
            return (
                f"Now: {still} of the {count} still running, {count - still} ended; "
                f"{len(running) - still} started since (not cancelled)."
            )

        def answer(confirmed: bool | None) -> None:
            if not confirmed:
                keeps = "keeps draining" if consumer.shutdown.is_set() else "keeps running"
                self.notify(f"{name}: nothing cancelled; it {keeps}.", markup=False)
                return
            if not consumer.state.active:
                self.notify(f"{name} ended meanwhile: nothing was cancelled.", markup=False)
                return
            outcome = consumer.cancel_running(shown)
            message = f"{name}: " + ("" if stopping else "stopped picking; ") + outcome.describe()
            if len(outcome.cancelled) > LISTED_IDS:
                message += " (every id: its log and the audit file)"
            if outcome.spared:
                message += f"; {name} ends once they finish"
            self.notify(message + ".", markup=False)
            self.refresh_rows()

        self.app.push_screen(
            ConfirmDialog(question, detail, yes=yes, no=no, status=status),
            answer,
        )

    def action_forget(self) -> None:
        consumer_id = self.selected_id()
        if consumer_id is not None:
            self.supervisor.forget(consumer_id)
            self.refresh_rows()
