"""The incident bundle: what an on-call engineer pastes into the incident ticket.

One Markdown file and a JSON twin (same content) in the state directory's `bundles/`, both
created 0600: the time window, the overview numbers, the top failure fingerprints with one
sample traceback each, workers and stale jobs, overdue schedules, database health (dead tuples,
long transactions, the NOTIFY queue), recent audit records (this machine's audit file) and the
writes other consoles announced while this one listened, and the versions.

Redacted by default: passwords (every password the console knows of, and any by its place in a
connection string, in every text of the bundle), payloads (their size only; `include_payloads`
adds them), header values (their keys only), and the string literals of other sessions' queries
(they carry payloads and passwords), even with payloads included. The whole rendered text is
scrubbed once more before it is written.

Everything is read with the console's existing queries (stats, jobs' failure groups, workers,
schedules, health); nothing here writes to the database.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgq_console import __version__
from pgq_console.core.errors import scrub
from pgq_console.core.fingerprint import mask_message
from pgq_console.core.jobs import render_payload
from pgq_console.core.text import clipboard_text, printable
from pgq_console.core.workers import (
    DEFAULT_STALE_AFTER,
    NO_WORKER,
    REMEMBER_IDLE,
    WorkerMemory,
    WorkerRow,
    WorkersSnapshot,
)

if TYPE_CHECKING:
    from pgq_console.core.audit import AuditAnnouncement
    from pgq_console.core.backend import Backend

DEFAULT_WINDOW = timedelta(hours=1)
TOP_FINGERPRINTS = 5
STALE_JOBS_LISTED = 20
AUDIT_RECORDS_LISTED = 50
TRACEBACK_CHARS = 4000
PAYLOAD_CHARS = 2000
REDACTED = "<redacted>"
_SQL_STRING = re.compile(r"'(?:[^']|'')*'?")


def bundle_dir() -> Path:
    import platformdirs

    return platformdirs.user_state_path("pgq-console") / "bundles"


@dataclass(frozen=True)
class Bundle:
    document: dict[str, Any]
    markdown: str


@dataclass(frozen=True)
class Written:
    markdown: Path
    json: Path


def _clean(text: str, secrets: tuple[str, ...], *, limit: int | None = None) -> str:
    """Untrusted text for the ticket: passwords scrubbed, controls dropped (line breaks kept)."""
    text = clipboard_text(scrub(text, secrets))
    if limit is not None and len(text) > limit:
        text = text[:limit] + "\n… (truncated)"
    return text


def _name(text: str, secrets: tuple[str, ...]) -> str:
    """A name (entrypoint, label, expression) escaped as the console shows it: ESC as \\x1b,
    a line break as \\x0a, so the ticket reads like the screen."""
    return printable(scrub(text, secrets))


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


async def collect(
    backend: Backend,
    *,
    window: timedelta = DEFAULT_WINDOW,
    include_payloads: bool = False,
    secrets: tuple[str, ...] = (),
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    heard: Sequence[AuditAnnouncement] = (),
    audit_path: Path | None = None,
    seen_workers: Sequence[WorkerRow] = (),
) -> Bundle:
    """Read everything the bundle holds (read-only) and render it.

    `seen_workers`: the workers the console remembers (`WorkerMemory.known()`, as the Workers
    screen merges them): listed too when they hold no job at the bundle's read."""
    from pgq_console.core.audit import read_records
    from pgq_console.core.checks import database_now
    from pgq_console.core.health import fetch_health
    from pgq_console.core.jobs import fetch_failure_groups
    from pgq_console.core.models import OverviewSnapshot
    from pgq_console.core.schedules import fetch_schedules
    from pgq_console.core.stats import fetch_overview
    from pgq_console.core.workers import fetch_workers

    now = await database_now(backend)
    since = now - window
    rows = await fetch_overview(backend)
    # Right after the overview, so their picked counts are as close as two reads can be.
    # Every worker (no limit): the bundle is a file, its totals add up the rows.
    workers = with_seen(await fetch_workers(backend, stale_after, limit=None), seen_workers)
    totals = OverviewSnapshot(now, rows, 0.0).totals
    groups = await fetch_failure_groups(backend, now, window=window)
    top = sorted(groups.groups, key=lambda g: (-g.count, -g.last_seen.timestamp()))
    top = top[:TOP_FINGERPRINTS]
    samples = await _sample_jobs(backend, [g.sample_job_id for g in top])
    schedules = await fetch_schedules(backend)
    health = await fetch_health(backend)

    def overview_row(row: Any) -> dict[str, Any]:
        oldest = row.oldest_ready_since
        return {
            "entrypoint": _name(row.entrypoint, secrets),
            "ready": row.ready,
            "deferred": row.deferred,
            "picked": row.picked,
            "held": row.held,
            "completed_1h": row.completed_1h,
            "exceptions_1h": row.exceptions_1h,
            "oldest_ready_age_s": (now - oldest).total_seconds() if oldest else None,
        }

    def sample_of(job_id: int) -> dict[str, Any] | None:
        sample = samples.get(job_id)
        if sample is None:
            return None
        payload: bytes | None = sample["payload"]
        headers: dict[str, Any] = sample["headers"] or {}
        shown: dict[str, Any] = {
            "status": sample["status"],
            "payload_bytes": len(payload) if payload is not None else 0,
            "headers": {_name(str(k), secrets): REDACTED for k in headers},
        }
        if include_payloads and payload is not None:
            shown["payload"] = _clean(render_payload(payload).text, secrets, limit=PAYLOAD_CHARS)
        else:
            shown["payload"] = REDACTED if payload else None
        return shown

    def failure(g: Any) -> dict[str, Any]:
        # The sample job's own payload text and header values, wherever its error echoes
        # them (the message, the traceback, the fingerprint's masked title).
        echoed = secrets + sample_echoes(samples.get(g.sample_job_id), include_payloads)
        masked = echoed + tuple(masked_echoes(echoed))
        return {
            "fingerprint": _name(g.fingerprint.title(), masked),
            "frame": _name(g.fingerprint.frame, echoed),
            "count": g.count,
            "held": g.held,
            "entrypoints": [_name(e, secrets) for e in g.entrypoints],
            "first_seen": _when(g.first_seen),
            "last_seen": _when(g.last_seen),
            "sample_job_id": g.sample_job_id,
            "sample_message": _clean(g.sample_message, echoed, limit=500),
            "sample_traceback": _clean(g.sample_traceback, echoed, limit=TRACEBACK_CHARS),
            "sample_job": sample_of(g.sample_job_id),
        }

    failures = [failure(g) for g in top]
    audit = [
        {key: _plain_audit(value, secrets) for key, value in record.items()}
        for record in read_records(audit_path)
        if str(record.get("time", "")) >= since.isoformat(timespec="seconds")
    ][-AUDIT_RECORDS_LISTED:]
    document: dict[str, Any] = {
        "generated_at": _when(now),
        "window": {"from": _when(since), "to": _when(now), "seconds": window.total_seconds()},
        "database": _name(backend.label, secrets),
        "payloads_included": include_payloads,
        "overview": {
            "totals": overview_row(totals) | {"entrypoint": "total", "stale": workers.stale_total},
            "entrypoints": [overview_row(row) for row in rows],
        },
        "failures": {
            "exceptions_in_window": groups.exceptions,
            "fingerprints_in_window": groups.total,
            "top": failures,
        },
        "workers": [
            {
                "queue_manager_id": w.queue_manager_id,
                "state": w.state(workers.taken_at, stale_after).value,
                "entrypoints": [_name(e, secrets) for e in w.entrypoints],
                "picked": w.picked,
                "stale": w.stale,
                "newest_heartbeat": _when(w.newest_heartbeat),
                # Holding no job at the read: when this console last saw it hold one.
                "last_seen": _when(w.last_seen) if w.idle else None,
            }
            for w in workers.workers
            if w.queue_manager_id != NO_WORKER
        ],
        "picked_at_workers_read": {
            "total": sum(w.picked for w in workers.workers),
            "attributed": sum(w.picked for w in workers.workers if w.queue_manager_id != NO_WORKER),
            "no_worker_recorded": sum(
                w.picked for w in workers.workers if w.queue_manager_id == NO_WORKER
            ),
        },
        "stale_jobs": {
            "stale_after_s": stale_after.total_seconds(),
            "total": workers.stale_total,
            "listed": [
                {
                    "id": j.id,
                    "entrypoint": _name(j.entrypoint, secrets),
                    "queue_manager_id": j.queue_manager_id,
                    "heartbeat": _when(j.heartbeat),
                }
                for j in workers.stale_jobs[:STALE_JOBS_LISTED]
            ],
        },
        "overdue_schedules": [
            {
                "id": s.id,
                "entrypoint": _name(s.entrypoint, secrets),
                "expression": _name(s.expression, secrets),
                "problem": s.problem(schedules.taken_at),
                "next_run": _when(s.next_run),
                "last_run": _when(s.last_run),
            }
            for s in schedules.overdue(schedules.taken_at)
        ],
        "database_health": {
            "server_version": health.server_version,
            "schema": health.schema.summary,
            "notify_queue_usage": health.notify_queue_usage,
            "listeners_seen": len(health.listeners),
            "tables": [
                {
                    "name": t.name,
                    "live_tuples": t.live_tuples,
                    "dead_tuples": t.dead_tuples,
                    "dead_ratio": round(t.dead_ratio, 3),
                    "total_bytes": t.total_bytes,
                    "last_autovacuum": _when(t.last_autovacuum),
                }
                for t in health.tables
            ],
            "long_transactions": [
                {
                    "pid": s.pid,
                    "application_name": _name(s.application_name, secrets),
                    "user": _name(s.user, secrets),
                    "state": s.state,
                    "xact_start": _when(s.xact_start),
                    # String literals out, payloads or not: `ALTER ROLE ... PASSWORD '...'`.
                    "query": _clean(_SQL_STRING.sub("'…'", s.query), secrets, limit=200),
                }
                for s in health.long_transactions
            ],
            "lock_waits": len(health.lock_waits),
        },
        "audit": {
            "records": audit,
            "other_consoles": [_clean(a.describe(), secrets) for a in heard],
        },
        "versions": {
            "pgq_console": __version__,
            "pgqueuer": version("pgqueuer"),
            "postgresql": health.server_version,
            "python": platform.python_version(),
        },
    }
    return Bundle(document, scrub(render_markdown(document), secrets))


