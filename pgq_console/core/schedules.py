"""PgQueuer's cron schedules (`pgqueuer_schedules`): what runs when, and which ones nobody runs.

A `SchedulerManager` (inside `PgQueuer.run`) picks due rows about once a second, sets `next_run`
to the next cron time and beats the row's heartbeat while the job runs. So a `queued` schedule
whose `next_run` is well in the past means no scheduler for it is alive, and a `picked` one whose
heartbeat is older than 30 s means its scheduler died mid-run (pgqueuer re-picks it after 30 s).

"Run now" enqueues the schedule's entrypoint as an ordinary job (pgqueuer's own enqueue SQL);
"remove" deletes the row. Both are guarded actions (preview, confirm, audit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pgq_console.core.actions import Action, ActionPreview

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

# A scheduler polls every second; this much past next_run, nobody is running the schedule.
OVERDUE_AFTER = timedelta(seconds=60)
# pgqueuer's fetch_schedule re-picks a picked schedule whose heartbeat is older than this.
SCHEDULE_HEARTBEAT_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    expression: str
    entrypoint: str
    status: str
    next_run: datetime | None
    last_run: datetime | None
    heartbeat: datetime | None
    created: datetime | None

    def problem(self, now: datetime) -> str | None:
        """Why an operator should look at this schedule, or None."""
        if self.status == "picked":
            if self.heartbeat and now - self.heartbeat > SCHEDULE_HEARTBEAT_TIMEOUT:
                return "scheduler died"
            return None
        if self.next_run and now - self.next_run > OVERDUE_AFTER:
            return "overdue"
        return None


@dataclass(frozen=True)
class SchedulesSnapshot:
    taken_at: datetime  # the database's now()
    rows: tuple[ScheduleRow, ...]

    def overdue(self, now: datetime) -> tuple[ScheduleRow, ...]:
        return tuple(row for row in self.rows if row.problem(now))


def schedules_sql(backend: Backend) -> str:
    table = backend.installation.settings.qualified.schedules_table
    # One row with a NULL id when there is no schedule: the database's now() either way, in
    # one statement (not a second read for the time of an empty table).
    return f"""
SELECT s.id, s.expression, s.entrypoint, s.status::text AS status, s.next_run, s.last_run,
    s.heartbeat, s.created, n.db_now
FROM (SELECT now() AS db_now) AS n LEFT JOIN {table} AS s ON true
ORDER BY s.next_run NULLS LAST, s.entrypoint, s.id
"""


async def fetch_schedules(backend: Backend) -> SchedulesSnapshot:
    """Every schedule, soonest next run first. (Not `peek_schedule`: ours runs read-only.)"""
    rows = await backend.read(schedules_sql(backend))
    taken_at: datetime = rows[0]["db_now"]
    return SchedulesSnapshot(
        taken_at=taken_at,
        rows=tuple(
            ScheduleRow(
                id=int(r["id"]),
                expression=str(r["expression"]),
                entrypoint=str(r["entrypoint"]),
                status=str(r["status"]),
                next_run=r["next_run"],
                last_run=r["last_run"],
                heartbeat=r["heartbeat"],
                created=r["created"],
            )
            for r in rows
            if r["id"] is not None
        ),
    )


def _sample(row: ScheduleRow) -> tuple[str, ...]:
    def when(value: datetime | None) -> str:
        return value.isoformat(sep=" ", timespec="seconds") if value else ""

    return (str(row.id), row.entrypoint, row.expression, row.status, when(row.next_run))


SAMPLE_COLUMNS = ("id", "entrypoint", "expression", "status", "next_run")


@dataclass
class _ScheduleAction(Action):
    schedule: ScheduleRow | None = None
    table: str = ""
    queue_table: str = ""

    @classmethod
    def for_schedule(cls, backend: Backend, schedule: ScheduleRow) -> _ScheduleAction:
        names = backend.installation.settings.qualified
        return cls(schedule=schedule, table=names.schedules_table, queue_table=names.queue_table)

    def _describe(self) -> str:
        assert self.schedule is not None
        return (
            f"schedule {self.schedule.id} ({self.schedule.entrypoint}, {self.schedule.expression})"
        )

    async def _current(self, backend: Backend) -> tuple[ScheduleRow, ...]:
        assert self.schedule is not None
        snapshot = await fetch_schedules(backend)
        return tuple(
            row
            for row in snapshot.rows
            if row.id == self.schedule.id
            and row.entrypoint == self.schedule.entrypoint
            and row.expression == self.schedule.expression
        )


@dataclass
class RemoveScheduleAction(_ScheduleAction):
    """Delete one schedule row (id, entrypoint and expression must still match at commit)."""

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "schedule-remove", "Remove a schedule", "remove"
        self.changed_ids_are = "schedule_ids"

    def statement(self) -> str:
        return f"DELETE FROM {self.table} WHERE id = $1 AND entrypoint = $2 AND expression = $3"

    async def preview(self, backend: Backend) -> ActionPreview:
        rows = await self._current(backend)
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(rows),
            matching=len(rows),
            ids=tuple(row.id for row in rows),
            columns=SAMPLE_COLUMNS,
            sample=tuple(_sample(row) for row in rows),
            statement=self.statement(),
            predicate=self._describe(),
            noun="schedule",
            notes=(
                "A running SchedulerManager that registers this schedule inserts it again when "
                "it restarts: remove it from the code too.",
            ),
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        assert self.schedule is not None
        rows = await tx.fetch(
            self.statement() + " RETURNING id",
            self.schedule.id,
            self.schedule.entrypoint,
            self.schedule.expression,
        )
        return tuple(int(row["id"]) for row in rows)

    def predicate_description(self) -> str:
        return self._describe()


@dataclass
class RunScheduleNowAction(_ScheduleAction):
    """Make the schedule due now, so its own SchedulerManager runs it (not an ordinary job).

    `next_run` moves to now, only while the schedule is `queued` (not running) and still has
    the id, entrypoint and expression shown. The scheduler that registered it picks it at its
    next wake-up (at most the shortest period among the schedules it runs), runs it, records
    `last_run`, and sets the next cron `next_run` itself. Audited as schedule ids.
    """

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "schedule-run-now", "Run a schedule now", "run now"
        self.changed_ids_are = "schedule_ids"

    def statement(self) -> str:
        return (
            f"UPDATE {self.table} SET next_run = now(), updated = now() "
            "WHERE id = $1 AND entrypoint = $2 AND expression = $3 AND status = 'queued'"
        )

    async def preview(self, backend: Backend) -> ActionPreview:
        rows = await self._current(backend)
        runnable = tuple(row for row in rows if row.status == "queued")
        notes = [
            "Its SchedulerManager runs it at its next wake-up (at most the shortest period "
            "among the schedules it runs); if none runs, the schedule shows overdue.",
        ]
        if rows and not runnable:
            notes.append("It is running now (status picked): nothing to do.")
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(runnable),
            matching=len(rows),
            ids=tuple(row.id for row in runnable),
            columns=SAMPLE_COLUMNS,
            sample=tuple(_sample(row) for row in rows),
            statement=self.statement(),
            predicate=self._describe(),
            noun="schedule",
            notes=tuple(notes),
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        assert self.schedule is not None
        rows = await tx.fetch(
            self.statement() + " RETURNING id",
            self.schedule.id,
            self.schedule.entrypoint,
            self.schedule.expression,
        )
        return tuple(int(row["id"]) for row in rows)

    def predicate_description(self) -> str:
        return self._describe()
