"""The actions on a list of jobs, shared by Jobs and Failures: open, mark, requeue, cancel,
enqueue a copy, copy the id; the bulk ones over the list's filter."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from textual.binding import Binding
from textual.screen import Screen

from pgq_console.core import actions
from pgq_console.core.actions import Action, ActionResult, Predicate, ids_predicate
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.screens.action_confirm import confirm_write
from pgq_console.widgets.job_table import JobTable
from pgq_console.widgets.live_table import LiveTable

WRITE_ACTIONS = frozenset({"requeue", "requeue_all", "cancel", "cancel_all", "copy_job"})


class JobActionsMixin:
    """Requeue / cancel / copy / yank over a `JobTable`, shared by Jobs and Failures."""

    backend: Backend
    clock: Clock
    notify: Callable[..., None]

    def _screen(self) -> Screen[None]:
        return cast("Screen[None]", self)

    def job_table(self) -> JobTable:
        raise NotImplementedError

    def filter_predicate(self) -> Predicate:
        """The scope of the bulk (`R`, `C`) writes: the predicate of the list shown."""
        raise NotImplementedError

    def bulk_problem(self) -> str | None:
        """Why bulk writes are off right now (a filter that does not parse, a list that could
        not be read or is still loading), or None."""
        raise NotImplementedError

    def _bulk_predicate(self) -> Predicate | None:
        problem = self.bulk_problem()
        if problem is not None:
            self.notify(f"bulk actions are off: {problem}", severity="warning", markup=False)
            return None
        return self.filter_predicate()

    def request_refresh(self) -> None:
        raise NotImplementedError

    def open_action(self, action: Action) -> None:
        def done(result: ActionResult | None) -> None:
            if result is not None:
                self.job_table().clear_marks()
            self.request_refresh()

        confirm_write(self._screen(), self.backend, action, done)

    def _targets(self, what: str) -> list[int] | None:
        ids = self.job_table().targets()
        if not ids:
            self.notify(f"no job to {what}: the list is empty", severity="warning", markup=False)
            return None
        return ids

    def action_requeue(self) -> None:
        if ids := self._targets("requeue"):
            self.open_action(actions.requeue(self.backend, ids_predicate(ids)))

    def action_requeue_all(self) -> None:
        if (predicate := self._bulk_predicate()) is not None:
            self.open_action(actions.requeue(self.backend, predicate))

    def action_cancel(self) -> None:
        if ids := self._targets("cancel"):
            self.open_action(actions.cancel(self.backend, ids_predicate(ids)))

    def action_cancel_all(self) -> None:
        if (predicate := self._bulk_predicate()) is not None:
            self.open_action(actions.cancel(self.backend, predicate))

    def action_copy_job(self) -> None:
        if ids := self._targets("copy"):
            # What the list showed of each (its payload size): a job that finishes before the
            # copy is made is copied from its log row only if it had no payload.
            shown = self.job_table().jobs
            seen = {i: shown[i].payload_bytes if i in shown else 1 for i in ids}
            self.open_action(actions.copy_jobs(self.backend, seen))

    def action_mark(self) -> None:
        self.job_table().toggle_mark()

    def action_yank_id(self) -> None:
        job_id = self.job_table().current_id
        if job_id is not None:
            self._screen().app.copy_to_clipboard(str(job_id))
            self.notify(f"copied job id {job_id}", markup=False)

    def action_open(self) -> None:
        from pgq_console.screens.job_detail import open_job_detail

        job_id = self.job_table().current_id
        if job_id is not None:  # read first, shown with the job (`open_job_detail`)
            open_job_detail(
                self._screen(), self.backend, self.clock, job_id, lambda _: self.request_refresh()
            )

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        # The table keeps `enter` for itself and reports it as RowSelected.
        event.stop()
        self.action_open()

    def job_palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("Open job detail", "the job under the cursor (enter)", self.action_open),
            ("Mark / unmark job", "space", self.action_mark),
            ("Copy job id", "to the clipboard, OSC 52 (y)", self.action_yank_id),
        ]
        if not self.backend.read_only:
            commands += [
                (
                    "Requeue marked jobs",
                    "held failures: marked or under cursor (r)",
                    self.action_requeue,
                ),
                (
                    "Requeue all matching",
                    "every held failure matching the filter (R)",
                    self.action_requeue_all,
                ),
                (
                    "Cancel marked jobs",
                    "queued/picked: marked or under cursor (c)",
                    self.action_cancel,
                ),
                (
                    "Cancel all matching",
                    "every queued/picked job matching the filter (C)",
                    self.action_cancel_all,
                ),
                (
                    "Enqueue a copy",
                    "same entrypoint, payload, headers, priority (E)",
                    self.action_copy_job,
                ),
            ]
        return commands


JOB_BINDINGS = [
    Binding("enter", "open", "Open", id="job.open"),
    Binding("space", "mark", "Mark", id="job.mark"),
    Binding("r", "requeue", "Requeue", id="job.requeue"),
    Binding("R", "requeue_all", "Requeue all", show=False, id="job.requeue-all"),
    Binding("c", "cancel", "Cancel", id="job.cancel"),
    Binding("C", "cancel_all", "Cancel all", show=False, id="job.cancel-all"),
    Binding("E", "copy_job", "Copy", id="job.copy-job"),
    Binding("y", "yank_id", "Copy id", id="job.yank-id"),
]