# A payload's or header's words and values shorter than this are not hunted for in the error
# texts: "json" or "true" would blank ordinary words of a traceback.
ECHO_MIN_CHARS = 8
WHOLE_MIN_CHARS = 4


def _leaves(value: Any) -> list[str]:
    """The strings (and long numbers) inside a parsed JSON value."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in _leaves(item)]
    if isinstance(value, list):
        return [text for item in value for text in _leaves(item)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


def sample_echoes(sample: dict[str, Any] | None, include_payloads: bool) -> tuple[str, ...]:
    """What of the sample job must not show in its error texts: its header values always, its
    payload unless payloads are included. Each as a whole, its long words, and (JSON) its
    values and the parsed object's repr (`raise ValueError(f"bad {payload}")`)."""
    if sample is None:
        return ()
    wholes: list[str] = []
    parts: list[str] = []
    for value in (sample["headers"] or {}).values():
        wholes.append(value if isinstance(value, str) else json.dumps(value))
        parts += _leaves(value)
    payload: bytes | None = sample["payload"]
    if payload and not include_payloads:
        text = payload.decode("utf-8", errors="replace")
        wholes += [text, text.strip(), repr(payload)[2:-1]]
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            wholes += [repr(parsed), str(parsed), json.dumps(parsed)]
            parts += _leaves(parsed)
    for whole in list(wholes):
        parts += whole.split()
    found = [w for w in wholes if len(w) >= WHOLE_MIN_CHARS]
    found += [p for p in parts if len(p) >= ECHO_MIN_CHARS]
    return tuple(dict.fromkeys(found))


