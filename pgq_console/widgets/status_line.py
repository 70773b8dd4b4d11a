"""The header lines: where the console is connected, and how the live model is doing."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.message import Message
from textual.visual import VisualType
from textual.widgets import Static

from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.widgets import format as fmt
from pgq_console.widgets.pacing import changed_line_regions

if TYPE_CHECKING:
    from pgq_console.config import Environment


def pack_fields(
    fields: Sequence[Text], width: int, separator: str = "  ", indent: str = " "
) -> Text:
    """The fields on as few lines as fit `width`, a line broken between fields, never inside one.

    Every line starts with `indent`; a field wider than a whole line gets a line of its own.
    """
    text = Text(indent)
    used = len(indent)
    for index, field in enumerate(fields):
        size = cell_len(field.plain)
        if index and used + len(separator) + size > width:
            text.append("\n" + indent)
            used = len(indent)
        elif index:
            text.append(separator)
            used += len(separator)
        text.append_text(field)
        used += size
    return text


class QuietStatic(Static):
    """A line that repaints only when its text changed (a refresh every 2 s over slow SSH), and
    lays the screen out again only when it needs another number of lines.

    A layout of the overview costs ~13 ms of CPU; these lines change on every refresh, and a
    layout for each was a tenth of a core taken from the console's own consumers. With
    `KEEP_HEIGHT`, a line that wrapped keeps its height while the width stays: numbers that
    grow and shrink by a digit must not make the table below jump (nor lay it out again). A
    new state of what the line says (`show_text`'s `state`) gives it its own height: the
    startup's "not listening (…)", two lines at 80 columns, kept a blank line under the
    header for good once the console listened (on a busy machine only: a CI snapshot failure).
    """

    KEEP_HEIGHT: ClassVar[bool] = False
    _asked: Text | None = None  # the text last shown, before any padding
    _state: Hashable = None  # what it was about (`show_text`)
    _height = (0, 0)  # (width, lines) of what is shown
    _shown_fields: Sequence[Text] = ()  # what `show_fields` packs again on a resize
    _indent = " "
    _painted: Text | None = None  # the text on screen (after padding), when shown by show_text
    _partial: tuple[Region, ...] | None = None  # what `refresh` repaints for `show_text`

    def show_text(self, text: Text, *, state: Hashable = None) -> None:
        """Show `text`. With `KEEP_HEIGHT`, the height is kept only while `state` (what the line
        is about, as opposed to its numbers) stays the same."""
        if text == self._asked and state == self._state:
            return
        asked = text.copy()
        width = self.content_region.width
        if width <= 0:  # not laid out yet
            self.update(text)
            self._asked = asked
            return
        lines = len(text.wrap(self.app.console, width))
        shown_width, shown_lines = self._height
        if (
            self.KEEP_HEIGHT
            and shown_width == width
            and lines < shown_lines
            and state == self._state
        ):
            text = text.copy()
            text.append("\n" * (shown_lines - lines))
            lines = shown_lines
        layout = (width, lines) != self._height
        before = self._painted
        partial = None
        if (
            not layout
            and before is not None
            and (before.spans, before.style) == (text.spans, text.style)
        ):
            # The same styles over the same lines: repaint only what reads differently (a
            # terminal update of part of a line goes from the widget's left edge to its end).
            plain = text.plain.split("\n")
            if all(cell_len(line) <= width for line in plain):
                partial = changed_line_regions(before.plain.split("\n"), plain)
        self._partial = tuple(partial) if partial is not None else None
        try:
            self.update(text, layout=layout)
        finally:
            self._partial = None
        self._asked, self._height, self._painted = asked, (width, lines), text.copy()
        self._state = state

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        # A direct update (not through `show_text`) is neither compared nor measured.
        self._asked = None
        self._height = (0, 0)
        self._shown_fields = ()
        self._painted = None
        super().update(content, layout=layout)

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        if self._partial is not None and not regions and not layout and not recompose:
            if not self._partial:
                return self  # nothing reads differently
            regions = self._partial
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def show_fields(
        self, fields: Sequence[Text], indent: str = " ", *, state: Hashable = None
    ) -> None:
        """Show `fields` packed to the width (`pack_fields`), packed again on a resize."""
        width = self.content_region.width
        self.show_text(
            pack_fields(fields, width if width > 0 else 1 << 16, indent=indent), state=state
        )
        self._shown_fields, self._indent = tuple(fields), indent

    def on_resize(self, event: events.Resize) -> None:
        if fields := self._shown_fields:
            self.show_fields(fields, self._indent, state=self._state)


class ConnectionLine(QuietStatic):
    """Connection label (password never present), driver, installation, and the profile's
    environment badge (e.g. PROD in red), which the app hands in (`EnvironmentWanted`)."""

    @dataclass
    class EnvironmentWanted(Message):
        """Posted on mount: whoever knows the profile's badge answers with `set_environment`."""

        line: ConnectionLine

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environment: Environment | None = None
        self._shown: tuple[str, str, str, bool] | None = None

    def on_mount(self) -> None:
        self.post_message(self.EnvironmentWanted(self))

    def set_environment(self, environment: Environment | None) -> None:
        self.environment = environment
        if self._shown is not None:
            self.show(*self._shown)

    def show(self, label: str, driver: str, installation: str, read_only: bool = False) -> None:
        self._shown = (label, driver, installation, read_only)
        # One line, cut at the right: a long socket path must not push the rest out of sight.
        text = Text(no_wrap=True, overflow="ellipsis")
        environment = self.environment
        if environment is not None:
            colour = environment.color or self.app.theme_variables.get("error", "")
            text.append(f" {environment.label} ", style=f"bold reverse {colour}")
            text.append(" ")
        if read_only:  # first, so 80 columns never cut it off
            text.append(" read-only ", style="bold reverse")
        text.append_text(
            Text.assemble(
                (" ● ", "bold"),
                (label, "bold"),
                "  ",
                (driver, self.app.theme_variables.get("primary", "")),
                "  ",
                installation,
            )
        )
        self.show_text(text)


class LiveLine(QuietStatic):
    """Listener state, last event, NOTIFY latency, pacing and the console's database cost."""

    KEEP_HEIGHT = True
    _db_cost: float | None = None  # the console's database time shown (`fmt.steady_share`)
    _latency: float | None = None  # the NOTIFY latency shown (`fmt.steady_latency`)

    def show(self, status: RefreshStatus, now: datetime) -> None:
        muted = self.app.theme_variables.get("muted", "")
        fields: list[Text] = []
        if status.paused:
            fields.append(Text("⏸ paused", style="bold"))
        elif status.polling_reason:
            fields.append(
                Text(
                    f"{status.polling_reason}: polling every {status.interval_s:g} s; "
                    "set listen_dsn for live events",
                    style="bold",
                )
            )
        elif status.live_problem:
            fields.append(Text(status.live_problem, style="bold"))
        elif status.listening:
            fields.append(Text(f"listening on {status.channel}"))
        else:
            fields.append(Text(f"not listening ({status.channel})", style="bold"))
        if status.last_event_at is not None:
            # Coarse: under traffic the exact age and latency change on every paint (a repaint
            # of this line each time, over SSH), and say no more than "<1s" and "<10ms".
            since = max(0.0, (now - status.last_event_at).total_seconds())
            fields.append(Text(f"last event {fmt.coarse_age(since)} ago", muted))
            if status.last_event_latency_s is not None:
                self._latency = fmt.steady_latency(self._latency, status.last_event_latency_s)
                fields.append(Text(f"latency {fmt.coarse_latency(self._latency)}", muted))
        elif not status.paused and not status.polling_reason:
            fields.append(Text("no events yet", style=muted))
        pacing = f"every {status.interval_s:g}s"
        if status.effective_interval_s > status.interval_s + 0.05:
            pacing += f" (slowed to {status.effective_interval_s:.1f}s)"
        fields.append(Text(f"refresh {pacing}", style=muted))
        self._db_cost = fmt.steady_share(self._db_cost, status.db_cost)
        fields.append(Text(f"console db time {self._db_cost * 100:.1f}%", style=muted))
        if status.depth_note is not None:
            fields.append(Text(status.depth_note, style="bold"))
        if status.windows_note is not None:
            fields.append(Text(status.windows_note, style="bold"))
        if status.replica is not None:
            fields.append(Text(status.replica, style=muted if status.replica_in_use else "bold"))
        state = (status.paused, status.polling_reason, status.live_problem, status.listening)
        self.show_fields(fields, state=state)


class TotalsLine(QuietStatic):
    """Totals over all entrypoints."""

    KEEP_HEIGHT = True

    def show(
        self, snapshot: OverviewSnapshot, now: datetime, rates: tuple[float, float] | None = None
    ) -> None:
        """`rates`: the (in, out) rates to show, if not the snapshot's (`fmt.steady_rate`)."""
        total = snapshot.totals
        rate_in, rate_out = rates if rates is not None else (total.rate_in, total.rate_out)
        variables = self.app.theme_variables
        self.show_fields(
            [
                Text.assemble(
                    "queued ",
                    (fmt.count(total.queued), "bold"),
                    f" (ready {fmt.count(total.ready)}, deferred {fmt.count(total.deferred)})",
                ),
                Text.assemble(
                    "picked ", (fmt.count(total.picked), variables.get("status-picked", ""))
                ),
                Text.assemble(
                    "held ",
                    (fmt.count(total.held), variables.get("status-held", "") if total.held else ""),
                ),
                Text(f"done/1m {fmt.count(total.completed_1m)}"),
                Text(f"err/1m {fmt.count(total.exceptions_1m)}"),
                Text(f"in {fmt.rate(rate_in)}/s out {fmt.rate(rate_out)}/s"),
                Text(f"oldest ready {fmt.age(total.oldest_ready_since, now)}"),
            ]
        )
