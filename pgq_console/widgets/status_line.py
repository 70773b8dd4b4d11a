"""The header lines: where the console is connected, and how the live model is doing."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import Static

from pgq_console.core.models import OverviewSnapshot, RefreshStatus
from pgq_console.widgets import format as fmt


class ConnectionLine(Static):
    """Connection label (password never present), driver, installation."""

    def show(self, label: str, driver: str, installation: str, read_only: bool = False) -> None:
        text = Text.assemble(
            (" ● ", "bold"),
            (label, "bold"),
            "  ",
            (driver, self.app.theme_variables.get("primary", "")),
            "  ",
            installation,
        )
        if read_only:
            text.append("  read-only", style="bold")
        self.update(text)


class LiveLine(Static):
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
        self.update(text)


class TotalsLine(Static):
    def show(self, snapshot: OverviewSnapshot, now: datetime) -> None:
        total = snapshot.totals
        variables = self.app.theme_variables
        self.update(
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
