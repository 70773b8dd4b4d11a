"""Failures: held jobs (status failed) and the last 24 h of exceptions grouped by fingerprint.

A group is one failure seen many times (core/fingerprint.py: exception type, message with ids
masked, the innermost frame of the application's own code). On the groups table, `r` requeues
every held job of the group (after the fix went out), `c` cancels the jobs that raised it and
wait for a retry; the sample of the highlighted group is shown below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Static

from pgq_console.core import actions
from pgq_console.core.actions import Predicate
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.jobs import (
    HELD_FILTER,
    TREND_HOURS,
    FailureGroup,
    FailureGroups,
    JobPage,
    failure_group_predicate,
    fetch_held_and_groups,
    fetch_page,
)
from pgq_console.core.refresh_loop import RefreshLoop
from pgq_console.core.text import printable
from pgq_console.screens.gating import ReadOnlyGate
from pgq_console.screens.job_actions import JOB_BINDINGS, WRITE_ACTIONS, JobActionsMixin
from pgq_console.screens.quiet_resume import QuietResume
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.job_table import JobTable, above_text
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.status_line import QuietStatic

HELD_LIMIT = 500
GROUP_LIMIT = 200
HELD_SECTION = Text("Held failures (status failed)", style="bold")
GROUP_INTERVAL_S = 10.0  # failure groups are re-read this often (held jobs every refresh)
GROUP_COLUMNS = (
    ("count", "Count"),
    ("held", "Held"),
    ("last", "Last"),
    ("failure", "Failure"),
    ("trend", "24h"),
    ("where", "Where"),
    ("first", "First"),
    ("entrypoints", "Entrypoints"),
)
GROUP_PRIORITIES = {
    "count": 0,
    "held": 1,
    "last": 2,
    "failure": 3,
    "where": 4,
    "trend": 5,
    "first": 6,
    "entrypoints": 7,
}
TREND_WIDTH = 12  # cells: two hours each


@dataclass
class FailuresLoaded(Message):
    held: JobPage | None
    groups: FailureGroups
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FailuresLoaded)


class GroupTable(LiveTable):
    """One row per fingerprint, newest last seen first; the cursor stays on its group."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(GROUP_COLUMNS, id=id, priorities=GROUP_PRIORITIES)
        self.groups: dict[str, FailureGroup] = {}

    def show_groups(self, groups: tuple[FailureGroup, ...], now: datetime) -> None:
        rows = {}
        for group in groups:
            where = group.fingerprint.frame.rsplit("/", 1)[-1]
            rows[group.key] = {
                "count": Text(fmt.count(group.count), justify="right"),
                "held": Text(fmt.count(group.held), justify="right"),
                "last": Text(fmt.age(group.last_seen, now), justify="right"),
                "failure": Text(printable(group.fingerprint.title(), limit=40)),
                "trend": Text(fmt.sparkline(group.hourly, TREND_WIDTH)),
                "where": Text(printable(where, limit=32) or "–"),
                "first": Text(fmt.age(group.first_seen, now), justify="right"),
                "entrypoints": Text(printable(", ".join(group.entrypoints), limit=40)),
            }
        self.groups = {group.key: group for group in groups}
        self.apply(rows)  # the cursor follows its group through a reorder

    @property
    def current(self) -> FailureGroup | None:
        key = self.selected_key
        return None if key is None else self.groups.get(key)


