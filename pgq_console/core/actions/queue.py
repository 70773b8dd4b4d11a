"""The queue-table actions of the Jobs and Failures screens: requeue, cancel, copy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions.base import DEDUPE_BLOCKED, ActionPreview, Observation, Predicate
from pgq_console.core.actions.rows import RowAction, notify_cancellation, notify_table_changed

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

# -- the queue-table actions of the Jobs and Failures screens --------------------------------------


@dataclass
class _QueueAction(RowAction):
    settings: Any = None  # pgqueuer DBSettings of the installation

    @classmethod
    def build(cls, backend: Backend, predicate: Predicate) -> Any:
        settings = backend.installation.settings
        return cls(table=settings.qualified.queue_table, predicate=predicate, settings=settings)

    @property
    def log_table(self) -> str:
        return str(self.settings.qualified.queue_table_log)


@dataclass
class RequeueAction(_QueueAction):
    """Held failures back to queued, as pgqueuer's `requeue_jobs` does (attempts reset, logged
    'queued'), then a synthetic table_changed_event wakes idle workers at once.

    A held job whose dedupe key is now taken by a queued or picked job is left alone (requeueing
    it would violate the unique index and fail the whole batch); so is every held job but the
    oldest of several sharing one key.
    """

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "requeue", "Requeue held failures", "requeue"
        failed = Predicate("job.status = 'failed'", (), "held (failed)")
        self.predicate = failed.and_(self.predicate)

    def write_sql(self) -> str:
        return f""",
