"""Why isn't this job (or this entrypoint's queue) running? The reasons, one per line, then
the facts they were drawn from (core/why.py). Read in a worker; `r` reads again.

Everything shown came from the database: literal Text through `printable`, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from pgq_console.core.backend import Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line, printable
from pgq_console.core.why import WhyResult, fact_text, why_entrypoint, why_job
from pgq_console.widgets.footer import ConsoleFooter

# Reasons that say it will not run at all (without an operator): shown bold.
_FINAL = {"held", "cancelled", "finished"}


@dataclass
class WhyLoaded(Message):
    result: WhyResult | None
    error: str | None = None


class WhyScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="why.back"),
        Binding("r", "refresh", "Refresh", id="why.refresh"),
    ]

    def __init__(
        self, backend: Backend, *, job_id: int | None = None, entrypoint: str | None = None
    ) -> None:
        super().__init__()
        assert (job_id is None) != (entrypoint is None)
        self.backend = backend
        self.job_id = job_id
        self.entrypoint = entrypoint
        self.result: WhyResult | None = None

    @property
    def subject(self) -> str:
        if self.job_id is not None:
            return f"job {self.job_id}"
        return f"entrypoint {printable(self.entrypoint or '', limit=80)}"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="why-scroll"):
            yield Static(
                Text.assemble(("Why isn't it running? ", "bold"), self.subject), id="why-title"
            )
            yield Static(Text("Reading…"), id="why-reasons")
            yield Static(Text("Facts", style="bold"), classes="why-heading")
            yield Static(Text(""), id="why-facts")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#why-scroll").focus()
        self.load()

    @work(group="why", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        try:
            if self.job_id is not None:
                result = await why_job(self.backend, self.job_id)
            else:
                assert self.entrypoint is not None
                result = await why_entrypoint(self.backend, self.entrypoint)
        except ConsoleError as exc:
            self.post_message(WhyLoaded(None, str(exc)))
            return
        except Exception as exc:
            self.post_message(WhyLoaded(None, f"cannot read {self.subject}: {exc}"))
            return
        self.post_message(WhyLoaded(result))

    @on(WhyLoaded)
    def show(self, message: WhyLoaded) -> None:
        reasons = self.query_one("#why-reasons", Static)
        if message.result is None:
            reasons.update(Text(printable(one_line(message.error or "")), style="bold"))
            return
        self.result = result = message.result
        text = Text()
        for number, reason in enumerate(result.reasons):
            if number:
                text.append("\n")
            text.append("• ", style="bold")
            text.append(printable(reason.text), style="bold" if reason.code in _FINAL else "")
        reasons.update(text)
        # The database's clock is left out: the screen is about the job, not the read.
        shown = [(name, value) for name, value in result.facts if name != "db_now"]
        width = max(len(name) for name, _ in shown)
        facts = Text()
        for number, (name, value) in enumerate(shown):
            if number:
                facts.append("\n")
            facts.append(f"{name:<{width}}  ", style="dim")
            facts.append(printable(fact_text(value), limit=200))
        self.query_one("#why-facts", Static).update(facts)

    def action_refresh(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.dismiss()
