"""Guarded write actions: preview, confirm, apply in one transaction, audit.

Every write the console makes goes through this module, so every write is previewed, confirmed,
re-checked, transactional and audited the same way:

1. `action.preview(backend)` reads (read-only transaction) what the action would touch and
   returns an `ActionPreview`: the exact count, the keys it will touch (`ids`), a few sample
   rows, the statement it will run and a human description of the predicate.
2. The UI (`screens/action_confirm.py`, `ActionConfirmScreen`) shows the preview; above
   `TYPED_CONFIRMATION_ABOVE` rows the operator must type the count. An optional reason is asked.
3. `await execute(backend, action, preview, typed=..., reason=...)` checks the confirmation,
   refuses in read-only mode, then calls `action.apply(tx, preview)` inside ONE
   `backend.transaction()`, announces the write on the audit channel inside the same
   transaction (delivered only on commit), and after commit appends the audit line
   (core/audit.py). It returns an `ActionResult` ("previewed N, changed M").

Row actions (`RowAction`) re-check the preview's predicate at apply time and only touch rows
that were previewed AND still match AND are not locked right now:

    WITH target AS MATERIALIZED (
        SELECT job.id FROM <table> AS job
        WHERE job.id = ANY($1::bigint[]) AND (<predicate>)
        ORDER BY job.id FOR UPDATE SKIP LOCKED)
    <the action's write, over `target`, ending in SELECT id ...>

so a worker racing the action (dequeue, completion, a second console) is never double-touched:
a row it locked is skipped, a row it changed no longer matches. `changed <= previewed` always.

How to add an action
--------------------
A write over rows of one table: subclass `RowAction` and give it

* `name` (audit/palette id, e.g. "reclaim"), `title` ("Reclaim stale jobs"), `verb` ("reclaim");
* `table` (qualified, from `backend.installation.settings.qualified`) and `predicate`
  (a `Predicate`: SQL over the alias `job` with `$1..$n` placeholders, its args, a description);
* `write_sql()`: the statement's tail after the `target` CTE; it must end with a SELECT that
  returns the touched (or created) ids as column `id`. `$1` is the previewed ids; the
  predicate's own placeholders are shifted by one (use `self.arg(n)` for extra args you add
  in `extra_args()`);
* optionally `after_write(tx, changed_ids)` for NOTIFYs that belong to the same transaction
  (`notify_table_changed` wakes idle workers; `notify_cancellation` is PgQueuer's cancel).

Anything else (schema upgrade, a schedule change): subclass `Action` and implement `preview`
and `apply` yourself; `execute()` still gives you confirmation, read-only refusal and the audit.
Register a palette command and a key in the screen, open `ActionConfirmScreen(action)`.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.core import audit
from pgq_console.core.backend import READ_ONLY_REFUSAL
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import error_line

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

# Above this many rows the operator types the number to confirm.
TYPED_CONFIRMATION_ABOVE = 100
# One action touches at most this many rows; the preview says when more match.
ACTION_ROW_CAP = 50_000
SAMPLE_SIZE = 5
# NOTIFY payloads must stay below 8000 bytes: cancellation events carry at most this many ids.
_IDS_PER_NOTIFY = 400

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Predicate:
    """A boolean SQL expression over the alias `job`, `$1..$n` bound to `args`, and its meaning."""

    sql: str
    args: tuple[object, ...] = ()
    description: str = ""

    def shifted(self, by: int) -> str:
        """The SQL with every `$n` renumbered to `$(n + by)`, to follow other parameters."""
        return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + by}", self.sql)

    def and_(self, other: Predicate) -> Predicate:
        """Both predicates; `other`'s placeholders follow this one's.

        An empty predicate is a bug upstream (a filter word that parsed to nothing): dropping
        it would widen the result to everything, so it is refused instead.
        """
        if not self.sql.strip() or not other.sql.strip():
            raise ValueError("an empty predicate cannot be combined: it would match everything")
        sql = f"({self.sql}) AND ({other.shifted(len(self.args))})"
        # "held (failed) and held" says one thing twice: a description the other already
        # contains is left out.
        first, second = self.description, other.description
        if second and second in first:
            second = ""
        elif first and first in second:
            first = ""
        description = " and ".join(d for d in (first, second) if d)
        return Predicate(sql, self.args + other.args, description)


TRUE = Predicate("TRUE", (), "")


def ids_predicate(ids: Sequence[int]) -> Predicate:
    """Exactly these job ids."""
    shown = ", ".join(str(i) for i in list(ids)[:5]) + (", …" if len(ids) > 5 else "")
    label = f"id {shown}" if len(ids) == 1 else f"{len(ids)} marked jobs ({shown})"
    return Predicate("job.id = ANY($1::bigint[])", (list(ids),), label)


@dataclass(frozen=True)
class ActionPreview:
    """What an action will do, as read just now. UI-free: cells are plain (untrusted) strings."""

    action: str  # the action's name
    title: str
    verb: str
    count: int  # rows it will touch (the length of `ids` for row actions)
    matching: int  # rows matching the predicate (more than `count` when capped)
    ids: tuple[int, ...]
    columns: tuple[str, ...]
    sample: tuple[tuple[str, ...], ...]
    statement: str
    predicate: str
    notes: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()  # "$2 = [31, 32]": the statement's other bound values
    # Rows previewed that a live job with the same dedupe key keeps from being written now.
    blocked_by_dedupe: int = 0
    noun: str = "job"  # what `count` counts: "job" or "schedule"

    def counted(self, count: int | None = None) -> str:
        """`count` (default: this preview's) with the noun: "1 job", "3 schedules"."""
        n = self.count if count is None else count
        return f"{n} {self.noun}{'' if n == 1 else 's'}"

    @property
    def needs_typed_confirmation(self) -> bool:
        return self.count > TYPED_CONFIRMATION_ABOVE


@dataclass(frozen=True)
class ActionResult:
    """What an applied action did."""

    action: str
    verb: str
    previewed: int
    changed: int
    ids: tuple[int, ...]  # the rows changed, or created (copies)
    notes: tuple[str, ...] = ()
    audit_problem: str | None = None  # the write committed but the audit file could not be written
    blocked_by_dedupe: int = 0  # left alone: a live job holds the same dedupe key

    @property
    def summary(self) -> str:
        text = f"{self.verb}: previewed {self.previewed}, changed {self.changed}"
        reasons = []
        if self.blocked_by_dedupe:
            reasons.append(f"{self.blocked_by_dedupe} {DEDUPE_BLOCKED}")
        other = self.previewed - self.changed - self.blocked_by_dedupe
        if other > 0:
            reasons.append(
                f"{other} had changed, were locked by a worker or no longer matched,"
                " and were left alone"
            )
        if reasons:
            text += f" ({'; '.join(reasons)})"
        return text


@dataclass
class Action(ABC):
    """A guarded write. Subclasses set `name`, `title`, `verb` and implement preview/apply."""

    name: str = field(init=False, default="action")
    title: str = field(init=False, default="Action")
    verb: str = field(init=False, default="changed")
    # What the ids `apply` returns are, as the audit records them: "job_ids" or "schedule_ids".
    changed_ids_are: str = field(init=False, default="job_ids")

    @abstractmethod
    async def preview(self, backend: Backend) -> ActionPreview:
        """Read what the action would do (read-only)."""

    @abstractmethod
    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        """Do it inside `tx` (re-checking the preview's predicate); the ids changed."""

    def predicate_description(self) -> str:
        return ""

    async def count_blocked_by_dedupe(
        self, tx: Tx, preview: ActionPreview, changed: tuple[int, ...]
    ) -> int:
        """Of the previewed rows left unchanged, how many a live job's dedupe key blocked."""
        return 0

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        """After a lost reply to COMMIT: what is now true of what the action would change."""
        return Observation((), "the console cannot tell for this action; look before retrying")


@dataclass(frozen=True)
class Observation:
    """What a re-read after an unknown outcome found: the rows that look written, in words."""

    ids: tuple[int, ...]
    text: str


class OutcomeUnknown(ConsoleError):
    """The write's COMMIT was sent but its reply was lost: it may or may not have committed."""


def reply_lost(exc: BaseException) -> bool:
    """Whether an error raised while committing leaves the outcome unknown: anything but an
    answer from the server (an SQLSTATE outside class 08, connection exception), which
    means it rolled back."""
    sqlstate = getattr(exc, "sqlstate", None)
    return not (isinstance(sqlstate, str) and sqlstate and not sqlstate.startswith("08"))


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection went away (rather than the server refusing): a
    statement sent before it may or may not have committed."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith("08")
    if isinstance(exc, OSError | TimeoutError | EOFError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionDoesNotExistError", "OperationalError", "InterfaceError"})


DEDUPE_BLOCKED = "blocked by a live job with the same dedupe key"


def confirmation_problem(preview: ActionPreview, typed: str | None) -> str | None:
    """Why the operator's confirmation does not allow the action, or None."""
    if preview.count == 0:
        return f"nothing to do: no {preview.noun} matches"
    if preview.needs_typed_confirmation:
        entered = (typed or "").strip().replace(",", "").replace("_", "")
        if entered != str(preview.count):
            return f"type {preview.count} to confirm {preview.verb} of {preview.counted()}"
    return None


async def execute(
    backend: Backend,
    action: Action,
    preview: ActionPreview,
    *,
    typed: str | None = None,
    reason: str | None = None,
) -> ActionResult:
    """Apply a previewed action in one transaction, announce and audit it.

    Raises ConsoleError (a one-line message; nothing was written) when read-only, when the
    confirmation does not match, or when the database refuses.
    """
    if backend.read_only:
        raise ConsoleError(READ_ONLY_REFUSAL)
    problem = confirmation_problem(preview, typed)
    if problem:
        raise ConsoleError(problem)
    reason = (reason or "").strip() or None
    committing = False
    try:
        async with backend.transaction() as tx:
            changed = await action.apply(tx, preview)
            blocked = await action.count_blocked_by_dedupe(tx, preview, changed)
            schedules = action.changed_ids_are == "schedule_ids"
            record = audit.AuditRecord(
                action=action.name,
                predicate=preview.predicate,
                count=len(changed),
                previewed=preview.count,
                job_ids=() if schedules else changed,
                schedule_ids=changed if schedules else (),
                database=backend.label,
                reason=reason,
            )
            if changed:
                await audit.announce(tx, backend.installation.channel, record)
            committing = True  # leaving the block sends COMMIT
    except ConsoleError:
        raise
    except Exception as exc:
        if committing and reply_lost(exc):
            await _unknown_outcome(backend, action, preview, reason, exc)
        message = f"{action.title} failed, nothing was changed: {error_line(exc, limit=300)}"
        raise ConsoleError(message) from None
    audit_problem = None
    if changed:
        try:
            audit.append(record)
        except OSError as exc:
            audit_problem = f"the audit file could not be written: {error_line(exc, limit=300)}"
    return ActionResult(
        action=action.name,
        verb=action.verb,
        previewed=preview.count,
        changed=len(changed),
        ids=changed,
        notes=preview.notes,
        audit_problem=audit_problem,
        blocked_by_dedupe=blocked,
    )


async def _unknown_outcome(
    backend: Backend,
    action: Action,
    preview: ActionPreview,
    reason: str | None,
    exc: BaseException,
) -> None:
    """Re-read what is now true, audit it as `outcome: unknown`, raise OutcomeUnknown."""
    try:
        found = await action.observe(backend, preview)
    except Exception as reread:
        found = Observation(
            (), f"the re-read failed too ({error_line(reread, limit=300)}); look before retrying"
        )
    schedules = action.changed_ids_are == "schedule_ids"
    record = audit.AuditRecord(
        action=action.name,
        predicate=preview.predicate,
        count=len(found.ids),
        previewed=preview.count,
        job_ids=() if schedules else found.ids,
        schedule_ids=found.ids if schedules else (),
        database=backend.label,
        reason=reason,
        outcome="unknown",
        found=found.text,
    )
    audit_note = ""
    try:
        audit.append(record)
    except OSError as problem:
        audit_note = f"; the audit file could not be written: {error_line(problem, limit=300)}"
    raise OutcomeUnknown(
        f"{action.title}: the outcome is unknown: the connection was lost after COMMIT was "
        f"sent ({error_line(exc, limit=300)}). Re-read: {found.text}. Applying again is safe: "
        f"it re-checks every row and cannot write twice{audit_note}"
    )


# -- row actions over the queue table ------------------------------------------------------------

SAMPLE_COLUMNS = ("id", "entrypoint", "status", "priority", "attempts", "created")


@dataclass
class RowAction(Action):
    """An action over rows of one table, chosen by a predicate, re-checked at apply time."""

    table: str = ""
    predicate: Predicate = TRUE
    # Lock the target rows; SKIP LOCKED leaves rows a worker holds right now alone.
    lock_clause: str = field(init=False, default="FOR UPDATE SKIP LOCKED")

    @abstractmethod
    def write_sql(self) -> str:
        """The statement after the `target` CTE, ending in `SELECT id ...` of the touched ids."""

    def extra_args(self) -> tuple[object, ...]:
        """Arguments after the predicate's, for `write_sql` (refer to them with `self.arg(n)`)."""
        return ()

    def arg(self, n: int) -> str:
        """The placeholder of the n-th (1-based) extra argument."""
        return f"${1 + len(self.predicate.args) + n}"

    async def after_write(self, tx: Tx, changed: tuple[int, ...]) -> None:
        """Same-transaction follow-ups (NOTIFYs) once the rows are written."""

    def statement(self) -> str:
        return (
            "WITH target AS MATERIALIZED (\n"
            f"    SELECT job.id FROM {self.table} AS job\n"
            f"    WHERE job.id = ANY($1::bigint[]) AND ({self.predicate.shifted(1)})\n"
            f"    ORDER BY job.id {self.lock_clause}\n"
            f"){self.write_sql()}"
        )

    def predicate_description(self) -> str:
        return self.predicate.description or "all jobs"

    def scope_query(self, limit: int = ACTION_ROW_CAP + 1) -> tuple[str, tuple[object, ...]]:
        """The SELECT of the ids the preview offers (the rows the action would touch)."""
        return (
            f"SELECT job.id FROM {self.table} AS job WHERE {self.predicate.sql} "
            f"ORDER BY job.id LIMIT {int(limit)}",
            self.predicate.args,
        )

    async def preview(self, backend: Backend) -> ActionPreview:
        where = self.predicate.sql
        sql, args = self.scope_query()
        rows = await backend.read(sql, *args)
        ids = tuple(int(row["id"]) for row in rows)
        notes: list[str] = []
        matching = len(ids)
        if len(ids) > ACTION_ROW_CAP:
            ids = ids[:ACTION_ROW_CAP]
            count_rows = await backend.read(
                f"SELECT count(*) AS n FROM {self.table} AS job WHERE {where}",
                *self.predicate.args,
            )
            matching = int(count_rows[0]["n"])
            notes.append(
                f"{matching} jobs match; this run touches the first {ACTION_ROW_CAP} by id."
                " Run it again for the rest."
            )
        sample = await self._sample(backend, ids[:SAMPLE_SIZE])
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(ids),
            matching=matching,
            ids=ids,
            columns=SAMPLE_COLUMNS,
            sample=sample,
            statement=self.statement(),
            predicate=self.predicate_description(),
            notes=tuple(notes) + self.preview_notes(),
            parameters=tuple(
                f"${n} = {_short(value)}"
                for n, value in enumerate((*self.predicate.args, *self.extra_args()), start=2)
            ),
        )

    def preview_notes(self) -> tuple[str, ...]:
        return ()

    async def _sample(self, backend: Backend, ids: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
        if not ids:
            return ()
        columns = ", ".join(f"job.{c}" for c in SAMPLE_COLUMNS)
        rows = await backend.read(
            f"SELECT {columns} FROM {self.table} AS job "
            "WHERE job.id = ANY($1::bigint[]) ORDER BY job.id",
            list(ids),
        )
        return tuple(tuple(_cell(row[c]) for c in SAMPLE_COLUMNS) for row in rows)

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        rows = await tx.fetch(
            self.statement(), list(preview.ids), *self.predicate.args, *self.extra_args()
        )
        changed = tuple(sorted(int(row["id"]) for row in rows))
        if changed:
            await self.after_write(tx, changed)
        return changed


def _short(value: object, limit: int = 80) -> str:
    """A bound value the way SQL would spell it: `interval '90 seconds'`, not Python's repr."""
    if isinstance(value, timedelta):
        text = f"interval '{value.total_seconds():g} seconds'"
    elif isinstance(value, datetime):
        text = f"'{value.isoformat(sep=' ')}'"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


# -- NOTIFY helpers (same transaction: delivered on commit) ----------------------------------------


async def notify_table_changed(tx: Tx, settings: Any) -> None:
    """Wake idle workers: UPDATEs do not NOTIFY (statement-level trigger, internals §1.5)."""
    from pgqueuer.domain import models as pgq_models

    event = pgq_models.TableChangedEvent(
        channel=settings.channel,
        operation="update",
        table=settings.queue_table,
        sent_at=pgq_models.utc_now(),
        type="table_changed_event",
    )
    await tx.execute("SELECT pg_notify($1, $2)", str(settings.channel), event.model_dump_json())


async def notify_cancellation(tx: Tx, settings: Any, ids: Sequence[int]) -> None:
    """PgQueuer's cancellation_event, so running handlers see `ctx.cancellation` cancelled."""
    from pgqueuer.domain import models as pgq_models
    from pgqueuer.domain.types import JobId

    id_list = list(ids)
    for start in range(0, len(id_list), _IDS_PER_NOTIFY):
        event = pgq_models.CancellationEvent(
            channel=settings.channel,
            ids=[JobId(i) for i in id_list[start : start + _IDS_PER_NOTIFY]],
            sent_at=pgq_models.utc_now(),
            type="cancellation_event",
        )
        await tx.execute("SELECT pg_notify($1, $2)", str(settings.channel), event.model_dump_json())


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
