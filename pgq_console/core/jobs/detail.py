"""One job: its row, its payload (a page of it) and its history from the log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgq_console.core.jobs.pages import _LIST_COLUMNS, JobRow, _job_row

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

PAYLOAD_PAGE_BYTES = 64 * 1024
HISTORY_LIMIT = 200


# -- one job ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    id: int
    created: datetime
    status: str
    priority: int
    traceback: dict[str, Any] | None


@dataclass(frozen=True)
class JobDetail:
    """A job as the queue holds it now (None when it finished), and its log history."""

    job_id: int
    job: JobRow | None
    headers: dict[str, Any] | None
    payload: bytes | None  # the first `payload_loaded` bytes
    payload_total: int
    history: tuple[LogEntry, ...] = field(default_factory=tuple)
    entrypoint: str = ""

    @property
    def payload_truncated(self) -> bool:
        return self.payload is not None and len(self.payload) < self.payload_total


async def fetch_detail(
    backend: Backend, job_id: int, *, payload_bytes: int = PAYLOAD_PAGE_BYTES
) -> JobDetail:
    settings = backend.installation.settings.qualified
    # One statement, one round trip (a remote database pays each): the job's row, if any, and
    # its history as arrays beside it (a row per history entry would repeat the payload).
    rows = await backend.read_heavy(
        f"""WITH history AS (
            SELECT id, created, status::text AS status, priority, entrypoint,
                traceback::text AS traceback_text
            FROM {settings.queue_table_log} WHERE job_id = $1
            ORDER BY created, id LIMIT {HISTORY_LIMIT}
        )
        SELECT {_LIST_COLUMNS}, job.headers::text AS headers_text,
            substring(job.payload from 1 for $2) AS payload_head,
            (SELECT array_agg(h.id ORDER BY h.created, h.id) FROM history AS h) AS h_id,
            (SELECT array_agg(h.created ORDER BY h.created, h.id) FROM history AS h) AS h_created,
            (SELECT array_agg(h.status ORDER BY h.created, h.id) FROM history AS h) AS h_status,
            (SELECT array_agg(h.priority ORDER BY h.created, h.id) FROM history AS h)
                AS h_priority,
            (SELECT array_agg(h.entrypoint ORDER BY h.created, h.id) FROM history AS h)
                AS h_entrypoint,
            (SELECT array_agg(h.traceback_text ORDER BY h.created, h.id) FROM history AS h)
                AS h_traceback
        FROM (SELECT 1) AS one LEFT JOIN {settings.queue_table} AS job ON job.id = $1""",
        job_id,
        payload_bytes,
    )
    row = rows[0]
    history = tuple(
        LogEntry(
            id=int(log_id),
            created=created,
            status=str(status),
            priority=int(priority),
            traceback=_json_object(traceback),
        )
        for log_id, created, status, priority, traceback in zip(
            row["h_id"] or (),
            row["h_created"] or (),
            row["h_status"] or (),
            row["h_priority"] or (),
            row["h_traceback"] or (),
            strict=True,
        )
    )
    if row["id"] is None:
        entrypoint = str(row["h_entrypoint"][0]) if row["h_entrypoint"] else ""
        return JobDetail(job_id, None, None, None, 0, history, entrypoint)
    job = _job_row(row)
    head = row["payload_head"]
    return JobDetail(
        job_id=job_id,
        job=job,
        headers=_json_object(row["headers_text"]),
        payload=bytes(head) if head is not None else None,
        payload_total=job.payload_bytes,
        history=history,
        entrypoint=job.entrypoint,
    )


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return {"(unparseable)": text}
    if value is None:  # a JSON null in the column
        return None
    return value if isinstance(value, dict) else {"(value)": value}
