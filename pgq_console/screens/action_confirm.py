"""The confirm modal every write action goes through (see core/actions.py).

`ActionConfirmScreen(backend, action)` previews the action in a worker, shows the exact count,
a few sample rows, the predicate and the statement; above 100 rows the operator types the count;
an optional reason goes to the audit. Apply runs `actions.execute` in a worker; the screen
dismisses with the `ActionResult` ("previewed N, changed M"), or None when cancelled.
Screens open it through `confirm_write`, which refuses first in read-only mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Label, Static

from pgq_console.context import ConsoleContext
from pgq_console.core import actions
from pgq_console.core.actions import Action, ActionPreview, ActionResult
from pgq_console.core.backend import READ_ONLY_REFUSAL, Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import error_line, middle_cut, one_line, printable

CELL_LIMIT = 40


class ActionConfirmScreen(ModalScreen[ActionResult | None]):
    """Preview → confirm (typed count above 100) → apply → dismiss(result)."""

    # "Back", not "Cancel": in a "Cancel jobs" dialog a "Cancel" button reads as the write.
    BINDINGS = [
        Binding("escape", "dismiss_cancel", "Back", id="action-confirm.dismiss-cancel"),
        # From the reason field too: the preview above it scrolls (a plan, a long statement).
        Binding("pagedown", "scroll_body(1)", "Scroll down", show=False, id="action-confirm.down"),
        Binding("pageup", "scroll_body(-1)", "Scroll up", show=False, id="action-confirm.up"),
    ]

    def __init__(self, backend: Backend, action: Action) -> None:
        super().__init__()
        self.backend = backend
        self.action = action
        self.preview: ActionPreview | None = None
        self.result: ActionResult | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(Text(self.action.title), id="confirm-title")
            # What will be done scrolls (tab to it, then the arrows or page keys; page keys
            # from anywhere in the dialog); the controls below it stay visible on any terminal.
            with VerticalScroll(id="confirm-body"):
                yield Static(Text("Previewing…"), id="confirm-count")
                yield Static(Text(""), id="confirm-predicate")
                yield Static(Text(""), id="confirm-notes")
                yield DataTable(id="confirm-sample", cursor_type="none", show_cursor=False)
                yield Static(Text(""), id="confirm-plan")  # a sample that is a text block
                yield Static(Text(""), id="confirm-statement")
            with Vertical(id="confirm-controls"):
                yield Input(placeholder="type the count to confirm", id="confirm-typed")
                yield Input(
                    placeholder="reason (optional, goes to the audit log)", id="confirm-reason"
                )
                yield Static(Text(""), id="confirm-error")
                with Horizontal(id="confirm-buttons"):
                    yield Button("Apply", id="confirm-apply", variant="error", disabled=True)
                    yield Button("Back", id="confirm-cancel", tooltip="close, change nothing")

    def on_mount(self) -> None:
        self.query_one("#confirm-typed", Input).display = False
        self.query_one("#confirm-sample", DataTable).display = False
        self.query_one("#confirm-plan", Static).display = False
        if self.backend.read_only:
            self._error(READ_ONLY_REFUSAL)
            self.query_one("#confirm-count", Static).update(Text("Nothing will be changed."))
            self.query_one("#confirm-apply", Button).display = False
            self.query_one("#confirm-reason", Input).display = False
            return
        self.run_preview()

    @work(group="confirm", exclusive=True, exit_on_error=False)
    async def run_preview(self) -> None:
        try:
            preview = await self.action.preview(self.backend)
        except Exception as exc:
            # No preview, nothing to apply: "Previewing…" must not stay beside the error.
            self.query_one("#confirm-count", Static).update(
                Text("Nothing can be changed without a preview.", style="bold")
            )
            self.query_one("#confirm-reason", Input).display = False
            if isinstance(exc, ConsoleError):
                self._error(str(exc))
            elif self.backend.errors.connection_lost(exc):
                reason = middle_cut(error_line(exc), 100)
                self._error(
                    f"preview failed: lost the connection to {self.backend.label} "
                    f"({reason}); nothing was changed, try again once it is back"
                )
            else:
                self._error(f"preview failed: {error_line(exc)}")
            return
        self.show_preview(preview)

    def show_preview(self, preview: ActionPreview) -> None:
        self.preview = preview
        count = self.query_one("#confirm-count", Static)
        if preview.count == 0:
            count.update(Text(preview.nothing_to_do, style="bold"))
        else:
            count.update(Text(f"{preview.verb} {preview.counted()}", style="bold"))
        self.query_one("#confirm-predicate", Static).update(
            Text.assemble(("where ", "dim"), printable(preview.predicate or "—", limit=300))
        )
        self.query_one("#confirm-notes", Static).update(Text("\n".join(preview.notes)))
        table = self.query_one("#confirm-sample", DataTable)
        if preview.sample and preview.sample_lines:
            # A plan's lines in full (wrapped): a node's filter or cost cut at a cell's width
            # hides what the index is for.
            plan = self.query_one("#confirm-plan", Static)
            plan.update(sample_block(preview))
            plan.display = True
        elif preview.sample:
            for column in preview.columns:
                table.add_column(column, key=column)
            for row in preview.sample:
                table.add_row(*(Text(printable(cell, limit=CELL_LIMIT)) for cell in row))
            table.display = True
            if preview.count > len(preview.sample):
                table.border_subtitle = f"first {len(preview.sample)} of {preview.count}"
        self.query_one("#confirm-statement", Static).update(
            Text.assemble(
                (statement_label(preview) + ":\n", "dim"), printable_sql(preview.statement)
            )
        )
        typed = self.query_one("#confirm-typed", Input)
        if preview.needs_typed_confirmation:
            typed.placeholder = f"type {preview.count} to confirm"
            typed.display = True
            typed.focus()
        apply = self.query_one("#confirm-apply", Button)
        apply.disabled = preview.count == 0
        if not preview.needs_typed_confirmation and preview.count:
            # The reason field has the focus: what is typed is recorded, Enter applies. (With
            # the focus on Apply, a typed reason went nowhere and Enter applied without it.)
            self.query_one("#confirm-reason", Input).focus()

    @on(Button.Pressed, "#confirm-apply")
    @on(Input.Submitted)
    def apply_pressed(self) -> None:
        if self.preview is None or self.preview.count == 0:
            return
        typed = self.query_one("#confirm-typed", Input).value
        problem = actions.confirmation_problem(self.preview, typed)
        if problem:
            self._error(problem)
            return
        self.query_one("#confirm-apply", Button).disabled = True
        self.run_apply(typed, self.query_one("#confirm-reason", Input).value)

    @work(group="confirm", exclusive=True, exit_on_error=False)
    async def run_apply(self, typed: str, reason: str) -> None:
        assert self.preview is not None
        try:
            result = await actions.execute(
                self.backend, self.action, self.preview, typed=typed, reason=reason
            )
        except ConsoleError as exc:
            self._error(str(exc))
            if isinstance(exc, actions.OutcomeUnknown):
                # Also outside the dialog: closing it must not hide that the outcome is unknown.
                self.app.notify(str(exc), severity="error", markup=False, timeout=30)
            self.query_one("#confirm-apply", Button).disabled = False
            return
        self.result = result
        self.dismiss(result)

    def action_scroll_body(self, pages: int) -> None:
        body = self.query_one("#confirm-body", VerticalScroll)
        if pages > 0:
            body.scroll_page_down()
        else:
            body.scroll_page_up()

    @on(Button.Pressed, "#confirm-cancel")
    def action_dismiss_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, message: str) -> None:
        self.query_one("#confirm-error", Static).update(Text(printable(message), style="bold"))


def statement_label(preview: ActionPreview) -> str:
    """What the dialog calls the statement: the preview's own words, else what its
    placeholders are bound to (a row action's `$1` is the previewed ids)."""
    if preview.statement_label is not None:
        return preview.statement_label
    bound = "".join(f"; {p}" for p in preview.parameters)
    return f"statement ($1 = the previewed ids{bound})"


def sample_block(preview: ActionPreview) -> Text:
    """A text-block sample (`ActionPreview.sample_lines`): its label, then each line whole, as
    literal text (a plan comes from the database: never markup, no control characters)."""
    label = " ".join(preview.columns)
    lines = "\n".join(printable(row[0] if row else "") for row in preview.sample)
    return Text.assemble((label + ":\n", "dim"), lines)


def printable_sql(statement: str) -> Text:
    """The statement as literal text (line breaks kept, nothing interpreted)."""
    return Text("\n".join(printable(line) for line in statement.splitlines()))


def announce_result(notify: Callable[..., object], result: ActionResult) -> None:
    """Toast an action's outcome with `notify` (an App's or Screen's): plain text, never markup."""
    notify(result.summary, markup=False, timeout=8)
    if result.audit_problem:
        notify(result.audit_problem, severity="warning", markup=False, timeout=15)


def confirm_write(
    screen: Screen[Any],
    backend: Backend,
    action: Action,
    after: Callable[[ActionResult | None], object],
) -> bool:
    """Every screen's write path, written once: refused in read-only mode (one warning, worded
    as the backend's own refusal), else this dialog; when it closes the outcome is announced
    and `after` runs (with None when cancelled), e.g. to refresh what the screen shows.
    False when refused."""
    if backend.read_only:
        screen.notify(READ_ONLY_REFUSAL, severity="warning", markup=False)
        return False

    def done(result: ActionResult | None) -> None:
        if result is not None:
            announce_result(screen.notify, result)
        after(result)

    screen.app.push_screen(ActionConfirmScreen(backend, action), done)
    return True


def _to_overview_feed(app: App[None], announcement: object) -> None:
    """Every announced write, this console's too, goes to the overview's event feed."""
    from pgq_console.messages import AuditHeard

    try:
        stack = app.get_screen_stack("overview")
    except KeyError:
        return
    for screen in stack[:1]:
        screen.post_message(AuditHeard(announcement))


def watch_audit(app: App[None], context: ConsoleContext, backend: Backend) -> None:
    """Toast every write another console announces on the audit channel (own ones are skipped:
    their result was already shown). Runs as an app worker on a connection of its own."""
    import asyncio

    from pgq_console.core.audit import AuditAnnouncement, AuditListener

    def toast(announcement: AuditAnnouncement) -> None:
        _to_overview_feed(app, announcement)
        if announcement.verified and announcement.own:
            return
        context.heard_audit.append(announcement)  # the incident bundle lists them
        app.notify(
            printable(announcement.describe(), limit=300),
            title="another console wrote" if announcement.verified else "unverified audit NOTIFY",
            severity="information" if announcement.verified else "warning",
            markup=False,
            timeout=10,
        )

    async def listen() -> None:
        listener = AuditListener(backend, toast)
        try:
            await listener.start()
            await asyncio.Event().wait()
        except Exception as exc:  # the toasts are a courtesy: never take the app down
            app.notify(
                f"not listening for other consoles' writes: {one_line(exc)}",
                severity="warning",
                markup=False,
            )
        finally:
            await listener.stop()

    app.run_worker(listen(), group="audit-toasts", exclusive=True, exit_on_error=False)
