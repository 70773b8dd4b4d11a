"""The audit trail of every write the console makes: a JSON-lines file and a NOTIFY.

Each applied action appends one JSON object per line to `audit_log_path()` (under
`platformdirs.user_log_path("pgq-console")`, so XDG_STATE_HOME moves it) and announces itself
on `audit_channel(channel)`, a channel of its own next to PgQueuer's: pgqueuer's listener logs
every payload it cannot parse at CRITICAL, so the console never speaks on PgQueuer's channel
except with PgQueuer's own event shapes. The NOTIFY is sent inside the action's transaction,
so other consoles hear of a change only when it has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
    schedule_ids: tuple[int, ...] = ()  # a schedule write: the schedules' ids (not jobs')
    # "committed", or "unknown" when the reply to COMMIT was lost: `found` then says what a
    # re-read found (the ids are the rows that look written).
    outcome: str = "committed"
    found: str | None = None
    # Enqueue-form writes: their entrypoint and id range (job_ids lists them up to
    # `MAX_LISTED_IDS`; a million ids do not belong in one line).
    entrypoint: str | None = None
    first_id: int | None = None
    last_id: int | None = None
    # An index build (which changes no row): the index and its table, schema-qualified.
    index: str | None = None
    table: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    user: str = field(default_factory=_os_user)
    host: str = field(default_factory=socket.gethostname)

    def to_json(self) -> str:
        data = asdict(self)
        data["job_ids"] = list(self.job_ids)
        data["schedule_ids"] = list(self.schedule_ids)
        for optional in ("found", "index", "table"):  # absent from the records they don't concern
            if data[optional] is None:
                del data[optional]
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
                "user": _announced(self.user),
                "host": _announced(self.host),
                "reason": _announced(self.reason or "") or None,
                "time": self.time,
            },
            ensure_ascii=True,
        )


def _announced(text: str) -> str:
    # jsonb (the server adds the sender's role to the payload) cannot hold U+0000: a NUL in a
    # reason must not fail the write it announces.
    return text.replace("\x00", "")[:_MAX_ANNOUNCED_TEXT]


@dataclass(frozen=True)
class AuditAnnouncement:
    """What a console (or anyone able to NOTIFY) announced on the audit channel.

    Any role that can connect can NOTIFY any channel, so the payload's claims are checked
    against who really sent it (`verify`): the notifying backend's pid, looked up in
    pg_stat_activity. `verified` holds only for a pgq-console session whose role is the role the
    payload claims.
    """

    action: str
    count: int
    previewed: int
    user: str
    host: str
    reason: str | None
    time: str
    own: bool
    db_user: str = ""  # the role the payload claims (filled in by the server: session_user)
    verified: bool = False
    sender: str = ""  # who really sent it, as pg_stat_activity says (when not verified)

    def describe(self) -> str:
        what = f"{self.action}, changed {self.count} of {self.previewed}"
        if self.reason:
            what += f" ({self.reason})"
        # Only the role is checked; user@host is what the sending console says of itself.
        if self.verified:
            return f"db role {self.db_user} ({self.user}@{self.host}): {what}"
        claim = f"{self.user}@{self.host}, db role {self.db_user or '?'}"
        return f"UNVERIFIED ({self.sender or 'sender unknown'}), claims {claim}: {what}"


# A NOTIFY payload is at most 8000 bytes; anything longer is not ours.
_MAX_PAYLOAD = 8000
_MAX_COUNT = 10**12


def _text(value: object, default: str = "") -> str:
    if not isinstance(value, str):
        return default
    return value[:_MAX_ANNOUNCED_TEXT]


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise ValueError("not a count")
    return value


def parse_announcement(payload: object) -> AuditAnnouncement | None:
    """The announcement in a NOTIFY payload, or None when it is not one of ours.

    Never raises: the payload comes from anyone who can NOTIFY (non-JSON, `1e400`, deep
    nesting, wrong types, huge: all give None or clipped text).
    """
    try:
        if not isinstance(payload, str | bytes | bytearray) or len(payload) > _MAX_PAYLOAD:
            return None
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("type") != AUDIT_EVENT_TYPE:
            return None
        action = _text(data.get("action"))
        if not action:
            return None
        return AuditAnnouncement(
            action=action,
            count=_count(data.get("count")),
            previewed=_count(data.get("previewed")),
            user=_text(data.get("user")) or "?",
            host=_text(data.get("host")) or "?",
            reason=_text(data.get("reason")) or None,
            time=_text(data.get("time")),
            own=data.get("console") == CONSOLE_INSTANCE,
            db_user=_text(data.get("db_user")),
        )
    except Exception:  # RecursionError, ValueError, anything: not an announcement
        return None


def verify(
    announcement: AuditAnnouncement,
    usename: str | None,
    application_name: str | None,
    *,
    can_write: bool = True,
) -> AuditAnnouncement:
    """The announcement checked against its sender's pg_stat_activity row (None: gone).

    `can_write`: whether the sender's role may write the queue or schedules tables; any client
    can call itself pgq-console, but a role that cannot write them made no console write.
    """
    from pgq_console.core.target import APPLICATION_NAME

    if usename is None:
        return replace(announcement, verified=False, sender="the sending session is gone")
    app = application_name or ""
    sender = f"sent by a {app!r} session of role {usename!r}"
    if not app.startswith(APPLICATION_NAME) or app.startswith(f"{APPLICATION_NAME}-demo"):
        return replace(announcement, verified=False, sender=sender)
    if announcement.db_user != usename:
        return replace(announcement, verified=False, sender=f"{sender}, not as claimed")
    if not can_write:
        return replace(
            announcement, verified=False, sender=f"{sender}, which cannot write the queue"
        )
    return replace(announcement, verified=True, sender=sender)


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
    """NOTIFY the audit channel inside `tx`: delivered only if the transaction commits.

    The server adds the role (`session_user`) the listeners check the sender against.
    """
    await tx.execute(
        "SELECT pg_notify($1, ($2::jsonb || jsonb_build_object('db_user', session_user::text))"
        "::text)",
        audit_channel(channel),
        record.announcement(),
    )


# Senders being looked up at once; a NOTIFY flood beyond this is dropped, not queued.
_MAX_PENDING_CHECKS = 16


class AuditListener:
    """LISTENs on the audit channel on a connection of its own; `stop()` closes it.

    Each announcement is checked against who sent it (the notifying backend's pid in
    pg_stat_activity, read through the backend) before `handler` sees it; see `verify`.
    """

    def __init__(self, backend: Backend, handler: Callable[[AuditAnnouncement], None]) -> None:
        self._backend = backend
        self._handler = handler
        self._connection: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def start(self) -> None:
        connection = await self._backend.new_listen_connection()  # past a pooler: listen_dsn
        self._connection = connection
        channel = audit_channel(self._backend.installation.channel)
        if hasattr(connection, "add_listener"):  # asyncpg: the callback gets the pid
            await connection.add_listener(
                channel, lambda _c, pid, _ch, payload: self.received(pid, payload)
            )
            connection.add_termination_listener(lambda _c: self._lost())
            return
        from psycopg import sql

        await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._spawn(self._watch_psycopg(connection))

    async def _watch_psycopg(self, connection: Any) -> None:
        with contextlib.suppress(Exception):
            async for note in connection.notifies():
                self.received(note.pid, note.payload)
        self._lost()

    def _lost(self) -> None:
        """The listening connection is gone (server restart, failover, a killed session):
        listen again on a new one, or other consoles' writes go unannounced from now on."""
        if not self._stopped:
            self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.5
        while not self._stopped:
            await asyncio.sleep(delay)
            old, self._connection = self._connection, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()
            try:
                await self.start()
                return
            except Exception:
                delay = min(delay * 2, 30.0)

    def received(self, pid: object, payload: object) -> None:
        """One NOTIFY: parse it (never raises), then look its sender up off the callback."""
        announcement = parse_announcement(payload)
        if announcement is None or not isinstance(pid, int):
            return
        if len(self._tasks) >= _MAX_PENDING_CHECKS:
            return
        self._spawn(self._check_and_hand_on(announcement, pid))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_and_hand_on(self, announcement: AuditAnnouncement, pid: int) -> None:
        try:
            names = self._backend.installation.settings.qualified
            rows = await self._backend.read(
                "SELECT usename::text AS usename, application_name, "
                "has_table_privilege(usesysid, $2, 'INSERT, UPDATE, DELETE') "
                "OR has_table_privilege(usesysid, $3, 'UPDATE, DELETE') AS can_write "
                "FROM pg_stat_activity WHERE pid = $1",
                pid,
                names.queue_table,
                names.schedules_table,
            )
        except Exception:
            rows = []
            announcement = replace(announcement, sender="the sender could not be looked up")
        row = rows[0] if rows else {}
        checked = verify(
            announcement,
            row.get("usename"),
            row.get("application_name"),
            can_write=bool(row.get("can_write")),
        )
        if not rows and announcement.sender:
            checked = replace(checked, sender=announcement.sender)
        with contextlib.suppress(Exception):  # a handler's trouble never ends the listener
            self._handler(checked)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
