"""The console's one yes/no question: quitting with work running, switching profile during an
enqueue, cancelling a consumer's running jobs. Dismisses with the answer; `y` says yes, `n`
and esc say no, and the focus starts on no (enter never says yes by accident)."""

from __future__ import annotations

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

    def __init__(self, question: str, detail: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="yesno-dialog"):
            yield Label(Text(self.question), id="yesno-question")
            yield Static(Text(self.detail), id="yesno-detail")
            with Horizontal(id="yesno-buttons"):
                yield Button(f"{self.yes} (y)", id="yesno-yes", variant="warning", compact=True)
                yield Button(f"{self.no} (n)", id="yesno-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#yesno-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yesno-yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
