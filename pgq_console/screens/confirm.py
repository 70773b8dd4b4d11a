"""The console's one yes/no question: quitting with work running, switching profile during an
enqueue, cancelling a consumer's running jobs. Dismisses with the answer; `y` says yes, `n`
and esc say no, and the focus starts on no (enter never says yes by accident)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """A question, why it is asked, and two answers."""

    BINDINGS = [
        Binding("escape", "answer(False)", "No", id="confirm.escape"),
        Binding("y", "answer(True)", "Yes", show=False, id="confirm.yes"),
        Binding("n", "answer(False)", "No", show=False, id="confirm.no"),
    ]

    def __init__(
        self,
        question: str,
        detail: str,
        *,
        yes: str = "Yes",
        no: str = "No",
        status: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes
        self.no = no
        # What changes while the question is open (plain text), read again every half second.
        self.status = status

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="yesno-dialog"):
            yield Label(Text(self.question), id="yesno-question")
            yield Static(Text(self.detail), id="yesno-detail")
            if self.status is not None:
                yield Static(Text(self.status()), id="yesno-status")
            with Horizontal(id="yesno-buttons"):
                yield Button(f"{self.yes} (y)", id="yesno-yes", variant="warning", compact=True)
                yield Button(f"{self.no} (n)", id="yesno-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#yesno-no", Button).focus()
        if self.status is not None:
            self.set_interval(0.5, self.refresh_status)

    def refresh_status(self) -> None:
        if self.status is not None:
            self.query_one("#yesno-status", Static).update(Text(self.status()))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yesno-yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
