"""The jobs list: a live table keyed by job id, reconciled in place, with marks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from rich.text import Text

from pgq_console.core.jobs import JobRow
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable

COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", " "),
    ("id", "Id"),
    ("entrypoint", "Entrypoint"),
    ("status", "Status"),
    ("prio", "Prio"),
    ("attempts", "Tries"),
    ("age", "Age"),
    ("updated", "Updated"),
    ("payload", "Payload"),
)
# Which columns a narrow terminal keeps: 0 always, then dropped from the highest number.
PRIORITIES = {
    "mark": 0,
    "id": 0,
    "entrypoint": 1,
    "status": 2,
    "age": 3,
    "attempts": 4,
    "prio": 5,
    "updated": 6,
    "payload": 7,
}
ENTRYPOINT_WIDTH = 28
MARK = "●"
# The status shown for the job under the cursor once a read no longer finds it in the list
# (it finished, was deleted, or no longer matches the filter).
GONE = "gone"


class JobTable(LiveTable):
    """One row per job; `apply_jobs` removes vanished rows, updates changed cells, adds new ones.

    The cursor on the first row stays there as newer jobs arrive (`LiveTable.FOLLOW_TOP`);
    anywhere else it stays on its job, and `rows_above` counts the rows scrolled above it.
    """

    FOLLOW_TOP = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, id=id, priorities=PRIORITIES, fixed_columns=2)
        self.marked: set[int] = set()
        self.jobs: dict[int, JobRow] = {}

    def _cells(self, job: JobRow, now: datetime) -> dict[str, Text]:
        status_style = {"failed": "bold", "picked": "italic", GONE: "dim"}.get(job.status, "")
        return {
            "mark": Text(MARK if job.id in self.marked else " "),
            "id": Text(str(job.id), justify="right"),
            "entrypoint": Text(printable(job.entrypoint, limit=ENTRYPOINT_WIDTH)),
            "status": Text(_status_label(job, now), style=status_style),
            "prio": Text(str(job.priority), justify="right"),
            "attempts": Text(str(job.attempts), justify="right"),
            "age": Text(fmt.age(job.created, now), justify="right"),
            "updated": Text(fmt.age(job.updated, now), justify="right"),
            "payload": Text(_size(job.payload_bytes), justify="right"),
        }

    def apply_jobs(
        self,
        rows: tuple[JobRow, ...],
        now: datetime,
        *,
        newest_first: bool,
        has_more: bool = False,
    ) -> None:
        """Show exactly these jobs, ordered by id; except the job under the cursor: when the read
        covered its place and did not find it, its row stays, status `gone`, until the cursor
        leaves it (the cursor never lands on another job by itself, so a key pressed next acts
        on the job the operator was looking at, and `E` copies it from its log row). Except on
        the first row: there the cursor follows the list's top (newer jobs arriving above it)."""
        fresh = {row.id: row for row in rows}
        followed = self.current_id
        if followed is not None and followed not in fresh and followed in self.jobs:
            ids = fresh.keys()
            covered = not has_more or (
                bool(ids) and (followed > min(ids) if newest_first else followed < max(ids))
            )
            # On the first row with a job now before it, the cursor goes to that job
            # (FOLLOW_TOP): the vanished one is not kept.
            ahead = bool(ids) and (max(ids) > followed if newest_first else min(ids) < followed)
            if covered and not (self.cursor_row == 0 and ahead):
                fresh[followed] = replace(self.jobs[followed], status=GONE)
        self.jobs = fresh
        order = sorted(self.jobs, reverse=newest_first)
        self.apply({str(job_id): self._cells(self.jobs[job_id], now) for job_id in order})
        self.marked &= set(self.jobs)

    def reset(self) -> None:
        """Empty the table for a new result set."""
        self.clear()
        self.jobs.clear()
        self.marked.clear()

    def append(self, rows: tuple[JobRow, ...], now: datetime) -> None:
        """A further keyset page, below the loaded ones."""
        added = {job.id: job for job in rows if job.id not in self.jobs}
        if not added:
            return
        self.jobs.update(added)
        cells: dict[str, Mapping[str, Text]] = {key: self.get_row(key) for key in self.row_keys}
        for job_id, job in added.items():
            cells[str(job_id)] = self._cells(job, now)
        self.apply(cells)

    @property
    def current_id(self) -> int | None:
        key = self.selected_key
        return None if key is None else int(key)

    def toggle_mark(self) -> None:
        job_id = self.current_id
        if job_id is None:
            return
        self.marked ^= {job_id}
        self.update_row(str(job_id), {"mark": Text(MARK if job_id in self.marked else " ")})

    def clear_marks(self) -> None:
        for job_id in list(self.marked):
            if job_id in self.jobs:
                self.update_row(str(job_id), {"mark": Text(" ")})
        self.marked.clear()

    def targets(self) -> list[int]:
        """The marked jobs, else the job under the cursor."""
        if self.marked:
            return sorted(self.marked)
        current = self.current_id
        return [current] if current is not None else []


def above_text(count: int, newest_first: bool) -> Text | None:
    """What says that rows are scrolled out of view above the list (None: none are)."""
    if count <= 0:
        return None
    return Text(f"↑ {count} {'newer' if newest_first else 'older'} above (g: top)", style="bold")


def _status_label(job: JobRow, now: datetime) -> str:
    if job.status == "queued" and job.execute_after > now:
        return "deferred"
    return job.status


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"
