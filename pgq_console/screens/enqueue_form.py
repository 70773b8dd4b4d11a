"""The enqueue form (`e`, from any screen): test jobs through pgqueuer's batch enqueue.

Validation is `core.enqueue.parse_enqueue_form` (pydantic), shown next to each field. Enqueueing
runs in a worker in batches, one statement each, with a progress bar; esc cancels after the
batch in flight. The new ids are shown and ctrl+o opens the first job's detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from pgq_console.context import QuitGuards
from pgq_console.core import audit
from pgq_console.core.backend import Backend
from pgq_console.core.enqueue import (
    DEFAULT_BATCH_SIZE,
    CancelToken,
    EnqueueProgress,
    Enqueuer,
    EnqueueRequest,
    EnqueueResult,
    FormErrors,
    PayloadKind,
    audit_record,
    parse_enqueue_form,
    read_known_entrypoints,
    read_payload_file,
    refusal,
)
from pgq_console.core.refresh_loop import describe_refresh_error
from pgq_console.core.text import one_line, printable
from pgq_console.widgets.form_field import (
    FieldRow,
    fix_fields_first,
    invalid_fields,
    show_field_errors,
)

if TYPE_CHECKING:
    from pgq_console.context import ConsoleContext
    from pgq_console.core.clock import Clock

PAYLOAD_HINTS = {
    PayloadKind.JSON: 'JSON, e.g. {"user": 42}; empty = no payload',
    PayloadKind.TEXT: "plain text, stored as UTF-8; empty = no payload",
    PayloadKind.HEX: "hex bytes, e.g. 0xdeadbeef or de ad be ef",
    PayloadKind.FILE: "path of a file whose bytes are the payload (up to 64 MiB)",
}
INPUT_FIELDS = ("entrypoint", "payload", "priority", "execute_after", "dedupe_key", "headers")
SUGGESTIONS_SHOWN = 6


class EnqueueFormScreen(ModalScreen[None]):
    """Modal form; `initial` pre-fills fields by name (e.g. "enqueue a copy" of a job)."""

    BINDINGS = [
        Binding("escape", "close_or_cancel", "Close / cancel", id="enqueue-form.close-or-cancel"),
        Binding("ctrl+s", "submit", "Enqueue", id="enqueue-form.submit"),
        Binding("ctrl+o", "open_first_job", "Open first job", id="enqueue-form.open-first-job"),
    ]

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        *,
        read_only: bool = False,
        initial: Mapping[str, str] | None = None,
        batch_size: int | None = None,
        allow_file: bool = True,
        quit_guards: QuitGuards | None = None,
    ) -> None:
        super().__init__()
        self._asking_fixes = False  # the status line says "Fix N fields first"
        # A running enqueue registers here: quitting or switching profile asks first.
        self.quit_guards = quit_guards
        # Off in a console served to a browser: its user is not this machine's user.
        self.allow_file = allow_file
        self.confirmed_new_entrypoint: str | None = None  # a new name enqueued to once more
        self.backend = backend
        self.clock = clock
        self.read_only = read_only
        self.initial = dict(initial or {})
        self.enqueuer = Enqueuer(backend, batch_size=batch_size or DEFAULT_BATCH_SIZE)
        self.cancel_token: CancelToken | None = None
        self._submission: tuple[dict[str, str], str] | None = None  # (form values, token)
        self.result: EnqueueResult | None = None
        self.entrypoints: list[str] = []
        # Why the known names could not be read (then no name can be called new), or None.
        self.entrypoints_error: str | None = None
        self._shown_at = -1.0

    @property
    def running(self) -> bool:
        return self.cancel_token is not None

    def compose(self) -> ComposeResult:
        value = self.initial.get
        with VerticalScroll(id="enqueue-dialog"):
            yield Label("Enqueue test jobs", id="enqueue-title")
            yield FieldRow(
                "entrypoint",
                "Entrypoint",
                Input(value("entrypoint", ""), placeholder="name", id="entrypoint", compact=True),
            )
            kinds = [k for k in PayloadKind if self.allow_file or k is not PayloadKind.FILE]
            kind_text = value("payload_kind", PayloadKind.JSON.value)
            kind = PayloadKind(kind_text) if kind_text in set(kinds) else PayloadKind.JSON
            yield FieldRow(
                "payload",
                "Payload",
                Select(
                    [(k.value, k.value) for k in kinds],
                    value=kind.value,
                    allow_blank=False,
                    compact=True,
                    id="payload_kind",
                ),
                Input(value("payload", ""), placeholder="empty = none", id="payload", compact=True),
                hint=PAYLOAD_HINTS[kind],
            )
            yield FieldRow(
                "priority",
                "Priority",
                Input(value("priority", "0"), id="priority", compact=True),
                hint="",
            )
            yield FieldRow(
                "execute_after",
                "Execute after",
                Input(
                    value("execute_after", ""),
                    placeholder="now · 30s · 5m · 1h30m · 18:00 · 2026-11-24T18:00 (UTC)",
                    id="execute_after",
                    compact=True,
                ),
            )
            yield FieldRow(
                "dedupe_key",
                "Dedupe key",
                Input(
                    value("dedupe_key", ""), placeholder="optional", id="dedupe_key", compact=True
                ),
            )
            yield FieldRow(
                "headers",
                "Headers",
                Input(
                    value("headers", ""),
                    placeholder='optional JSON object, e.g. {"trace": "abc"}',
                    id="headers",
                    compact=True,
                ),
            )
            yield FieldRow(
                "copies",
                "Copies",
                Input(value("copies", "1"), id="copies", compact=True),
            )
            yield ProgressBar(id="enqueue-progress", show_eta=True)
            yield Static(Text(""), id="enqueue-status")
            with Horizontal(id="enqueue-buttons"):
                yield Button("Enqueue", id="enqueue-submit", variant="primary", compact=True)
                yield Button("Open first job", id="enqueue-open", compact=True)
                yield Button("Close", id="enqueue-close", compact=True)
            yield Static(
                Text("enter/ctrl+s enqueue · esc close (cancels a running enqueue) · ctrl+o job"),
                id="enqueue-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#enqueue-progress", ProgressBar).display = False
        self.query_one("#enqueue-open", Button).display = False
        self.query_one("#entrypoint", Input).focus()
        problem = refusal(self.backend, self.read_only)
        if problem:
            self._status(f"Cannot enqueue: {problem}", "error")
            self.query_one("#enqueue-submit", Button).disabled = True
        self.load_suggestions()

    @work(group="enqueue-suggest", exclusive=True, exit_on_error=False)
    async def load_suggestions(self) -> None:
        try:
            names = await read_known_entrypoints(self.backend)
        except Exception as exc:  # suggestions are a nicety: the form works without them
            self.entrypoints_error = describe_refresh_error(exc, self.backend)
            return
        self.entrypoints = names
        self.entrypoints_error = None
        entry = self.query_one("#entrypoint", Input)
        entry.suggester = SuggestFromList(names, case_sensitive=True)
        self._show_entrypoint_hint(entry.value)

    @on(Input.Changed, "#entrypoint")
    def _entrypoint_changed(self, event: Input.Changed) -> None:
        self._show_entrypoint_hint(event.value)

    def _show_entrypoint_hint(self, typed: str) -> None:
        if not self.entrypoints:
            return
        matches = [name for name in self.entrypoints if name.startswith(typed.strip())]
        if typed.strip() in self.entrypoints:
            hint = ""
        elif matches:
            shown = ", ".join(printable(name, limit=30) for name in matches[:SUGGESTIONS_SHOWN])
            more = (
                f" (+{len(matches) - SUGGESTIONS_SHOWN})"
                if len(matches) > SUGGESTIONS_SHOWN
                else ""
            )
            hint = f"known: {shown}{more}  (→ completes)"
        else:
            # A worker may serve it without ever having run it: the database cannot say.
            hint = "new name: not seen in the queue, log or schedules (enqueue asks first)"
        self.query_one("#row-entrypoint", FieldRow).set_hint(hint)

    @on(Select.Changed, "#payload_kind")
    def _payload_kind_changed(self, event: Select.Changed) -> None:
        kind = PayloadKind(str(event.value))
        self.query_one("#row-payload", FieldRow).set_hint(PAYLOAD_HINTS[kind])

    def raw_values(self) -> dict[str, str]:
        values = {name: self.query_one(f"#{name}", Input).value for name in INPUT_FIELDS}
        values["copies"] = self.query_one("#copies", Input).value
        values["payload_kind"] = str(self.query_one("#payload_kind", Select).value)
        return values

    def validate_fields(self, raw: Mapping[str, object] | None = None) -> EnqueueRequest | None:
        """Parse the form; show each problem next to its field. The request, or None."""
        rows = list(self.query(FieldRow))
        raw = dict(raw or self.raw_values())
        try:
            if not self.allow_file and raw.get("payload_kind") == PayloadKind.FILE.value:
                raise FormErrors({"payload": "file payloads are off in a served console"})
            request = parse_enqueue_form(raw, self.clock.now())
        except FormErrors as exc:
            errors = dict(exc.by_field)
            if "payload_kind" in errors:
                errors.setdefault("payload", errors.pop("payload_kind"))
            show_field_errors(rows, errors)
            first = next(iter(errors))
            self._status(fix_fields_first(len(errors)), "error")
            self._asking_fixes = True
            focus = self.query(f"#{first}")
            if focus:
                focus.first().focus()
            return None
        show_field_errors(rows, {})
        return request

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#enqueue-submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#enqueue-close")
    def _close_pressed(self) -> None:
        self.action_close_or_cancel()

    @on(Button.Pressed, "#enqueue-open")
    def _open_pressed(self) -> None:
        self.action_open_first_job()

    def action_submit(self) -> None:
        if self.running:
            self.notify("An enqueue is still running: esc cancels it.", markup=False)
            return
        problem = refusal(self.backend, self.read_only)
        if problem:
            self._status(f"Cannot enqueue: {problem}", "error")
            return
        raw = self.raw_values()
        path = raw["payload"].strip()
        if self.allow_file and raw["payload_kind"] == PayloadKind.FILE.value and path:
            # A file is read in a thread: a slow disk or a network mount must not freeze the UI.
            self._status("Reading the payload file…", "")
            self.read_file_then_submit(raw, path)
            return
        self.submit_request(raw)

    @work(group="enqueue-file", exclusive=True, exit_on_error=False)
    async def read_file_then_submit(self, raw: dict[str, str], path: str) -> None:
        try:
            data = await asyncio.to_thread(read_payload_file, path)
        except ValueError as exc:
            show_field_errors(list(self.query(FieldRow)), {"payload": str(exc)})
            self._status(fix_fields_first(1), "error")
            self._asking_fixes = True
            return
        self.submit_request({**raw, "payload": data})

    def submit_request(self, raw: Mapping[str, object]) -> None:
        request = self.validate_fields(raw)
        if request is None:
            return
        if not self._new_entrypoint_confirmed(request.entrypoint):
            return
        # One idempotency token per submission: the same form sent again after a failure or a
        # lost reply is the same submission (its written batches are skipped), until it
        # completes or a field changes.
        values = self.raw_values()
        if self._submission is None or self._submission[0] != values:
            self._submission = (values, uuid.uuid4().hex)
        self.cancel_token = CancelToken()
        self._shown_at = -1.0
        progress = self.query_one("#enqueue-progress", ProgressBar)
        progress.update(total=request.copies, progress=0)
        progress.display = request.copies > 1
        self.query_one("#enqueue-submit", Button).disabled = True
        self._status(f"Enqueueing {request.copies:,} job(s)…", "")
        self.run_enqueue(request, self.cancel_token, self._submission[1])

    def _new_entrypoint_confirmed(self, name: str) -> bool:
        """A name never seen needs a second, deliberate enqueue (a typo makes a new queue)."""
        if name in self.entrypoints or name == self.confirmed_new_entrypoint:
            return True
        self.confirmed_new_entrypoint = name
        shown = printable(name, limit=60)
        if self.entrypoints_error is not None:
            # Not known to be new: the names could not be read (read again for the next try).
            message = (
                f"'{shown}' could not be checked against the known entrypoints "
                f"({printable(self.entrypoints_error, limit=80)}): enqueue again to send it anyway"
            )
            self.load_suggestions()
        else:
            message = f"'{shown}' is a new entrypoint name: enqueue again to confirm, or fix it"
        self.query_one("#row-entrypoint", FieldRow).set_error(message)
        self._status(message, "warning")
        self.query_one("#entrypoint", Input).focus()
        return False

    @work(group="enqueue", exclusive=True, exit_on_error=False)
    async def run_enqueue(
        self, request: EnqueueRequest, token: CancelToken, submission: str | None = None
    ) -> None:
        running = RunningEnqueue(self, request, token)
        guards = self.quit_guards if self.quit_guards is not None else QuitGuards()
        guards.append(running)
        result: EnqueueResult | None = None
        try:
            result = await self.enqueuer.enqueue(
                request,
                on_progress=self._progress,
                cancel=token,
                read_only=self.read_only,
                submission=submission,
                on_written=running.written.extend,
            )
        finally:
            with contextlib.suppress(ValueError):
                guards.remove(running)
            self.cancel_token = None
            # Every write is audited, also when this worker itself was cancelled (the app
            # exited under it): what was committed is known batch by batch.
            running.audit(result)
            running.finished.set()
            if self.is_attached:
                self.query_one("#enqueue-submit", Button).disabled = False
        self.show_result(request, result)

    def _progress(self, progress: EnqueueProgress) -> None:
        # At most ~8 repaints a second, whatever the batch rate: the UI must not slow the insert.
        if progress.done < progress.total and progress.elapsed_s - self._shown_at < 0.12:
            return
        self._shown_at = progress.elapsed_s
        self.query_one("#enqueue-progress", ProgressBar).update(progress=progress.done)
        self._status(
            f"Enqueued {progress.done:,} of {progress.total:,}  ({progress.rate:,.0f} jobs/s)"
            "  · esc cancels after this batch",
            "",
        )

    def show_result(self, request: EnqueueRequest, result: EnqueueResult) -> None:
        self.result = result
        if result.complete:
            self._submission = None  # sending it again means more jobs: a new submission
        self.query_one("#enqueue-progress", ProgressBar).update(progress=len(result.ids))
        variant = "ok" if result.complete else ("warning" if result.cancelled else "error")
        summary = result.summary()
        if result.ids:
            summary += f"  · ctrl+o opens job {result.ids[0]}"
        self._status(summary, variant)
        self.query_one("#enqueue-open", Button).display = bool(result.ids)
        if result.ids:
            # Off the fields: keys typed after ctrl+o and esc must not edit the entrypoint
            # (and Enter must not enqueue again to an edited name).
            self.query_one("#enqueue-open", Button).focus()
        if result.error and request.dedupe_key is not None and "dedupe key" in result.error:
            self.query_one("#row-dedupe_key", FieldRow).set_error(result.error)
            self.query_one("#dedupe_key", Input).focus()

    @on(FieldRow.ErrorCleared)
    def _error_cleared(self) -> None:
        # "Fix 2 fields first" with both fixed would send the operator looking for a problem.
        if self._asking_fixes:
            invalid = invalid_fields(self.query(FieldRow))
            self._status(fix_fields_first(invalid) if invalid else "", "error" if invalid else "")
            self._asking_fixes = bool(invalid)

    def _status(self, message: str, variant: str) -> None:
        self._asking_fixes = False  # the line says something else now
        status = self.query_one("#enqueue-status", Static)
        for name in ("ok", "warning", "error"):
            status.set_class(variant == name, f"-{name}")
        status.update(Text(message))

    def action_close_or_cancel(self) -> None:
        if self.cancel_token is not None:
            if not self.cancel_token.cancelled:
                self.cancel_token.cancel()
                self._status("Cancelling after the batch in flight…", "warning")
            return
        self.dismiss(None)

    def action_open_first_job(self) -> None:
        if not self.result or not self.result.ids:
            self.notify("Nothing enqueued yet.", markup=False)
            return
        open_job_detail(self, self.backend, self.clock, self.result.ids[0])


class RunningEnqueue:
    """The form's enqueue as a quit guard (`keyboard.StoppableGuard`): quitting or switching
    profile asks first; confirmed, it cancels after the batch in flight and reports."""

    def __init__(self, form: EnqueueFormScreen, request: EnqueueRequest, token: CancelToken):
        self.form = form
        self.request = request
        self.token = token
        self.written: list[int] = []
        self.finished = asyncio.Event()
        self.stopped_by: str | None = None

    def __call__(self) -> str | None:
        if self.finished.is_set():
            return None
        return (
            f"An enqueue of {self.request.copies:,} "
            f"{printable(self.request.entrypoint, limit=60)!r} job(s) is running: "
            f"{len(self.written):,} written so far. It stops after the batch in flight."
        )

    async def stop(self) -> str | None:
        if self.finished.is_set():
            return None
        self.stopped_by = "stopped by quit or profile switch"
        self.token.cancel()
        await self.finished.wait()
        return self.report()

    def report(self) -> str:
        ids = self.written
        head = (
            f"Enqueue stopped: {len(ids):,} of {self.request.copies:,} "
            f"{printable(self.request.entrypoint, limit=60)!r} job(s) written"
        )
        return head + (f" (ids {min(ids)} … {max(ids)})" if ids else "")

    def audit(self, result: EnqueueResult | None) -> None:
        if not self.written:
            return
        if self.stopped_by:
            outcome = self.stopped_by
        elif result is None:
            outcome = "interrupted (the console exited)"
        elif result.error:
            outcome = f"failed: {result.error}"
        elif result.cancelled:
            outcome = "cancelled"
        else:
            outcome = "done"
        backend = self.form.backend
        record = audit_record(self.request, self.written, backend.label, outcome)
        try:
            audit.append(record)
        except OSError as exc:
            problem = f"the audit file could not be written: {one_line(exc)}"
            with contextlib.suppress(Exception):
                self.form.app.notify(problem, severity="warning", markup=False)


def open_job_detail(screen: Screen[Any], backend: Backend, clock: Clock, job_id: int) -> None:
    """Push the job detail screen for `job_id` (async drivers); else say the id."""
    if not backend.capabilities.can_read:
        screen.notify(
            f"Job {job_id}: job details need an async driver (this one can only enqueue).",
            markup=False,
        )
        return
    from pgq_console.screens.job_detail import JobDetailScreen

    screen.app.push_screen(JobDetailScreen(backend, clock, job_id))


def open_enqueue_form(
    app: App[Any], context: ConsoleContext, initial: Mapping[str, str] | None = None
) -> None:
    """Push the form, or say in one line why this console cannot enqueue."""
    if isinstance(app.screen, EnqueueFormScreen):
        return
    problem = refusal(context.backend, context.read_only)
    if problem:
        app.notify(f"Cannot enqueue: {problem}", severity="warning", markup=False)
        return
    assert context.backend is not None  # refusal() says why otherwise
    app.push_screen(
        EnqueueFormScreen(
            context.backend,
            context.clock,
            read_only=context.read_only,
            initial=initial,
            # Off in a console served to a browser: its user is not this machine's user.
            allow_file=not context.served,
            quit_guards=context.quit_guards,
        )
    )
