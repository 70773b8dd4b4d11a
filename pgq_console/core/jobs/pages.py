"""Keyset pages of the queue table (newest or oldest first, never OFFSET)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgq_console.core.jobs.filter import JobFilter
from pgq_console.core.jobs.held import held_index_usable

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

PAGE_SIZE = 100


@dataclass(frozen=True)
class JobRow:
    """One row of the jobs list (no payload: pages stay small)."""

    id: int
    entrypoint: str
    status: str
    priority: int
    attempts: int
    created: datetime
    updated: datetime
    execute_after: datetime
    heartbeat: datetime
    queue_manager_id: str | None
    dedupe_key: str | None
    payload_bytes: int


@dataclass(frozen=True)
class JobPage:
    rows: tuple[JobRow, ...]
    has_more: bool
    newest_first: bool
    # Only the newest rows were looked at (`JobFilter.scope`) and the table holds more.
    scanned_cap: bool = False
    held_index: bool = False  # read with the held-failures index (`scope(held_index=...)`)
    scan_limit: int = 0  # when `scanned_cap`: how many of the newest rows were looked at

    @property
    def last_id(self) -> int | None:
        return self.rows[-1].id if self.rows else None


_LIST_COLUMNS = (
    "job.id, job.entrypoint, job.status::text AS status, job.priority, job.attempts, "
    "job.created, job.updated, job.execute_after, job.heartbeat, "
    "job.queue_manager_id::text AS queue_manager_id, job.dedupe_key, "
    "coalesce(octet_length(job.payload), 0) AS payload_bytes"
)


def list_query(
    table: str,
    job_filter: JobFilter,
    *,
    after_id: int | None = None,
    until_id: int | None = None,
    newest_first: bool = True,
    limit: int = PAGE_SIZE,
    held_index: bool = False,
) -> tuple[str, list[object]]:
    """The SQL and arguments of one keyset page of the list (see `fetch_page`)."""
    predicate = job_filter.scope(table, held_index=held_index)
    args: list[object] = list(predicate.args)
    where = [f"({predicate.sql})"]
    if after_id is not None:
        args.append(after_id)
        where.append(f"job.id {'<' if newest_first else '>'} ${len(args)}")
    if until_id is not None:
        args.append(until_id)
        where.append(f"job.id {'>=' if newest_first else '<='} ${len(args)}")
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT {_LIST_COLUMNS} FROM {table} AS job WHERE {' AND '.join(where)} "
        f"ORDER BY job.id {order} LIMIT {int(limit) + 1}"
    )
    return sql, args


def _with_scan_cut(sql: str, table: str, cap: int, *, newest_first: bool) -> str:
    """A bounded page and whether the bound left any row out, in the same round trip (two
    index probes). An id span under `cap` means fewer rows than that (ids come from a
    sequence): nothing was cut. One row even when the page is empty (`id` NULL then)."""
    return (
        f"SELECT page.*, span.cut AS scan_cut FROM (SELECT coalesce(max(id) - min(id) >= {cap}, "
        f"false) AS cut FROM {table}) AS span LEFT JOIN LATERAL ({sql}) AS page ON true "
        f"ORDER BY page.id {'DESC' if newest_first else 'ASC'}"
    )


async def fetch_page(
    backend: Backend,
    job_filter: JobFilter,
    *,
    after_id: int | None = None,
    until_id: int | None = None,
    newest_first: bool = True,
    limit: int = PAGE_SIZE,
) -> JobPage:
    """One keyset page: the `limit` jobs after `after_id` in id order matching the filter.

    `until_id` bounds the other end (inclusive): a refresh re-reads exactly the loaded window.
    A `status:failed` filter is read exactly when the held-failures index exists, else over
    the newest rows only (`scanned_cap`).
    """
    held_index = job_filter.reads_held and await held_index_usable(backend)
    table = backend.installation.settings.qualified.queue_table
    sql, args = list_query(
        table,
        job_filter,
        after_id=after_id,
        until_id=until_id,
        newest_first=newest_first,
        limit=limit,
        held_index=held_index,
    )
    cap = job_filter.scan_limit(held_index=held_index)
    if cap:
        sql = _with_scan_cut(sql, table, cap, newest_first=newest_first)
    rows = await backend.read_heavy(sql, *args)
    cut = bool(cap) and bool(rows) and bool(rows[0]["scan_cut"])
    if cap:
        rows = [row for row in rows if row["id"] is not None]
    return JobPage(
        rows=tuple(_job_row(row) for row in rows[:limit]),
        has_more=len(rows) > limit,
        newest_first=newest_first,
        scanned_cap=cut,
        held_index=held_index,
        scan_limit=cap if cut else 0,
    )


def _job_row(row: dict[str, Any]) -> JobRow:
    return JobRow(
        id=int(row["id"]),
        entrypoint=str(row["entrypoint"]),
        status=str(row["status"]),
        priority=int(row["priority"]),
        attempts=int(row["attempts"]),
        created=row["created"],
        updated=row["updated"],
        execute_after=row["execute_after"],
        heartbeat=row["heartbeat"],
        queue_manager_id=row["queue_manager_id"],
        dedupe_key=row["dedupe_key"],
        payload_bytes=int(row["payload_bytes"]),
    )
