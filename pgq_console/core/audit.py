"""The audit trail of every write the console makes: a JSON-lines file and a NOTIFY.

Each applied action appends one JSON object per line to `audit_log_path()` (under
`platformdirs.user_log_path("pgq-console")`, so XDG_STATE_HOME moves it) and announces itself
on `audit_channel(channel)`, a channel of its own next to PgQueuer's: pgqueuer's listener logs
every payload it cannot parse at CRITICAL, so the console never speaks on PgQueuer's channel
except with PgQueuer's own event shapes. The NOTIFY is sent inside the action's transaction,
so other consoles hear of a change only when it has committed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

AUDIT_FILE_NAME = "audit.jsonl"
AUDIT_EVENT_TYPE = "pgq_console_audit"
# Tells this process's own announcements apart from other consoles'.
CONSOLE_INSTANCE = uuid.uuid4().hex
# NOTIFY payloads must stay under 8000 bytes; the file keeps the full record.
_MAX_ANNOUNCED_TEXT = 200
MAX_LISTED_IDS = 1000


def audit_channel(channel: str) -> str:
    """The console's own NOTIFY channel for an installation whose PgQueuer channel is `channel`."""
    return f"{channel}_console"


def audit_log_path() -> Path:
    import platformdirs

    return platformdirs.user_log_path("pgq-console") / AUDIT_FILE_NAME


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


@dataclass(frozen=True)
class AuditRecord:
    """One write, as it is appended to the audit file."""

    action: str
    predicate: str
    count: int
    previewed: int
    job_ids: tuple[int, ...]
    database: str
    reason: str | None = None
    # Enqueue-form writes: their entrypoint and id range (job_ids lists them up to
    # `MAX_LISTED_IDS`; a million ids do not belong in one line).
    entrypoint: str | None = None
    first_id: int | None = None
    last_id: int | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    user: str = field(default_factory=_os_user)
    host: str = field(default_factory=socket.gethostname)

    def to_json(self) -> str:
        data = asdict(self)
        data["job_ids"] = list(self.job_ids)
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    def announcement(self) -> str:
        """The short NOTIFY payload (no job ids: they can exceed the 8000-byte limit)."""
        return json.dumps(
            {
                "type": AUDIT_EVENT_TYPE,
                "console": CONSOLE_INSTANCE,
                "action": self.action,
                "count": self.count,
                "previewed": self.previewed,
                "user": self.user[:_MAX_ANNOUNCED_TEXT],
                "host": self.host[:_MAX_ANNOUNCED_TEXT],
                "reason": (self.reason or "")[:_MAX_ANNOUNCED_TEXT] or None,
                "time": self.time,
            },
            ensure_ascii=True,
        )


@dataclass(frozen=True)
class AuditAnnouncement:
    """What another console (or this one) announced on the audit channel."""

    action: str
    count: int
    previewed: int
    user: str
    host: str
    reason: str | None
    time: str
    own: bool

    def describe(self) -> str:
        text = f"{self.user}@{self.host}: {self.action}, changed {self.count} of {self.previewed}"
        if self.reason:
            text += f" ({self.reason})"
        return text


def parse_announcement(payload: str | bytes | bytearray) -> AuditAnnouncement | None:
    """The announcement in a NOTIFY payload, or None when it is not one of ours."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("type") != AUDIT_EVENT_TYPE:
            return None
        return AuditAnnouncement(
            action=str(data["action"]),
            count=int(data["count"]),
            previewed=int(data["previewed"]),
            user=str(data.get("user") or "?"),
            host=str(data.get("host") or "?"),
            reason=str(data["reason"]) if data.get("reason") else None,
            time=str(data.get("time") or ""),
            own=data.get("console") == CONSOLE_INSTANCE,
        )
    except (ValueError, KeyError, TypeError):
        return None


def append(record: AuditRecord, path: Path | None = None) -> Path:
    """Append one line to the audit file (created 0600 in a 0700 directory); the path written."""
    target = path or audit_log_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(record.to_json() + "\n")
    return target


def read_records(path: Path | None = None) -> list[dict[str, Any]]:
    """Every record in the audit file, oldest first (for tests and an audit viewer)."""
    target = path or audit_log_path()
    if not target.exists():
        return []
    with target.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


async def announce(tx: Tx, channel: str, record: AuditRecord) -> None:
    """NOTIFY the audit channel inside `tx`: delivered only if the transaction commits."""
    await tx.execute("SELECT pg_notify($1, $2)", audit_channel(channel), record.announcement())


class AuditListener:
    """LISTENs on the audit channel on a connection of its own; `stop()` closes it."""

    def __init__(self, backend: Backend, handler: Callable[[AuditAnnouncement], None]) -> None:
        self._backend = backend
        self._handler = handler
        self._connection: Any = None

    async def start(self) -> None:
        connection = await self._backend.new_connection()
        self._connection = connection
        driver = self._backend.new_driver(connection)

        def on_payload(payload: str | bytes | bytearray) -> None:
            announcement = parse_announcement(payload)
            if announcement is not None:
                self._handler(announcement)

        await driver.add_listener(audit_channel(self._backend.installation.channel), on_payload)

    async def stop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
