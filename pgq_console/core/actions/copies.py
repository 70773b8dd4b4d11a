"""Copies of jobs (`E`): from the queue while a job is there, from its last log row once it
finished (the log keeps neither payload nor headers: only what the console read is copied)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions.base import (
    SAMPLE_SIZE,
    Action,
    ActionPreview,
    Observation,
    ids_predicate,
)
from pgq_console.core.actions.queue import COPY_KEY_PREFIX, CopyAction, copy
from pgq_console.core.actions.rows import _cell, _short

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx


@dataclass
class CopyFromLogAction(Action):
    """Copies of jobs that left the queue (finished) before the operator's copy reached them,
    made from each job's last log row (its entrypoint and priority) and what the console had
    read of it.

    The log keeps neither payload nor headers. A job is copied this way when the console read
    them before it finished (`known`: the job's detail screen, payload whole), or when the
    operator's list showed it without a payload (`seen` 0: the copy then has no headers, the
    preview says so). Any other job would run without its payload and is left out, the preview
    says why. Each copy gets a dedupe key `pgq-console-copy:<token>:<source id>` like
    `CopyAction`'s: applying twice copies once.
    """

    settings: Any = None
    # The jobs to copy: id -> payload bytes the operator's list showed.
    seen: dict[int, int] = field(default_factory=dict)
    # Payload and headers (JSON text) the console read of a job while it was queued.
    known: dict[int, tuple[bytes | None, str | None]] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "copy", "Enqueue a copy", "enqueue a copy"
        self.creates_jobs = True

    @property
    def table(self) -> str:
        return str(self.settings.qualified.queue_table)

    @property
    def log_table(self) -> str:
        return str(self.settings.qualified.queue_table_log)

    @property
    def key_prefix(self) -> str:
        return f"{COPY_KEY_PREFIX}{self.token}:"

    def _finished_sql(self) -> str:
        """The last log row of each of `$1` that is no longer in the queue."""
        return (
            "SELECT DISTINCT ON (l.job_id) l.job_id, l.entrypoint, l.priority, "
            "l.status::text AS status, l.created "
            f"FROM {self.log_table} AS l "
            "WHERE l.job_id = ANY($1::bigint[]) "
            f"AND NOT EXISTS (SELECT 1 FROM {self.table} AS q WHERE q.id = l.job_id) "
            "ORDER BY l.job_id, l.created DESC, l.id DESC"
        )

    def statement(self) -> str:
        return f"""WITH source AS MATERIALIZED (
    {self._finished_sql()}
),
known AS (
    SELECT * FROM unnest($3::bigint[], $4::bytea[], $5::text[]) AS k(job_id, payload, headers)
),
copied AS (
    INSERT INTO {self.table}
        (priority, entrypoint, payload, execute_after, headers, status, dedupe_key)
    SELECT source.priority, source.entrypoint, known.payload, NOW(), known.headers::jsonb,
        'queued', $2::text || source.job_id::text
    FROM source LEFT JOIN known USING (job_id)
    ORDER BY source.job_id
    ON CONFLICT DO NOTHING
    RETURNING id, entrypoint, priority
),
logged AS (
    INSERT INTO {self.log_table} (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM copied
)
SELECT id FROM copied"""

    def _known_args(
        self, ids: Sequence[int]
    ) -> tuple[list[int], list[bytes | None], list[str | None]]:
        chosen = [i for i in ids if i in self.known]
        return (
            chosen,
            [self.known[i][0] for i in chosen],
            [self.known[i][1] for i in chosen],
        )

    def predicate_description(self) -> str:
        ids = sorted(self.seen)
        shown = ", ".join(str(i) for i in ids[:5]) + (", …" if len(ids) > 5 else "")
        return f"finished job{'s' if len(ids) != 1 else ''} {shown}, from the log"

    def _copyable(self, job_id: int) -> bool:
        return job_id in self.known or self.seen.get(job_id, 1) == 0

    async def preview(self, backend: Backend) -> ActionPreview:
        rows = await backend.read(self._finished_sql(), sorted(self.seen))
        copyable = [r for r in rows if self._copyable(int(r["job_id"]))]
        with_payload = sorted(
            int(r["job_id"]) for r in rows if not self._copyable(int(r["job_id"]))
        )
        notes: list[str] = []
        if with_payload:
            shown = ", ".join(str(i) for i in with_payload[:5])
            notes.append(
                f"Not copied: job {shown} had a payload, which the log does not keep (its copy "
                "would run without it); open a job (enter) before it finishes to copy it whole."
            )
        if copyable:
            from_detail = sum(1 for r in copyable if int(r["job_id"]) in self.known)
            notes.append(
                "Already finished: the copy takes entrypoint and priority from the log row"
                + (
                    ", payload and headers as this console read them"
                    if from_detail == len(copyable)
                    else "; the log keeps no headers, so a copy of a job without a payload has none"
                )
                + "; runnable now."
            )
            notes.append(
                "The changed ids are the new jobs' ids; each copy's dedupe key "
                f"{self.key_prefix}<id> keeps a retry from copying twice."
            )
        columns = ("id", "entrypoint", "priority", "last status", "logged")
        ids = tuple(int(r["job_id"]) for r in copyable)
        known_ids, payloads, headers = self._known_args(ids)
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(ids),
            matching=len(rows),
            ids=ids,
            columns=columns,
            sample=tuple(
                (
                    str(r["job_id"]),
                    str(r["entrypoint"]),
                    str(r["priority"]),
                    str(r["status"]),
                    _cell(r["created"]),
                )
                for r in copyable[:SAMPLE_SIZE]
            ),
            statement=self.statement(),
            predicate=self.predicate_description(),
            notes=tuple(notes),
            parameters=(
                f"$2 = {_short(self.key_prefix)}",
                f"$3 = {_short(known_ids)}",
                f"$4 = the payloads read ({sum(len(p or b'') for p in payloads)} bytes)",
                f"$5 = the headers read ({_short(headers)})",
            ),
            nothing=(
                "Already finished with a payload the log does not keep"
                if with_payload
                else "No such job in the queue or its log"
            ),
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        rows = await tx.fetch(
            self.statement(), list(preview.ids), self.key_prefix, *self._known_args(preview.ids)
        )
        return tuple(sorted(int(row["id"]) for row in rows))

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        keys = [f"{self.key_prefix}{i}" for i in preview.ids]
        rows = await backend.read(
            f"SELECT job.id FROM {self.table} AS job WHERE job.dedupe_key = ANY($1::text[])",
            keys,
        )
        copies = tuple(sorted(int(r["id"]) for r in rows))
        return Observation(
            copies,
            f"now {len(copies)} of {preview.count} copies are queued; a copy that already ran "
            "is no longer in the queue",
        )


@dataclass
class CopyJobsAction(Action):
    """`E`: copies of the jobs the operator chose, from the queue while they are in it; when
    every one of them has finished meanwhile (a busy queue), from the log (`CopyFromLogAction`).
    """

    in_queue: CopyAction | None = None
    finished: CopyFromLogAction | None = None
    chosen: Action | None = None

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "copy", "Enqueue a copy", "enqueue a copy"
        self.creates_jobs = True

    async def preview(self, backend: Backend) -> ActionPreview:
        assert self.in_queue is not None and self.finished is not None
        preview = await self.in_queue.preview(backend)
        self.chosen = self.in_queue
        if preview.count:
            gone = len(self.finished.seen) - preview.count
            if gone > 0:
                note = f"{gone} of the chosen jobs already finished: not copied (E on them alone)."
                preview = replace(preview, notes=(note, *preview.notes))
            return preview
        self.chosen = self.finished
        return await self.finished.preview(backend)

    def _chosen(self) -> Action:
        assert self.chosen is not None, "preview first"
        return self.chosen

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        return await self._chosen().apply(tx, preview)

    async def count_blocked_by_dedupe(
        self, tx: Tx, preview: ActionPreview, changed: tuple[int, ...]
    ) -> int:
        return await self._chosen().count_blocked_by_dedupe(tx, preview, changed)

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        return await self._chosen().observe(backend, preview)


def copy_jobs(
    backend: Backend,
    seen: dict[int, int],
    known: dict[int, tuple[bytes | None, str | None]] | None = None,
) -> CopyJobsAction:
    """`E` on jobs `seen` (id -> the payload bytes the operator's list showed; `known`: payload
    and headers JSON the console read of them): copies from the queue, or from the log once
    they all finished."""
    settings = backend.installation.settings
    return CopyJobsAction(
        in_queue=copy(backend, ids_predicate(sorted(seen))),
        finished=CopyFromLogAction(settings=settings, seen=dict(seen), known=dict(known or {})),
    )
