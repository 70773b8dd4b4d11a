"""Keyset pages of the queue table (newest or oldest first, never OFFSET)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgq_console.core.jobs.filter import JobFilter

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
    scanned_cap: bool = False  # a content search stopped at SEARCH_SCAN_CAP rows

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
) -> tuple[str, list[object]]:
    """The SQL and arguments of one keyset page of the list (see `fetch_page`)."""
    predicate = job_filter.scope(table)
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
    """
    sql, args = list_query(
        backend.installation.settings.qualified.queue_table,
        job_filter,
        after_id=after_id,
        until_id=until_id,
        newest_first=newest_first,
        limit=limit,
    )
    rows = await backend.read_heavy(sql, *args)
    return JobPage(
        rows=tuple(_job_row(row) for row in rows[:limit]),
        has_more=len(rows) > limit,
        newest_first=newest_first,
        scanned_cap=job_filter.searches_content,
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