free AS (
    SELECT DISTINCT ON (coalesce(job.dedupe_key, job.id::text)) job.id
    FROM {self.table} AS job JOIN target USING (id)
    WHERE job.dedupe_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM {self.table} AS live
        WHERE live.dedupe_key = job.dedupe_key AND live.status IN ('queued', 'picked'))
    ORDER BY coalesce(job.dedupe_key, job.id::text), job.id
),
requeued AS (
    UPDATE {self.table} AS job
    SET status = 'queued', execute_after = NOW(), updated = NOW(),
        attempts = 0, queue_manager_id = NULL
    WHERE job.id IN (SELECT id FROM free)
    RETURNING job.id, job.entrypoint, job.priority
),
logged AS (
    INSERT INTO {self.log_table} (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM requeued
)
SELECT id FROM requeued"""

    async def after_write(self, tx: Tx, changed: tuple[int, ...]) -> None:
        await notify_table_changed(tx, self.settings)

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        rows = await backend.read(
            f"SELECT job.id, job.status::text AS status FROM {self.table} AS job "
            "WHERE job.id = ANY($1::bigint[])",
            list(preview.ids),
        )
        live = tuple(sorted(int(r["id"]) for r in rows if r["status"] in ("queued", "picked")))
        held = sum(1 for r in rows if r["status"] == "failed")
        gone = preview.count - len(rows)
        return Observation(
            live,
            f"now {len(live)} of {preview.count} are queued or picked (requeued), {held} still "
            f"held, {gone} no longer in the queue",
        )

    def _blocked_sql(self) -> str:
        """Held rows among `$1` whose dedupe key a live job holds, or an older held row among
        `$1` holds too (only one of them can go back to queued: the unique index)."""
        return f"""SELECT count(*) AS n FROM {self.table} AS job
WHERE job.id = ANY($1::bigint[]) AND job.status = 'failed' AND job.dedupe_key IS NOT NULL
  AND (EXISTS (SELECT 1 FROM {self.table} AS live
               WHERE live.dedupe_key = job.dedupe_key AND live.status IN ('queued', 'picked'))
       OR EXISTS (SELECT 1 FROM {self.table} AS older
               WHERE older.id = ANY($1::bigint[]) AND older.id < job.id
                 AND older.status = 'failed' AND older.dedupe_key = job.dedupe_key))"""

    async def preview(self, backend: Backend) -> ActionPreview:
        preview = await super().preview(backend)
        if not preview.ids:
            return preview
        rows = await backend.read(self._blocked_sql(), list(preview.ids))
        blocked = int(rows[0]["n"])
        if not blocked:
            return preview
        note = f"{preview.count} held, {blocked} {DEDUPE_BLOCKED}"
        return replace(preview, notes=(note, *preview.notes), blocked_by_dedupe=blocked)

    async def count_blocked_by_dedupe(
        self, tx: Tx, preview: ActionPreview, changed: tuple[int, ...]
    ) -> int:
        left = sorted(set(preview.ids) - set(changed))
        if not left:
            return 0
        rows = await tx.fetch(self._blocked_sql(), left)
        return int(rows[0]["n"])


@dataclass
class CancelAction(_QueueAction):
    """Queued or picked jobs cancelled the way pgqueuer's `mark_job_as_cancelled` does: the row
    is deleted and logged 'canceled', and a cancellation_event tells the worker running it to
    cancel `ctx.cancellation` (cooperative: only code inside `with ctx.cancellation:` stops).

    Our own statement rather than `mark_job_as_cancelled` itself, because that deletes whatever
    ids it is given (a job held as failed meanwhile included) and runs outside our transaction.
    """

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "cancel", "Cancel jobs", "cancel"
        live = Predicate("job.status IN ('queued', 'picked')", (), "queued or picked")
        self.predicate = live.and_(self.predicate)

    def write_sql(self) -> str:
        return f""",
removed AS (
    DELETE FROM {self.table} AS job
    WHERE job.id IN (SELECT id FROM target)
    RETURNING job.id, job.entrypoint, job.priority
),
logged AS (
    INSERT INTO {self.log_table} (job_id, status, entrypoint, priority)
    SELECT id, 'canceled', entrypoint, priority FROM removed
)
SELECT id FROM removed"""

    async def after_write(self, tx: Tx, changed: tuple[int, ...]) -> None:
        await notify_cancellation(tx, self.settings, changed)

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        ids = list(preview.ids)
        still = await backend.read(
            f"SELECT job.id FROM {self.table} AS job WHERE job.id = ANY($1::bigint[])", ids
        )
        logged = await backend.read(
            f"SELECT DISTINCT job_id FROM {self.log_table} "
            "WHERE job_id = ANY($1::bigint[]) AND status = 'canceled'",
            ids,
        )
        present = {int(r["id"]) for r in still}
        cancelled = tuple(sorted({int(r["job_id"]) for r in logged} - present))
        return Observation(
            cancelled,
            f"now {len(cancelled)} of {preview.count} are cancelled (gone, logged canceled), "
            f"{len(present)} still in the queue",
        )


@dataclass
class CopyAction(_QueueAction):
    """A new queued job per selected job: same entrypoint, payload, headers and priority, runnable
    now. Like pgqueuer's enqueue it logs 'queued', and its INSERT notifies workers through the
    table trigger.

    The original's dedupe key is not copied (the original may still hold it). Each copy gets a
    key of its own instead, `pgq-console-copy:<submission token>:<source id>`: the token is made
    once per action (one confirm dialog), so applying the same submission again after a lost
    reply cannot make a second copy while the first is queued or picked (the unique index on
    live dedupe keys; `ON CONFLICT DO NOTHING` skips it).
    """

    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "copy", "Enqueue a copy", "enqueue a copy"
        # Reading the source: share-lock it, wait for a worker's brief lock instead of skipping.
        self.lock_clause = "FOR SHARE"

    @property
    def key_prefix(self) -> str:
        return f"{COPY_KEY_PREFIX}{self.token}:"

    def extra_args(self) -> tuple[object, ...]:
        return (self.key_prefix,)

    def write_sql(self) -> str:
        return f""",
copied AS (
    INSERT INTO {self.table}
        (priority, entrypoint, payload, execute_after, headers, status, dedupe_key)
    SELECT job.priority, job.entrypoint, job.payload, NOW(), job.headers, 'queued',
        {self.arg(1)}::text || job.id::text
    FROM {self.table} AS job JOIN target USING (id)
    ORDER BY job.id
    ON CONFLICT DO NOTHING
    RETURNING id, entrypoint, priority
),
logged AS (
    INSERT INTO {self.log_table} (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM copied
)
SELECT id FROM copied"""

    def preview_notes(self) -> tuple[str, ...]:
        return (
            "The changed ids are the new jobs' ids; each copy's dedupe key "
            f"{self.key_prefix}<id> keeps a retry from copying twice.",
        )

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        keys = [f"{self.key_prefix}{i}" for i in preview.ids]
        rows = await backend.read(
            f"SELECT job.id FROM {self.table} AS job WHERE job.dedupe_key = ANY($1::text[])",
            keys,
        )
        copies = tuple(sorted(int(r["id"]) for r in rows))
        shown = ", ".join(str(i) for i in copies[:5]) + (", …" if len(copies) > 5 else "")
        which = f" (job{'s' if len(copies) != 1 else ''} {shown})" if copies else ""
        return Observation(
            copies,
            f"now {len(copies)} of {preview.count} copies are queued{which}; a copy that "
            "already ran is no longer in the queue",
        )


# Dedupe keys of copies start with this (and the submission token): see CopyAction.
COPY_KEY_PREFIX = "pgq-console-copy:"


def requeue(backend: Backend, predicate: Predicate) -> RequeueAction:
    """Requeue the held failures matching `predicate` (`ids_predicate(...)` for marked jobs)."""
    action: RequeueAction = RequeueAction.build(backend, predicate)
    return action


def cancel(backend: Backend, predicate: Predicate) -> CancelAction:
    """Cancel the queued or picked jobs matching `predicate`."""
    action: CancelAction = CancelAction.build(backend, predicate)
    return action


def copy(backend: Backend, predicate: Predicate) -> CopyAction:
    """Enqueue a copy of each job matching `predicate`."""
    action: CopyAction = CopyAction.build(backend, predicate)
    return action
