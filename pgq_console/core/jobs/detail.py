"""One job: its row, its payload (a page of it) and its history from the log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    # its history beside it as one JSON text (a row per history entry would repeat the
    # payload). JSON, not arrays: asyncpg looks up an array column's types on each new
    # connection before decoding it (a pool connection's first detail through a 50 ms delay
    # proxy: 0.43-0.44 s with the arrays, 0.12 s without; bench/README.md, issue 15).
    rows = await backend.read_heavy(
        f"""WITH history AS (
            SELECT id, created, status::text AS status, priority, entrypoint,
                traceback::text AS traceback_text
            FROM {settings.queue_table_log} WHERE job_id = $1
            ORDER BY created, id LIMIT {HISTORY_LIMIT}
        )
        SELECT {_LIST_COLUMNS}, job.headers::text AS headers_text,
            substring(job.payload from 1 for $2) AS payload_head,
            (SELECT json_agg(json_build_array(h.id, h.created, h.status, h.priority,
                h.entrypoint, h.traceback_text) ORDER BY h.created, h.id)::text
             FROM history AS h) AS history_json
        FROM (SELECT 1) AS one LEFT JOIN {settings.queue_table} AS job ON job.id = $1""",
        job_id,
        payload_bytes,
    )
    row = rows[0]
    entries: list[list[Any]] = json.loads(row["history_json"]) if row["history_json"] else []
    history = tuple(
        LogEntry(
            id=int(log_id),
            created=_timestamp(created),
            status=str(status),
            priority=int(priority),
            traceback=_json_object(traceback),
        )
        for log_id, created, status, priority, _entrypoint, traceback in entries
    )
    if row["id"] is None:
        entrypoint = str(entries[0][4]) if entries else ""
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


def _timestamp(text: str) -> datetime:
    """A timestamptz as PostgreSQL's JSON writes it (ISO 8601 with its offset; `infinity`
    and `-infinity` as asyncpg decodes them: the largest and smallest datetimes)."""
    if text in ("infinity", "-infinity"):
        if text == "infinity":
            return datetime.max.replace(tzinfo=UTC)
        return datetime.min.replace(tzinfo=UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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
