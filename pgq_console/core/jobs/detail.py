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
    rows = await backend.read_heavy(
        f"SELECT {_LIST_COLUMNS}, job.headers::text AS headers_text, "
        "substring(job.payload from 1 for $2) AS payload_head "
        f"FROM {settings.queue_table} AS job WHERE job.id = $1",
        job_id,
        payload_bytes,
    )
    history_rows = await backend.read_heavy(
        "SELECT id, created, status::text AS status, priority, entrypoint, "
        "traceback::text AS traceback_text "
        f"FROM {settings.queue_table_log} WHERE job_id = $1 "
        f"ORDER BY created, id LIMIT {HISTORY_LIMIT}",
        job_id,
    )
    history = tuple(
        LogEntry(
            id=int(r["id"]),
            created=r["created"],
            status=str(r["status"]),
            priority=int(r["priority"]),
            traceback=_json_object(r["traceback_text"]),
        )
        for r in history_rows
    )
    if not rows:
        entrypoint = str(history_rows[0]["entrypoint"]) if history_rows else ""
        return JobDetail(job_id, None, None, None, 0, history, entrypoint)
    row = rows[0]
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