class FailuresScreen(ReadOnlyGate, JobActionsMixin, QuietResume):
    GLOSSARY = (
        ("Held", "jobs whose handler failed with on_failure=hold: status failed, kept for you"),
        ("Count", "exceptions of the group logged in the last 24 h (retries included)"),
        ("Held (group)", "of those jobs, how many are still held now (r requeues them)"),
        ("Last / First", "time since its newest / oldest occurrence in the window"),
        ("Failure", "exception type and message, ids masked (<n>, <uuid>, <hex>, <str>...)"),
        ("24h", "occurrences per 2 hours over the last day, the right end now"),
        ("Where", "the innermost frame of your own code (not a library) that raised it"),
        ("Entrypoints", "entrypoints whose jobs raised it"),
        ("→ N more", "columns left out for width: → and ← page through them"),
    )
    WRITE_ACTIONS = WRITE_ACTIONS
    BINDINGS = [
        *JOB_BINDINGS,
        Binding("tab", "switch_table", "Held/Groups", id="failures.switch-table"),
        Binding("escape", "back", "Back", show=False, id="failures.back"),
    ]

    def __init__(self, backend: Backend, clock: Clock, *, interval_s: float = 2.0) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.interval_s = max(interval_s, 2.0)  # grouping reads the log: not too often
        self.loop = RefreshLoop(
            clock,
            interval_s=self.interval_s,
            visible=lambda: self.is_current,
            read_ahead=True,
            read_ahead_after=backend.first_reading,
        )
        self.read_error: str | None = "the list is still loading"  # until the first read
        self.held_index = False  # the held rows shown were read with the held-failures index
        self._first_read: FailuresLoaded | None = None  # read before the first paint
        self._groups: FailureGroups | None = None  # the groups last read, and when
        self._grouped_at = 0.0

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="failures-header")
        yield Banner(id="failures-error")
        yield Static(HELD_SECTION, classes="section", id="held-section")
        yield JobTable(id="held-table")
        yield Static(
            Text("Failure groups, last 24 h, newest first", style="bold"), classes="section"
        )
        yield GroupTable(id="group-table")
        with VerticalScroll(id="group-sample"):
            yield Static(Text(""), id="group-traceback")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#failures-error", Banner).hide()
        self.query_one("#held-table", JobTable).focus()
        # Nothing is painted as if it were data before the first read: no "0 held".
        self.query_one("#held-table", JobTable).loading = True
        self.query_one(GroupTable).loading = True
        self.query_one("#failures-header", QuietStatic).show_fields(
            [Text("Failures", style="bold"), Text("reading…")], indent=""
        )
        if self._first_read is not None:  # read before this screen was mounted
            self.show(self._first_read)
            self._first_read = None
        self.refresh_loop()

    async def prepare_to_show(self) -> None:
        """Before the first visit (built, not mounted yet): read the held jobs and groups for
        the first paint. Later visits show the rows kept up to date and refresh at once."""
        if self.is_mounted:
            return
        held, groups = await fetch_held_and_groups(
            self.backend, self.clock.now(), held_limit=HELD_LIMIT, group_limit=GROUP_LIMIT
        )
        self._first_read = FailuresLoaded(held, groups)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Held jobs cannot be cancelled (only queued or picked ones); a group's jobs waiting for
        # a retry can: `c` on the groups table.
        if action == "cancel_all" or (action == "cancel" and not self._groups_focused()):
            return False
        return super().check_action(action, parameters)

    def job_table(self) -> JobTable:
        return self.query_one("#held-table", JobTable)

    def filter_predicate(self) -> Predicate:
        return HELD_FILTER.scope(
            self.backend.installation.settings.qualified.queue_table,
            held_index=self.held_index,
        )

    def bulk_problem(self) -> str | None:
        return self.read_error

    def request_refresh(self) -> None:
        self.loop.request_refresh()

    def on_screen_resume(self) -> None:
        if self.is_current:  # not when built ahead, off screen: its first read is under way
            self.request_refresh()  # rows shown from the last visit are replaced at once

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        commands = self.job_palette_commands()
        if not self.backend.read_only:
            commands.append(
                (
                    "Requeue failure group",
                    "every held job of the highlighted exception group",
                    self.action_requeue_group,
                )
            )
            commands.append(
                (
                    "Cancel failure group",
                    "jobs of the highlighted group queued or running again after it",
                    self.action_cancel_group,
                )
            )
        return commands

    @work(group="refresh", exclusive=True, exit_on_error=False)
    async def refresh_loop(self) -> None:
        await self.loop.run(self._refresh_round)

    async def _refresh_round(self) -> None:
        try:
            # Grouping reads regular expressions over the log: every GROUP_INTERVAL_S, or at
            # once when asked (the first read, a visit, an action), not on every held-jobs read.
            # Both reads are sent at once: a key press waits one round trip on a pool, not two.
            groups = self._groups
            due = self.clock.monotonic() - self._grouped_at >= GROUP_INTERVAL_S
            if groups is None or self.loop.asked or due:
                held, groups = await fetch_held_and_groups(
                    self.backend, self.clock.now(), held_limit=HELD_LIMIT, group_limit=GROUP_LIMIT
                )
                self._groups, self._grouped_at = groups, self.clock.monotonic()
            else:
                held = await fetch_page(self.backend, HELD_FILTER, limit=HELD_LIMIT)
            assert groups is not None
        except Exception as exc:  # backed off, and said as every screen says it
            error = self.loop.read_failed(exc, self.backend)
            self.post_message(FailuresLoaded(None, FailureGroups((), 0), error))
            return
        self.loop.succeeded()
        self.post_message(FailuresLoaded(held, groups))

    @on(FailuresLoaded)
    def show(self, message: FailuresLoaded) -> None:
        banner = self.query_one("#failures-error", Banner)
        if message.error or message.held is None:
            self.read_error = message.error or "the held jobs could not be read"
            banner.show(f"⚠ {self.read_error} — bulk actions are off", variant="error")
            return
        self.read_error = None
        self.held_index = message.held.held_index
        banner.hide()
        now = self.clock.now()
        self.job_table().apply_jobs(
            message.held.rows, now, newest_first=True, has_more=message.held.has_more
        )
        self.query_one(GroupTable).show_groups(message.groups.groups, now)
        self.job_table().loading = False
        self.query_one(GroupTable).loading = False
        self._show_sample()
        self._show_header(message.held, message.groups)

    def _show_header(self, held: JobPage, groups: FailureGroups) -> None:
        shown = len(groups.groups)
        held_text = f"{len(held.rows)}{'+' if held.has_more else ''} held"
        if shown < groups.total:  # never a silent cap
            groups_text = f"showing {shown} of {groups.total:,} failure groups in 24 h"
        else:
            groups_text = (
                f"{groups.total:,} failure group{'s' if groups.total != 1 else ''} in 24 h"
            )
        fields = [Text.assemble(("Failures ", "bold"), held_text)]
        if held.scanned_cap:  # no held-failures index: never a silent bound
            fields.append(Text(f"(newest {held.scan_limit:,} rows scanned)", "italic"))
        fields.append(Text(groups_text))
        if groups.partial:
            fields.append(
                Text(f"(from the newest {groups.scanned:,} of {groups.exceptions:,} exceptions)")
            )
        if self.job_table().marked:
            fields.append(Text(f"{len(self.job_table().marked)} marked", "bold"))
        if self.backend.read_only:
            fields.append(Text("READ-ONLY", "bold"))
        self.query_one("#failures-header", QuietStatic).show_fields(fields, indent="")

    @on(LiveTable.RowsAbove, "#held-table")
    def _held_rows_above(self, event: LiveTable.RowsAbove) -> None:
        # Newer held jobs scrolled out of view above the cursor's row are said beside the
        # table's title (the cursor on the first row follows the newest: `FOLLOW_TOP`).
        above = above_text(event.count, newest_first=True)
        text = HELD_SECTION if above is None else Text.assemble(HELD_SECTION, "  ", above)
        self.query_one("#held-section", Static).update(text)

    @on(LiveTable.RowHighlighted, "#group-table")
    def _group_highlighted(self) -> None:
        self._show_sample()

    def _show_sample(self) -> None:
        try:
            group = self.query_one(GroupTable).current
            target = self.query_one("#group-traceback", Static)
        except NoMatches:
            # The console quits while the table's last highlight is delivered: the sample's
            # widgets are gone already (a crash in place of a clean exit, 1 in 50 under load).
            return
        if group is None:
            target.update(Text("no exceptions logged in the last 24 h"))
            return
        muted = self.app.theme_variables.get("muted", "")
        text = Text()
        text.append(printable(group.fingerprint.title(), limit=400), "bold")
        if group.fingerprint.frame:
            text.append("\nat " + printable(group.fingerprint.frame, limit=400))
        text.append(
            f"\nlatest: job {group.sample_job_id}: " + printable(group.sample_message, limit=400)
        )
        text.append(
            f"\n{group.count} in 24 h, {group.held} held, per hour: "
            f"{fmt.sparkline(group.hourly, TREND_HOURS)}\n",
            muted,
        )
        for line in group.sample_traceback.splitlines()[-30:]:
            text.append(printable(line) + "\n")
        target.update(text)

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # `c` (cancel) belongs to the groups table only

    def _groups_focused(self) -> bool:
        # The footer asks (check_action) of a screen still being built ahead, or being torn
        # down: no table yet is no focus, not a NoMatches out of the footer's recompose.
        tables = self.query(GroupTable)
        return bool(tables) and tables.first().has_focus

    def action_switch_table(self) -> None:
        if self._groups_focused():
            self.set_focus(self.job_table())
        else:
            self.set_focus(self.query_one(GroupTable))

    def action_requeue(self) -> None:
        if self._groups_focused():
            self.action_requeue_group()
        else:
            super().action_requeue()

    def action_requeue_group(self) -> None:
        group = self._group_for_action()
        if group is None:
            return
        log_table = self.backend.installation.settings.qualified.queue_table_log
        predicate = failure_group_predicate(
            group.fingerprint, log_table, statuses=("failed",), since=group.since
        )
        self.open_action(actions.requeue(self.backend, predicate))

    def action_cancel(self) -> None:
        if self._groups_focused():
            self.action_cancel_group()
        else:
            super().action_cancel()

    def action_cancel_group(self) -> None:
        """Cancel the jobs that raised this group's exception and are queued or running again."""
        group = self._group_for_action()
        if group is None:
            return
        log_table = self.backend.installation.settings.qualified.queue_table_log
        predicate = failure_group_predicate(
            group.fingerprint, log_table, statuses=("exception", "failed"), since=group.since
        )
        self.open_action(actions.cancel(self.backend, predicate))

    def _group_for_action(self) -> FailureGroup | None:
        group = self.query_one(GroupTable).current
        if group is None:
            self.notify("no failure group highlighted", severity="warning", markup=False)
            return None
        if self.read_error is not None:
            self.notify(
                f"bulk actions are off: {self.read_error}", severity="warning", markup=False
            )
            return None
        return group

    def action_open(self) -> None:
        if self._groups_focused():
            from pgq_console.screens.job_detail import JobDetailScreen

            group = self.query_one(GroupTable).current
            if group is not None:
                self.app.push_screen(JobDetailScreen(self.backend, self.clock, group.sample_job_id))
            return
        super().action_open()

    def action_mark(self) -> None:
        super().action_mark()

    def action_back(self) -> None:
        if self.job_table().marked:
            self.job_table().clear_marks()
