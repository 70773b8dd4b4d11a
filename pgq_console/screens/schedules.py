"""Cron schedules: next and last run, overdue ones (no scheduler alive), run now, remove."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from pgq_console.core.schedules import (
    OVERDUE_AFTER,
    RemoveScheduleAction,
    RunScheduleNowAction,
    ScheduleRow,
    SchedulesSnapshot,
    fetch_schedules,
)
from pgq_console.core.text import printable
from pgq_console.screens.polled import PolledScreen
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable

COLUMNS = (
    ("entrypoint", "Entrypoint"),
    ("next", "Next run"),
    ("problem", "Problem"),
    ("expression", "Cron"),
    ("last", "Last run"),
    ("status", "Status"),
    ("heartbeat", "Heartbeat"),
    ("id", "Id"),
)


def relative(when: datetime | None, now: datetime) -> str:
    """'in 4m10s' or '3m05s ago'."""
    if when is None:
        return "–"
    delta = (when - now).total_seconds()
    if delta >= 0:
        return f"in {fmt.seconds(delta)}"
    return f"{fmt.seconds(-delta)} ago"


class SchedulesScreen(PolledScreen[SchedulesSnapshot]):
    title_text = "Schedules"
    interval_s = 5.0
    BINDINGS = [
        *PolledScreen.BINDINGS,
        Binding("n", "run_now", "Run now", id="schedules.run-now"),
        Binding("d", "remove", "Remove", id="schedules.remove"),
    ]
    WRITE_ACTIONS = frozenset({"run_now", "remove"})
    GLOSSARY = (
        ("Next run", "when its SchedulerManager runs it next (n makes it now)"),
        ("Problem", "overdue: next run > 60 s ago; scheduler died: running, no beat for 30 s"),
        ("Cron", "the schedule's cron expression"),
        ("Last run", "when it last ran (never: not since it was registered)"),
        ("Status", "queued: waiting for its next run; picked: running now"),
        ("Heartbeat", "the running scheduler's last beat (every second while it runs)"),
        ("→ N more", "columns left out for width: → and ← page through them"),
    )

    async def fetch(self) -> SchedulesSnapshot:
        return await fetch_schedules(self.backend)

    def compose_body(self) -> ComposeResult:
        yield Static(id="schedules-summary")
        yield LiveTable(COLUMNS, id="schedules-table")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#schedules-table", LiveTable).focus()

    def show(self, data: SchedulesSnapshot) -> None:
        now = self.clock.now()
        style = self.app.theme_variables
        overdue = data.overdue(now)
        summary = Text(f" {len(data.rows)} schedules")
        if overdue:
            summary.append(
                f"   {len(overdue)} need attention (overdue by over "
                f"{fmt.seconds(OVERDUE_AFTER.total_seconds())}: is a scheduler running?)",
                style=f"bold {style.get('status-held', '')}",
            )
        elif data.rows:
            summary.append("   all on time", style=style.get("status-ready", ""))
        else:
            summary.append(
                "   none: schedules appear when a SchedulerManager registers them",
                style=style.get("muted", ""),
            )
        self.query_one("#schedules-summary", Static).update(summary)
        rows = {str(row.id): self._cells(row, now) for row in data.rows}
        self.query_one("#schedules-table", LiveTable).apply(rows)

    def _cells(self, row: ScheduleRow, now: datetime) -> dict[str, Text]:
        style = self.app.theme_variables
        problem = row.problem(now)
        return {
            "entrypoint": Text(printable(row.entrypoint, limit=24)),
            "expression": Text(printable(row.expression, limit=20)),
            "next": Text(
                relative(row.next_run, now),
                style=style.get("status-held", "") if problem else "",
            ),
            "last": Text(relative(row.last_run, now) if row.last_run else "never"),
            "status": Text(
                row.status,
                style=style.get("status-picked", "") if row.status == "picked" else "",
            ),
            "heartbeat": Text(fmt.age(row.heartbeat, now)),
            "problem": Text(problem or "", style=f"bold {style.get('status-held', '')}"),
            "id": Text(str(row.id), justify="right"),
        }

    def selected(self) -> ScheduleRow | None:
        key = self.query_one("#schedules-table", LiveTable).selected_key
        if key is None or self.data is None:
            return None
        return next((row for row in self.data.rows if str(row.id) == key), None)

    def action_run_now(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("No schedule selected", severity="warning", markup=False)
            return
        self.confirm_action(RunScheduleNowAction.for_schedule(self.backend, row))

    def action_remove(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("No schedule selected", severity="warning", markup=False)
            return
        self.confirm_action(RemoveScheduleAction.for_schedule(self.backend, row))