_PLACEHOLDERS = re.compile(r"<(?:str|n|hex|uuid|ts|email|query)>|\W")


def masked_echoes(echoes: Sequence[str]) -> list[str]:
    """The echoes as a fingerprint's title shows them (numbers, quoted strings... masked),
    those that keep enough of their own text: `{<str>: <n>}` says nothing and is kept."""
    found = []
    for text in echoes:
        masked = mask_message(text)
        if masked != text and len(_PLACEHOLDERS.sub("", masked)) >= ECHO_MIN_CHARS:
            found.append(masked)
    return found


def with_seen(read: WorkersSnapshot, seen: Sequence[WorkerRow]) -> WorkersSnapshot:
    """The read, plus the workers the console saw hold jobs lately that hold none now (between
    jobs, idle, or dead and since reclaimed), merged as the Workers screen merges them."""
    if not seen:
        return read
    memory = WorkerMemory(_seen={w.queue_manager_id: w for w in seen})
    return memory.merge(read, read.taken_at)


def _plain_audit(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _clean(value, secrets, limit=500)
    if isinstance(value, list) and len(value) > 20:
        return [*value[:20], f"… {len(value) - 20} more"]
    return value


async def _sample_jobs(backend: Backend, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The sample jobs still in the queue (held ones): status, payload, headers."""
    if not ids:
        return {}
    table = backend.installation.settings.qualified.queue_table
    rows = await backend.read(
        f"SELECT id, status::text AS status, payload, headers::text AS headers_text "
        f"FROM {table} WHERE id = ANY($1::bigint[])",
        ids,
    )
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        try:
            headers = json.loads(row["headers_text"]) if row["headers_text"] else None
        except ValueError:
            headers = None
        found[int(row["id"])] = {
            "status": str(row["status"]),
            "payload": bytes(row["payload"]) if row["payload"] is not None else None,
            "headers": headers if isinstance(headers, dict) else None,
        }
    return found


# -- Markdown ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = "–" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headings: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _records_table(
    records: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]
) -> list[str]:
    """A table of `records`, one column per (heading, key); "None." when there are none."""
    if not records:
        return ["None."]
    return _table(
        [heading for heading, _ in columns], [[r[key] for _, key in columns] for r in records]
    )


def _other_count(at_workers_read: int, at_overview: int) -> str:
    """The overview's picked count when it differs: a job is picked and done within moments."""
    if at_workers_read == at_overview:
        return ""
    return f" (the overview, read a moment before, counted {at_overview})"


def _fence(text: str) -> list[str]:
    """A fenced block `text` cannot close: its fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def render_markdown(doc: dict[str, Any]) -> str:
    window = doc["window"]
    lines = [
        f"# Incident bundle: {doc['database']}",
        "",
        f"- Window: {window['from']} to {window['to']}",
        f"- Generated: {doc['generated_at']} (database clock)",
        f"- Payloads: {'included' if doc['payloads_included'] else 'redacted'}; header values "
        "and passwords redacted",
        "",
        "## Overview",
        "",
    ]
    overview = doc["overview"]
    lines += _table(
        ["entrypoint", "ready", "deferred", "picked", "held", "done 1h", "errors 1h", "oldest s"],
        [
            [
                r["entrypoint"],
                r["ready"],
                r["deferred"],
                r["picked"],
                r["held"],
                r["completed_1h"],
                r["exceptions_1h"],
                None if r["oldest_ready_age_s"] is None else round(r["oldest_ready_age_s"]),
            ]
            for r in [overview["totals"], *overview["entrypoints"]]
        ],
    )
    failures = doc["failures"]
    lines += [
        "",
        "## Top failures",
        "",
        f"{failures['exceptions_in_window']} exceptions in the window, "
        f"{failures['fingerprints_in_window']} fingerprints.",
    ]
    for number, f in enumerate(failures["top"], 1):
        lines += [
            "",
            f"### {number}. {f['fingerprint']}",
            "",
            f"- Count: {f['count']} (held now: {f['held']}); entrypoints: "
            f"{', '.join(f['entrypoints'])}",
            f"- At: {f['frame'] or '–'}",
            f"- First seen {f['first_seen']}, last seen {f['last_seen']}",
            f"- Sample: job {f['sample_job_id']}; its message, then its traceback, below",
        ]
        sample = f["sample_job"]
        if sample is not None:
            headers = ", ".join(f"{k}={v}" for k, v in sample["headers"].items()) or "none"
            lines.append(
                f"- Sample job now {sample['status']}: payload {sample['payload_bytes']} bytes, "
                f"headers: {headers}"
            )
            if sample["payload"] not in (None, REDACTED):
                lines += ["", "Payload:", "", *_fence(sample["payload"])]
        # Fenced, untrusted: line breaks inside stay in the block, and the fence is longer
        # than any run of backticks the text holds.
        lines += ["", *_fence(f["sample_message"] or "(no message)")]
        lines += ["", *_fence(f["sample_traceback"] or "(no traceback)")]
    picked = doc["picked_at_workers_read"]
    holders = sum(1 for w in doc["workers"] if w["picked"])
    unrecorded = picked["no_worker_recorded"]
    lines += [
        "",
        "## Workers",
        "",
        f"{picked['total']} picked jobs at this read: {picked['attributed']} held by {holders} "
        f"worker{'s' if holders != 1 else ''}"
        + (f", {unrecorded} with no worker recorded" if unrecorded else "")
        + _other_count(picked["total"], doc["overview"]["totals"]["picked"])
        + ".",
        "",
    ]
    if doc["workers"]:
        lines += _table(
            ["worker", "state", "entrypoints", "picked", "stale", "newest heartbeat", "last seen"],
            [
                [
                    w["queue_manager_id"],
                    w["state"],
                    ", ".join(w["entrypoints"]),
                    w["picked"],
                    w["stale"],
                    w["newest_heartbeat"],
                    w["last_seen"],
                ]
                for w in doc["workers"]
            ],
        )
    else:
        lines.append("No worker holds a job.")
    lines += [
        "",
        "PgQueuer records a worker only on the jobs it holds (its id and their heartbeats): a "
        "worker holding none at this read is listed only if this console saw it hold one in "
        f"the last {REMEMBER_IDLE.total_seconds() / 60:g} min (last seen); a finished job is "
        "not attributable (the log records no worker).",
    ]
    stale = doc["stale_jobs"]
    lines += [
        "",
        f"Stale jobs (heartbeat older than {stale['stale_after_s']:g}s): {stale['total']}",
    ]
    if stale["listed"]:
        lines += [""] + _table(
            ["id", "entrypoint", "worker", "heartbeat"],
            [
                [j["id"], j["entrypoint"], j["queue_manager_id"], j["heartbeat"]]
                for j in stale["listed"]
            ],
        )
    lines += ["", "## Overdue schedules", ""]
    lines += _records_table(
        doc["overdue_schedules"],
        [
            ("id", "id"),
            ("entrypoint", "entrypoint"),
            ("expression", "expression"),
            ("problem", "problem"),
            ("next run", "next_run"),
            ("last run", "last_run"),
        ],
    )
    health = doc["database_health"]
    lines += [
        "",
        "## Database health",
        "",
        f"- PostgreSQL {health['server_version']}; schema: {health['schema']}",
        f"- NOTIFY queue usage: {health['notify_queue_usage'] * 100:.1f} %; "
        f"listeners seen: {health['listeners_seen']}; lock waits: {health['lock_waits']}",
        "",
    ]
    lines += _table(
        ["table", "live", "dead", "dead %", "bytes", "last autovacuum"],
        [
            [
                t["name"],
                t["live_tuples"],
                t["dead_tuples"],
                f"{t['dead_ratio'] * 100:.0f}",
                t["total_bytes"],
                t["last_autovacuum"],
            ]
            for t in health["tables"]
        ],
    )
    lines += ["", "Long transactions:", ""]
    lines += _records_table(
        health["long_transactions"],
        [
            ("pid", "pid"),
            ("application", "application_name"),
            ("user", "user"),
            ("state", "state"),
            ("since", "xact_start"),
            ("query", "query"),
        ],
    )
    audit = doc["audit"]
    lines += ["", "## Audit", ""]
    if audit["records"]:
        lines += _table(
            ["time", "user@host", "action", "changed", "what", "reason"],
            [
                [
                    r.get("time"),
                    f"{r.get('user')}@{r.get('host')}",
                    r.get("action"),
                    f"{r.get('count')} of {r.get('previewed')}",
                    r.get("predicate"),
                    r.get("reason"),
                ]
                for r in audit["records"]
            ],
        )
    else:
        lines.append("No write by this machine's consoles in the window.")
    if audit["other_consoles"]:
        lines += ["", "Announced by other consoles while this one listened:", ""]
        lines += [f"- {printable(line)}" for line in audit["other_consoles"]]
    versions = doc["versions"]
    lines += [
        "",
        "## Versions",
        "",
        f"pgq-console {versions['pgq_console']}, pgqueuer {versions['pgqueuer']}, "
        f"PostgreSQL {versions['postgresql']}, Python {versions['python']}",
        "",
    ]
    return "\n".join(lines)


# -- files ------------------------------------------------------------------------------------


def _create_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # whatever the umask


def _scrub_tree(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(str(k), secrets): _scrub_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_tree(item, secrets) for item in value]
    return value


def write(
    bundle: Bundle, directory: Path | None = None, *, secrets: tuple[str, ...] = ()
) -> Written:
    """The Markdown file and its JSON twin, 0600, in a 0700 directory; never overwrites."""
    target = directory or bundle_dir()
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = str(bundle.document["generated_at"]).replace(":", "").replace("-", "")[:15]
    stem = f"incident-{stamp}"
    n = 1
    while (target / f"{stem}.md").exists() or (target / f"{stem}.json").exists():
        n += 1
        stem = f"incident-{stamp}-{n}"
    markdown, twin = target / f"{stem}.md", target / f"{stem}.json"
    # Scrubbed value by value: the text of the JSON would be cut inside a string's escapes.
    text = json.dumps(_scrub_tree(bundle.document, secrets), indent=2, ensure_ascii=True)
    _create_private(markdown, bundle.markdown)
    _create_private(twin, text)
    return Written(markdown, twin)
