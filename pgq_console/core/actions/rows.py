"""Row actions: a previewed, re-checked write over rows of one table, and the NOTIFYs that
go with it in the same transaction."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions.base import (
    _IDS_PER_NOTIFY,
    ACTION_ROW_CAP,
    SAMPLE_SIZE,
    TRUE,
    Action,
    ActionPreview,
    Predicate,
)

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

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
