"""The Jobs screen: the queue table, filtered, keyset-paged, live; and the actions on it.

A refresh worker re-reads the loaded window (top to the lowest loaded id) every interval or on
request and posts an immutable `JobsLoaded`; the table is reconciled by job id. Scrolling to the
bottom loads the next keyset page. Write keys open `ActionConfirmScreen`; they are hidden and
refused when the console is read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from pgq_console.core.actions import Predicate
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.jobs import (
    PAGE_SIZE,
    SEARCH_SCAN_CAP,
    JobFilter,
    JobPage,
    fetch_page,
    parse_filter,
)
from pgq_console.core.refresh_loop import RefreshLoop
from pgq_console.core.text import printable
from pgq_console.screens.gating import ReadOnlyGate
from pgq_console.screens.job_actions import JOB_BINDINGS, WRITE_ACTIONS, JobActionsMixin
from pgq_console.screens.quiet_resume import QuietResume
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter
from pgq_console.widgets.job_table import JobTable, above_text
from pgq_console.widgets.live_table import LiveTable
from pgq_console.widgets.status_line import QuietStatic

# The refresh re-reads at most this many loaded rows; deeper pages stay as loaded.
REFRESH_WINDOW = 2000


@dataclass
class JobsLoaded(Message):
    page: JobPage
    filter_text: str
    append: bool
    job_filter: JobFilter | None = None  # the parsed filter these rows were read with
    error: str | None = None  # the read failed: no rows, bulk actions off
    generation: int = 0  # the screen's `row_set_generation` when the read began

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobsLoaded) and not message.append and not self.append


class JobsScreen(ReadOnlyGate, JobActionsMixin, QuietResume):
    """Every job in the queue table, newest first, filtered by the `/` line."""

    GLOSSARY = (
        ("Status", "queued, deferred (queued, execute_after in the future), picked, failed (held)"),
        (
            "gone",
            "the job under the cursor left the list (finished, or no longer matches): kept"
            " until the cursor moves; E copies it from its log row",
        ),
        ("Prio", "priority: higher is dequeued first"),
        ("Tries", "attempts: retries so far (PgQueuer's retry counter)"),
        ("Age / Updated", "since the job was enqueued / last changed"),
        ("Payload", "the payload's size; enter shows it"),
        ("●", "marked: r / c / E act on the marked jobs"),
        (
            "filter",
            "/ edits it, enter applies it; esc cancels the edit (the filter shown stays; one"
            " that did not parse stays said, bulk actions off, until a second esc);"
            " a further esc (marks first), or an empty line and enter, clears it",
        ),
        ("→ N more", "columns left out for width: → and ← page through them"),
    )

    WRITE_ACTIONS = WRITE_ACTIONS
    BINDINGS = [
        *JOB_BINDINGS,
        Binding("slash", "filter", "Filter", id="jobs.filter"),
        Binding("o", "toggle_order", "Order", id="jobs.toggle-order"),
        Binding(
            "escape",
            "back",
            "Back",
            show=False,
            tooltip="cancel a filter edit (the filter stays), clear the marks, then the filter",
            id="jobs.back",
        ),
    ]

    def __init__(self, backend: Backend, clock: Clock, *, interval_s: float = 2.0) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.interval_s = interval_s
        self.job_filter = JobFilter()
        self.shown_filter: JobFilter | None = None  # the filter of the rows on screen
        self.shown_held_index = False  # those rows were read with the held-failures index
        self.shown_scan_limit = 0  # those rows come from the newest this many (0: from all)
        self.filter_problem: str | None = None  # the filter line holds words that do not parse
        self.newest_first = True
        self.has_more = False
        self.loading_more = False
        # Moves on when a page is appended or the result set is replaced: a refresh read that
        # began before a page was appended covers fewer rows than are shown, and would take
        # that page away again.
        self.row_set_generation = 0
        self.error: str | None = None
        self._first_page: JobsLoaded | None = None  # read before the first paint
        # A hidden screen does not read (its reads would only add to the console's database
        # cost); `on_screen_resume` wakes it when it is shown again.
        self.loop = RefreshLoop(
            clock,
            interval_s=interval_s,
            visible=lambda: self.is_current,
            read_ahead=True,
            read_ahead_after=backend.first_reading,
        )

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="jobs-header")
        yield Input(
            placeholder="filter: ep:name status:failed id:123 prio:>5 age:>10m payload:text !ep:x",
            id="jobs-filter",
        )
        yield Banner(id="jobs-error")
        yield JobTable(id="jobs-table")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        line = self.query_one("#jobs-filter", Input)
        line.value = self.job_filter.text  # set before the first visit (`filter_entrypoint`)
        line.display = bool(self.job_filter.text)
        self.query_one("#jobs-error", Banner).hide()
        self.query_one(JobTable).focus()
        self._show_header()
        if self._first_page is not None:  # read before this screen was mounted
            self.show_jobs(self._first_page)
            self._first_page = None
        self.refresh_loop()

    def job_table(self) -> JobTable:
        return self.query_one(JobTable)

    def filter_predicate(self) -> Predicate:
        assert self.shown_filter is not None
        return self.shown_filter.scope(
            self.backend.installation.settings.qualified.queue_table,
            held_index=self.shown_held_index,
        )

    def bulk_problem(self) -> str | None:
        if self.filter_problem is not None:
            return f"the filter does not parse: {self.filter_problem}"
        if self.error is not None:
            return f"the list could not be read: {self.error}"
        if self.shown_filter is not self.job_filter:
            return "the list of this filter is still loading"
        return None

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            ("Filter jobs", "ep: status: id: prio: age: payload: header: (/)", self.action_filter),
            ("Toggle job order", "newest or oldest first (o)", self.action_toggle_order),
            *self.job_palette_commands(),
        ]

    def request_refresh(self) -> None:
        self.loop.request_refresh()

    def on_screen_resume(self) -> None:
        # Rows shown from the last visit are replaced at once, unless `prepare_to_show` just
        # read them; either way the loop starts polling again now that the screen is seen.
        # (Being built ahead also resumes a screen, off screen: its first read is under way.)
        if self.is_current:
            self.loop.request_refresh(unless_fresh=True)

    async def prepare_to_show(self) -> None:
        """Read and show a fresh first page while hidden: the screen appears with it. Before
        the first visit (built, not mounted yet) the page is kept for the first paint."""
        message = await self._read(append=False)
        if self.is_mounted:
            self.show_jobs(message)
        else:
            self._first_page = message
        # Rows just read count for half an interval; after a failed read the loop's backoff
        # stands (its banner says when the next try is).
        self.loop.mark_fresh(
            self.interval_s / 2 if message.error is None else self.loop.retry_delay
        )

    @work(group="refresh", exclusive=True, exit_on_error=False)
    async def refresh_loop(self) -> None:
        await self.loop.run(self._refresh_round)

    async def _refresh_round(self) -> None:
        message = await self._read(append=False)
        if message.error is None:  # a failed read was reported to the loop by `_read`
            self.loop.succeeded()
        self.post_message(message)

    async def _load(self, *, append: bool) -> None:
        self.post_message(await self._read(append=append))

    async def _read(self, *, append: bool) -> JobsLoaded:
        table = self.job_table() if self.is_mounted else None
        job_filter, newest_first = self.job_filter, self.newest_first
        generation = self.row_set_generation
        try:
            if append:
                assert table is not None
                page = await fetch_page(
                    self.backend,
                    job_filter,
                    after_id=_edge(table, newest_first),
                    newest_first=newest_first,
                )
            else:
                loaded = len(table.jobs) if table is not None else 0
                big = table is not None and loaded > PAGE_SIZE
                until = _edge(table, newest_first) if table is not None and big else None
                page = await fetch_page(
                    self.backend,
                    job_filter,
                    until_id=until,
                    newest_first=newest_first,
                    limit=min(max(PAGE_SIZE, loaded), REFRESH_WINDOW),
                )
        except Exception as exc:
            # Any failed read (the loop's, a visit's, the next page's) backs the loop off and
            # is said as every screen says it: a lost connection with its next try.
            error = self.loop.read_failed(exc, self.backend)
        else:
            return JobsLoaded(page, job_filter.text, append, job_filter, generation=generation)
        empty = JobPage((), False, newest_first)
        return JobsLoaded(empty, job_filter.text, append, job_filter, error, generation)

    @on(JobsLoaded)
    def show_jobs(self, message: JobsLoaded) -> None:
        if message.filter_text != self.job_filter.text or message.page.newest_first != (
            self.newest_first
        ):
            return  # a page of the previous filter
        if message.generation != self.row_set_generation:
            # Read before a page was appended or the result set was replaced: stale.
            if not message.append:
                self.request_refresh()  # read again, every row shown
            return
        self.error = message.error
        if message.error is None:
            self.shown_filter = message.job_filter
            self.shown_held_index = message.page.held_index
            self.shown_scan_limit = message.page.scan_limit
        self._show_banner()
        table = self.job_table()
        now = self.clock.now()
        if self.error:
            # A failed next page is asked for again by the next scroll to the end.
            self.loading_more = self.loading_more and not message.append
        elif message.append:
            table.append(message.page.rows, now)
            self.row_set_generation += 1
            self.has_more = message.page.has_more
            self.loading_more = False
        else:
            table.apply_jobs(
                message.page.rows,
                now,
                newest_first=self.newest_first,
                has_more=message.page.has_more,
            )
            if len(message.page.rows) <= PAGE_SIZE or not self.has_more:
                self.has_more = message.page.has_more
        self._show_header()

    def _show_banner(self) -> None:
        banner = self.query_one("#jobs-error", Banner)
        problem = self.filter_problem or self.error
        if problem:
            banner.show(f"⚠ {problem} — bulk actions are off", variant="error")
        else:
            banner.hide()

    def _show_header(self) -> None:
        table = self.job_table()
        order = "newest first" if self.newest_first else "oldest first"
        fields = [
            Text.assemble(
                ("Jobs ", "bold"), f"{len(table.jobs)}{'+' if self.has_more else ''} shown"
            ),
            Text(order),
        ]
        if self.job_filter.text:
            fields.append(
                Text.assemble("filter ", (printable(self.job_filter.text, limit=60), "bold"))
            )
        if self.job_filter.searches_content:
            fields.append(
                Text(f"(content search: newest {SEARCH_SCAN_CAP:,} rows scanned)", "italic")
            )
        elif self.shown_filter is self.job_filter and self.shown_scan_limit:
            # No held-failures index (Database screen, f): never a silent bound.
            limit = self.shown_scan_limit
            fields.append(Text(f"(status:failed: newest {limit:,} rows scanned)", "italic"))
        if table.marked:
            fields.append(Text(f"{len(table.marked)} marked", "bold"))
        if (above := above_text(table.rows_above, self.newest_first)) is not None:
            fields.append(above)
        if self.backend.read_only:
            fields.append(Text("READ-ONLY", "bold"))
        self.query_one("#jobs-header", QuietStatic).show_fields(fields, indent="")

    @on(LiveTable.RowsAbove, "#jobs-table")
    def _rows_above(self) -> None:
        # Rows scrolled out of view above the cursor's row are said in the header (the cursor
        # on the first row follows the newest: `FOLLOW_TOP`).
        self._show_header()

    @on(LiveTable.RowHighlighted, "#jobs-table")
    def maybe_load_more(self, event: LiveTable.RowHighlighted) -> None:
        table = self.job_table()
        if self.has_more and not self.loading_more and event.cursor_row >= table.row_count - 3:
            self.loading_more = True
            self.load_more()

    @work(group="more", exclusive=True, exit_on_error=False)
    async def load_more(self) -> None:
        await self._load(append=True)

    def action_filter(self) -> None:
        line = self.query_one("#jobs-filter", Input)
        line.display = True
        line.value = self.job_filter.text
        # Now, not after the keys already queued: `KeyboardApp.on_key` puts keys typed in the
        # same burst ("/ep:x" pasted, or typed fast over SSH) into the focused line.
        self.set_focus(line)

    @on(Input.Submitted, "#jobs-filter")
    def apply_filter(self, event: Input.Submitted) -> None:
        try:
            parsed = parse_filter(event.value)
        except ConsoleError as exc:
            # The line keeps what was typed; until it parses, no bulk write is offered.
            self.filter_problem = str(exc)
            self._show_banner()
            self.notify(str(exc), severity="error", markup=False)
            return
        self.set_filter(parsed)
        event.input.display = bool(parsed.text)
        self.set_focus(self.job_table())

    def filter_entrypoint(self, name: str) -> None:
        """Show exactly one entrypoint's jobs (Enter on the overview), the line saying so."""
        if not self.is_mounted:  # built for this visit: its first read and line use the filter
            self.job_filter = JobFilter(
                text=f"ep:{name}",
                terms=(Predicate("job.entrypoint = $1", (name,), f"ep {name!r}"),),
            )
            return
        line = self.query_one("#jobs-filter", Input)
        line.value = f"ep:{name}"
        line.display = True
        self.filter_problem = None
        self._show_banner()
        self.set_filter(
            JobFilter(
                text=f"ep:{name}",
                terms=(Predicate("job.entrypoint = $1", (name,), f"ep {name!r}"),),
            )
        )
        self.set_focus(self.job_table())

    def set_filter(self, job_filter: JobFilter) -> None:
        self.job_filter = job_filter
        self.filter_problem = None  # a filter that parsed replaces whatever the line held
        self._show_banner()
        self._reset()

    def _reset(self) -> None:
        table = self.job_table()
        table.reset()  # a new result set
        self.row_set_generation += 1
        self.has_more = False
        self.loading_more = False
        self._show_header()
        self.request_refresh()

    def action_toggle_order(self) -> None:
        self.newest_first = not self.newest_first
        self._reset()

    def action_back(self) -> None:
        line = self.query_one("#jobs-filter", Input)
        if line.has_focus and self.filter_problem:
            # A filter that was submitted and does not parse stays on the line, said by the
            # banner, bulk actions off, until it is fixed or a further esc puts the applied
            # one back: the operator asked for fewer rows than the list shows.
            self.set_focus(self.job_table())
        elif line.has_focus or self.filter_problem or line.value.strip() != self.job_filter.text:
            # esc cancels an edit of the filter line: the line shows the filter the rows were
            # read with again, and that filter stays applied (an esc that cleared it widened
            # the list, and the bulk actions with it, behind an operator who only backed out).
            self.cancel_filter_edit()
        elif self.job_table().marked:
            self.job_table().clear_marks()
            self._show_header()
        elif self.job_filter.text:
            # A further esc clears the applied filter (the edit, then the marks first: one esc
            # undoes one thing), and says so.
            line.value = ""
            line.display = False
            self.set_filter(JobFilter())
            self.notify("filter cleared: every job", markup=False)

    def cancel_filter_edit(self) -> None:
        """Close the filter line without applying it: the applied filter and its rows stay."""
        line = self.query_one("#jobs-filter", Input)
        line.value = self.job_filter.text
        line.display = bool(self.job_filter.text)
        if self.filter_problem is not None:  # what did not parse is gone from the line
            self.filter_problem = None
            self._show_banner()
        self.set_focus(self.job_table())

    def action_mark(self) -> None:
        super().action_mark()
        self._show_header()


def _edge(table: JobTable, newest_first: bool) -> int | None:
    if not table.jobs:
        return None
    return min(table.jobs) if newest_first else max(table.jobs)
