"""Base for the screens that poll one read: workers, schedules, database health, charts.

One long-lived worker runs a `PollLoop` (core/poll_loop.py), which only polls while the screen is
the one on display, backs off with jitter when the database is gone and posts immutable results;
handlers never await the database. A banner says what is lost and when the next try is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from pgq_console.core.actions import Action
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.poll_loop import PollLoop, PollStatus
from pgq_console.screens.gating import ReadOnlyGate
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.status_line import QuietStatic

T = TypeVar("T")


@dataclass
class PollResult(Message):
    data: Any

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PollResult)


@dataclass
class PollStatusChanged(Message):
    status: PollStatus

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PollStatusChanged)


class PollLine(QuietStatic):
    """How old the shown data is, how long its read took, and the polling pace.

    The age counts up between reads (`PolledScreen` shows the line again every second): a read
    that hangs or a poll slowed down shows as data getting older, not as "read 2ms ago" until
    the next read. It is coarse (`fmt.coarse_age`: seconds under 10 s, then 10 s steps, whole
    minutes): the line repaints only when that text changes, only the part that changed.
    """

    def show(self, title: str, status: PollStatus, clock: Clock, extra: str = "") -> None:
        muted = self.app.theme_variables.get("muted", "")
        fields = [Text(title, style="bold")]
        if extra:
            fields.append(Text(extra))
        if status.ok_at is not None:
            since = max(0.0, (clock.now() - status.ok_at).total_seconds())
            age, took = fmt.coarse_age(since), fmt.seconds(status.took_s)
            fields.append(Text(f"read {age} ago in {took}", style=muted))
        else:
            fields.append(Text("reading…", style=muted))
        if status.slowed_to_s is None:
            fields.append(Text(f"every {status.interval_s:g}s", style=muted))
        else:
            # Said as a problem would be: the screen is less live than its interval.
            fields.append(
                Text(f"every {fmt.seconds(status.slowed_to_s)} (slowed: reads cost)", style=muted)
            )
        self.show_fields(fields)


# How often the status line's age is brought up to date between reads.
AGE_TICK_S = 1.0

# The share of a core a polled screen's reads may take while it is on screen: on a big
# installation (100,000 jobs in flight: the Workers read took 0.5 s) a screen left open polls
# less often instead of keeping the database busy (`r` still reads at once).
POLLED_SCREEN_BUDGET = 0.05


class PolledScreen(ReadOnlyGate, Screen[None], Generic[T]):
    """Subclasses implement `fetch`, `compose_body` and `show`; `title` names the screen."""

    title_text = ""
    interval_s = 5.0
    BINDINGS = [Binding("r", "refresh_now", "Refresh", id="refresh")]

    def __init__(self, backend: Backend, clock: Clock) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.data: T | None = None
        self.poll_status = PollStatus(interval_s=self.interval_s)
        self.loop: PollLoop[T] = PollLoop(
            backend,
            clock,
            self.fetch,
            on_result=self._post_result,
            on_status=self._post_status,
            interval_s=self.interval_s,
            active=lambda: self.is_attached and self.app.screen is self,
            budget=POLLED_SCREEN_BUDGET,
            cost=self.read_cost,
        )

    def _post_result(self, data: T) -> None:
        self.post_message(PollResult(data))

    def _post_status(self, status: PollStatus) -> None:
        self.post_message(PollStatusChanged(status))

    async def fetch(self) -> T:
        raise NotImplementedError

    def read_cost(self, data: T) -> float | None:
        """What reading `data` cost the server when not the time the read took (see
        PollLoop's `cost`); None: the time it took."""
        return None

    def compose_body(self) -> ComposeResult:
        yield from ()

    def show(self, data: T) -> None:
        """Update the widgets from a new result (runs on the UI, must not await)."""

    def extra_status(self) -> str:
        return ""

    def compose(self) -> ComposeResult:
        yield Banner(id="poll-banner")
        yield PollLine(id="poll-line")
        yield from self.compose_body()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#poll-banner", Banner).hide()
        self.query_one(PollLine).show(self.title_text, self.poll_status, self.clock)
        self.set_interval(AGE_TICK_S, self._show_age)
        self.run_loop()

    def _show_age(self) -> None:
        """The status line again, its age counted on (nothing is sent to the terminal unless
        its text changed); not while another screen covers this one."""
        if self.is_current and self.poll_status.ok_at is not None:
            self.query_one(PollLine).show(
                self.title_text, self.poll_status, self.clock, self.extra_status()
            )

    def on_screen_resume(self) -> None:
        self.loop.request_refresh()

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def run_loop(self) -> None:
        await self.loop.run()

    @on(PollResult)
    def _on_result(self, message: PollResult) -> None:
        self.data = message.data
        self.show(message.data)
        self.query_one(PollLine).show(
            self.title_text, self.poll_status, self.clock, self.extra_status()
        )

    @on(PollStatusChanged)
    def _on_status(self, message: PollStatusChanged) -> None:
        self.poll_status = message.status
        banner = self.query_one("#poll-banner", Banner)
        if message.status.error:
            variant = "error" if message.status.lost_since else "warning"
            banner.show(f"⚠ {message.status.error}", variant=variant)
        else:
            banner.hide()
        self.query_one(PollLine).show(
            self.title_text, message.status, self.clock, self.extra_status()
        )

    def action_refresh_now(self) -> None:
        self.loop.request_refresh()

    # -- guarded actions -----------------------------------------------------------------------

    def confirm_action(self, action: Action) -> None:
        """Open the shared preview/confirm/audit dialog; refresh when it is done."""
        from pgq_console.screens.action_confirm import confirm_write

        confirm_write(self, self.backend, action, lambda _result: self.loop.request_refresh())
