"""The header lines: where the console is connected, and how the live model is doing."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.visual import VisualType
from textual.widgets import Static

from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.widgets import format as fmt


class QuietStatic(Static):
    """A line that repaints only when its text changed (a refresh every 2 s over slow SSH)."""

    _shown: Text | None = None

    def show_text(self, text: Text) -> None:
        if text != self._shown:
            self.update(text)

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        # Any update, also a direct one, is what `show_text` compares against.
        self._shown = content.copy() if isinstance(content, Text) else None
        super().update(content, layout=layout)


class ConnectionLine(QuietStatic):
    """Connection label (password never present), driver, installation."""

    def show(self, label: str, driver: str, installation: str, read_only: bool = False) -> None:
        # One line, cut at the right: a long socket path must not push the rest out of sight.
        text = Text(no_wrap=True, overflow="ellipsis")
        # The profile's environment badge (e.g. PROD in red), set by the app from the config.
        environment = getattr(self.app, "environment", None)
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

    def show(self, status: RefreshStatus, now: datetime) -> None:
        muted = self.app.theme_variables.get("muted", "")
        text = Text(" ")
        if status.paused:
            text.append("⏸ paused", style="bold")
        elif status.listening:
            text.append(f"listening on {status.channel}")
        else:
            text.append(f"not listening ({status.channel})", style="bold")
        if status.last_event_at is not None:
            text.append(f"  last event {fmt.age(status.last_event_at, now)} ago", style=muted)
            if status.last_event_latency_s is not None:
                text.append(f"  latency {fmt.seconds(status.last_event_latency_s)}", style=muted)
        elif not status.paused:
            text.append("  no events yet", style=muted)
        pacing = f"every {status.interval_s:g}s"
        if status.effective_interval_s > status.interval_s + 0.05:
            pacing += f" (slowed to {status.effective_interval_s:.1f}s)"
        text.append(f"  refresh {pacing}", style=muted)
        text.append(f"  console db time {status.db_cost * 100:.1f}%", style=muted)
        self.show_text(text)


class TotalsLine(QuietStatic):
    def show(self, snapshot: OverviewSnapshot, now: datetime) -> None:
        total = snapshot.totals
        variables = self.app.theme_variables
        self.show_text(
            Text.assemble(
                " queued ",
                (fmt.count(total.queued), "bold"),
                f" (ready {fmt.count(total.ready)}, deferred {fmt.count(total.deferred)})  ",
                "picked ",
                (fmt.count(total.picked), variables.get("status-picked", "")),
                "  held ",
                (fmt.count(total.held), variables.get("status-held", "") if total.held else ""),
                f"  done/1m {fmt.count(total.completed_1m)}",
                f"  err/1m {fmt.count(total.exceptions_1m)}",
                f"  in {fmt.rate(total.rate_in)}/s out {fmt.rate(total.rate_out)}/s",
                f"  oldest ready {fmt.age(total.oldest_ready_since, now)}",
            )
        )
