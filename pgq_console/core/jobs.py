"""Browsing the queue table, one job's detail and history, and failure groups from the log.

Pages are keyset pages over the primary key (`id < last` newest first, `id > last` oldest
first): never OFFSET, never the whole table. The filter line becomes a `Predicate` (SQL over
the alias `job` with bound parameters), the same one the write actions re-check.

Filter line: words are AND-ed; a leading `!` negates one.
    ep:send_email   ep:send_*        entrypoint (comma list, * wildcard); a bare word = ep contains
    status:failed   status:queued,picked   (also `ready`, `deferred`)
    id:123  id:>1000  id:1,2,3       prio:>5  prio:<=0  prio:3
    age:>10m  age:<2h                created that long ago (s, m, h, d)
    payload:text  header:text        search payload / headers; no index can help, so this scans
                                     at most the newest SEARCH_SCAN_CAP rows (statement timeout too)

A word that parses to nothing (`ep:`, `ep:,`, `status:,`, `id:1,,2`) is an error, never dropped:
bulk writes are built from `JobFilter.scope`, the very predicate the list shows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions import Predicate
from pgq_console.core.errors import ConsoleError
from pgq_console.core.fingerprint import Fingerprint, sql_culprit_frame, sql_masked_message

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

PAGE_SIZE = 100
SEARCH_SCAN_CAP = 200_000
PAYLOAD_PAGE_BYTES = 64 * 1024
HISTORY_LIMIT = 200
STATUSES = ("queued", "picked", "failed")
_PSEUDO_STATUS = {
    "ready": "(job.status = 'queued' AND job.execute_after <= now())",
    "deferred": "(job.status = 'queued' AND job.execute_after > now())",
}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COMPARE = re.compile(r"^(>=|<=|>|<|=)?(-?\d+)$")
_QUALIFIERS = ("ep", "status", "id", "prio", "age", "payload", "header")


@dataclass(frozen=True)
class JobFilter:
    """A parsed filter line; `predicate()` is its SQL."""

    text: str = ""
    terms: tuple[Predicate, ...] = ()
    searches_content: bool = False  # payload:/header: present (unindexed scan)

    def predicate(self) -> Predicate:
        """The filter's words AND-ed (no content-scan bound: see `scope`)."""
        if not self.terms:
            return Predicate("TRUE", (), "all jobs")
        result = self.terms[0]
        for term in self.terms[1:]:
            result = result.and_(term)
        return result

    def scope(self, table: str) -> Predicate:
        """Exactly the rows the list shows for this filter: the list query and every bulk write
        built from it use this one predicate, so a write never reaches further than the list.

        A content search (payload:/header:) only looks at the newest SEARCH_SCAN_CAP rows of
        `table`, for the list and the writes alike.
        """
        predicate = self.predicate()
        if not self.searches_content:
            return predicate
        newest = Predicate(
            "job.id >= coalesce((SELECT min(newest.id) FROM (SELECT id FROM "
            f"{table} ORDER BY id DESC LIMIT {SEARCH_SCAN_CAP}) AS newest), 0)",
            (),
            "",
        )
        return Predicate(
            f"({predicate.sql}) AND {newest.sql}",
            predicate.args,
            f"{predicate.description} (newest {SEARCH_SCAN_CAP:,} jobs searched)",
        )


def parse_filter(text: str) -> JobFilter:
    """The filter line as SQL; ConsoleError naming the bad word on bad input."""
    terms: list[Predicate] = []
    content = False
    for word in text.split():
        negate = word.startswith("!")
        body = word[1:] if negate else word
        if not body:
            raise ConsoleError("`!` must precede a filter word, e.g. !ep:send_email")
        name, sep, value = body.partition(":")
        if not sep:
            term = Predicate(
                "job.entrypoint ILIKE $1", (f"%{_like_escape(body)}%",), f"ep contains {body!r}"
            )
        else:
            name = name.lower()
            if name not in _QUALIFIERS:
                raise ConsoleError(
                    f"unknown filter {name!r}: use {', '.join(q + ':' for q in _QUALIFIERS)}"
                )
            if not value:
                raise ConsoleError(f"{name}: needs a value, e.g. {name}:{_EXAMPLE[name]}")
            if name in ("ep", "status", "id", "prio"):
                _items(name, value, {"ep": "name", "status": "status"}.get(name, "number"))
            term = _TERMS[name](value)
            content = content or name in ("payload", "header")
        if negate:
            term = Predicate(f"NOT ({term.sql})", term.args, f"not {term.description}")
        terms.append(term)
    return JobFilter(text=text.strip(), terms=tuple(terms), searches_content=content)


_EXAMPLE = {
    "ep": "send_email",
    "status": "failed",
    "id": "123",
    "prio": ">5",
    "age": ">10m",
    "payload": "user@example.com",
    "header": "trace",
}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _items(name: str, value: str, what: str) -> list[str]:
    """The comma list of a word; a list with nothing in it, or an empty item, is an error (a
    word that silently matched everything once widened a bulk write to the whole queue)."""
    items = value.split(",")
    if not any(items):
        raise ConsoleError(f"{name}: needs at least one {what}, e.g. {name}:{_EXAMPLE[name]}")
    if not all(items):
        raise ConsoleError(f"{name}: empty item in {value!r} (a stray comma?)")
    return items


def _ep_term(value: str) -> Predicate:
    names = _items("ep", value, "name")
    exact = [n for n in names if "*" not in n]
    patterns = [_like_escape(n).replace("*", "%") for n in names if "*" in n]
    parts: list[str] = []
    args: list[object] = []
    if exact:
        args.append(exact)
        parts.append(f"job.entrypoint = ANY(${len(args)}::text[])")
    if patterns:
        args.append(patterns)
        parts.append(f"job.entrypoint LIKE ANY(${len(args)}::text[])")
    return Predicate(" OR ".join(parts), tuple(args), f"ep:{value}")


def _status_term(value: str) -> Predicate:
    names = [v.lower() for v in _items("status", value, "status")]
    parts: list[str] = []
    plain = []
    for name in names:
        if name in _PSEUDO_STATUS:
            parts.append(_PSEUDO_STATUS[name])
        elif name in STATUSES:
            plain.append(name)
        else:
            raise ConsoleError(
                f"unknown status {name!r}: the queue holds queued, picked, failed "
                "(also ready, deferred); finished jobs are only in the log"
            )
    if plain:
        parts.append("job.status::text = ANY($1::text[])")
    return Predicate(" OR ".join(parts), (plain,) if plain else (), f"status:{value}")


def _compare(column: str, value: str, what: str, bits: int = 64) -> Predicate:
    # The column's own range (bigint id, integer priority): beyond it the server would fail.
    top = 2 ** (bits - 1) - 1

    def bounded(digits: str) -> int:
        # Length first: int() of thousands of digits is slow, then refused by Python itself.
        number = int(digits) if len(digits.lstrip("+-")) <= 20 else top + 1
        if not -top - 1 <= number <= top:
            raise ConsoleError(f"{what}: {digits[:24]} is out of range (at most {top:,})")
        return number

    if "," in value:
        parts = [v.strip() for v in _items(what, value, "number")]
        if not all(re.fullmatch(r"[+-]?\d+", part) for part in parts):
            raise ConsoleError(f"{what}: expects numbers, got {value!r}")
        numbers = [bounded(part) for part in parts]
        return Predicate(f"{column} = ANY($1::bigint[])", (numbers,), f"{what}:{value}")
    match = _COMPARE.match(value)
    if not match:
        raise ConsoleError(f"{what}: expects a number, optionally with > >= < <=, got {value!r}")
    operator = match.group(1) or "="
    number = bounded(match.group(2))
    return Predicate(f"{column} {operator} $1", (number,), f"{what}:{value}")


MAX_AGE_S = 100 * 365 * 86400  # PostgreSQL's timestamps would overflow long before a typo does


def _age_term(value: str) -> Predicate:
    match = re.match(r"^(>=|<=|>|<)?(\d+)([smhd]?)$", value)
    if not match:
        raise ConsoleError(f"age: expects e.g. >10m, <2h or >1d, got {value!r}")
    digits = match.group(2)
    unit = _AGE_UNITS[match.group(3) or "s"]
    seconds = int(digits) * unit if len(digits) <= 15 else MAX_AGE_S + 1
    if seconds > MAX_AGE_S:
        raise ConsoleError(f"age: {value[:24]!r} is more than 100 years")
    # Older than N = created before now() - N.
    operator = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[match.group(1) or ">"]
    return Predicate(
        f"job.created {operator} now() - make_interval(secs => $1)",
        (float(seconds),),
        f"age:{value}",
    )


def _payload_term(value: str) -> Predicate:
    return Predicate(
        "position(convert_to($1, 'UTF8') in coalesce(job.payload, ''::bytea)) > 0",
        (value,),
        f"payload contains {value!r}",
    )


def _header_term(value: str) -> Predicate:
    return Predicate(
        "coalesce(job.headers::text, '') ILIKE $1",
        (f"%{_like_escape(value)}%",),
        f"headers contain {value!r}",
    )


_TERMS: dict[str, Any] = {
    "ep": _ep_term,
    "status": _status_term,
    "id": lambda v: _compare("job.id", v, "id"),
    "prio": lambda v: _compare("job.priority", v, "prio", bits=32),
    "age": _age_term,
    "payload": _payload_term,
    "header": _header_term,
}


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


# -- payload rendering (UI-free: lines of plain text) -----------------------------------------


@dataclass(frozen=True)
class RenderedPayload:
    kind: str  # "json", "text", "hex", "empty"
    text: str


def render_payload(payload: bytes | None, *, truncated: bool = False) -> RenderedPayload:
    """Pretty JSON, UTF-8 text or a hex dump, whichever fits. The text is still untrusted."""
    if payload is None:
        return RenderedPayload("empty", "(no payload)")
    if not payload:
        return RenderedPayload("empty", "(empty payload)")
    if not truncated:
        try:
            decoded = payload.decode("utf-8")
            parsed = json.loads(decoded)
            pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass  # RecursionError: nested too deeply to pretty-print; shown as text
        else:
            return RenderedPayload("json", pretty)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut inside a multi-byte character at the page end is still text.
        if truncated and exc.start >= len(payload) - 3:
            text = payload[: exc.start].decode("utf-8")
        else:
            return RenderedPayload("hex", hex_dump(payload))
    if "\x00" in text:
        return RenderedPayload("hex", hex_dump(payload))
    return RenderedPayload("text", text)


def hex_dump(data: bytes, width: int = 16) -> str:
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<{width * 3 - 1}}  {ascii_}")
    return "\n".join(lines)


# -- failures ---------------------------------------------------------------------------------


TREND_HOURS = 24
# Fingerprinting costs regular expressions per log row (~60 µs): the newest this many
# exceptions of the window are grouped, and the screen says so when there are more.
GROUP_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class FailureGroup:
    """Logged exceptions (and holds) sharing one fingerprint (core/fingerprint.py)."""

    fingerprint: Fingerprint
    count: int
    held: int  # jobs of this group still held (status failed) in the queue
    first_seen: datetime
    last_seen: datetime
    entrypoints: tuple[str, ...]
    hourly: tuple[int, ...]  # exceptions per hour, oldest first, the last entry the latest hour
    sample_message: str  # the latest occurrence's own (unmasked) message
    sample_traceback: str
    sample_job_id: int
    since: datetime | None = None  # the window's start: `held` counts failures logged after it

    @property
    def key(self) -> str:
        return self.fingerprint.key

    @property
    def exception_type(self) -> str:
        return self.fingerprint.exception_type

    @property
    def message(self) -> str:
        """The masked message: what every occurrence of the group says."""
        return self.fingerprint.message


@dataclass(frozen=True)
class FailureGroups:
    groups: tuple[FailureGroup, ...]  # newest last seen first
    total: int  # groups in the window, shown or not
    scanned: int = 0  # exceptions grouped (the newest `GROUP_SCAN_LIMIT`)
    exceptions: int = 0  # exceptions logged in the window

    @property
    def partial(self) -> bool:
        return self.exceptions > self.scanned


def _fingerprint_sql(alias: str, first_param: int) -> tuple[str, str, str, tuple[str, ...]]:
    """(type, masked message, culprit frame) expressions over log alias `alias`, and params."""
    masked, mask_args = sql_masked_message(
        f"coalesce({alias}.traceback->>'exception_message', '')", first_param
    )
    frame, frame_args = sql_culprit_frame(
        f"{alias}.traceback->>'traceback'", first_param + len(mask_args)
    )
    kind = f"coalesce({alias}.traceback->>'exception_type', '')"
    return kind, masked, frame, mask_args + frame_args


def failure_group_predicate(
    group: Fingerprint,
    log_table: str,
    *,
    statuses: tuple[str, ...] = ("failed",),
    since: datetime | None = None,
) -> Predicate:
    """Jobs with a log row of one of `statuses` whose failure has this fingerprint, logged after
    `since` (the group's window: so the write's rows are the ones the group counts).

    `("failed",)`: held jobs that failed this way; `("exception",)`: jobs that raised it and were
    retried (queued or picked again).
    """
    kind, masked, frame, args = _fingerprint_sql("l", 6)
    window = "AND ($5::timestamptz IS NULL OR l.created > $5::timestamptz) "
    return Predicate(
        f"EXISTS (SELECT 1 FROM {log_table} AS l WHERE l.job_id = job.id "
        "AND l.status::text = ANY($1::text[]) "
        f"AND {kind} = $2 AND {masked} = $3 AND {frame} = $4 {window})",
        (list(statuses), group.exception_type, group.message, group.frame, since, *args),
        f"failed with {group.title()[:80]}" + (f" at {group.frame[-60:]}" if group.frame else ""),
    )


async def fetch_failure_groups(
    backend: Backend,
    now: datetime,
    *,
    window: timedelta = timedelta(hours=TREND_HOURS),
    limit: int = 200,
    scan_limit: int = GROUP_SCAN_LIMIT,
) -> FailureGroups:
    """Exceptions and holds logged since `now - window` (the console's clock) by fingerprint.

    The database groups (the rules travel as regular expressions, see core/fingerprint.py), so
    a day of log rows is not shipped here; samples are read for the groups returned only.
    """
    settings = backend.installation.settings.qualified
    masked, mask_args = sql_masked_message("coalesce(l.traceback->>'exception_message', '')", 4)
    frame, frame_args = sql_culprit_frame("d.tb", 4 + len(mask_args))
    args = mask_args + frame_args
    # The culprit frame is worked out once per code path, not per row: rows whose traceback
    # differs only by line numbers and the final message line share `tb_key`.
    rows = await backend.read_heavy(
        f"""WITH recent AS MATERIALIZED (
            SELECT l.id, l.job_id, l.created, l.entrypoint,
                (l.status = 'failed' AND job.id IS NOT NULL) AS held,
                coalesce(l.traceback->>'exception_type', '') AS exception_type,
                {masked} AS masked,
                l.traceback->>'traceback' AS tb,
                md5(regexp_replace(
                    CASE WHEN right(l.traceback->>'traceback',
                            length(l.traceback->>'exception_message') + 1)
                            = (l.traceback->>'exception_message') || E'\n'
                        THEN left(l.traceback->>'traceback',
                            length(l.traceback->>'traceback')
                            - length(l.traceback->>'exception_message') - 1)
                        ELSE coalesce(l.traceback->>'traceback', '') END,
                    'line [0-9]+', 'line', 'g')) AS tb_key,
                least($3::int - 1, greatest(0,
                    floor(extract(epoch FROM ($2::timestamptz - l.created)) / 3600)))::int
                    AS hours_ago
            -- the newest rows first, then the expressions: for those rows only
            FROM (
                SELECT * FROM {settings.queue_table_log}
                WHERE created > $1 AND status IN ('exception', 'failed')
                ORDER BY created DESC
                LIMIT {int(scan_limit)}
            ) AS l
            LEFT JOIN {settings.queue_table} AS job
                ON job.id = l.job_id AND job.status = 'failed'
        ), frames AS (
            SELECT d.tb_key, {frame} AS frame
            FROM (SELECT DISTINCT ON (tb_key) tb_key, tb FROM recent) AS d
        ), keyed AS (
            SELECT r.*, f.frame FROM recent AS r JOIN frames AS f USING (tb_key)
        ), groups AS (
            SELECT exception_type, masked, frame, count(*) AS n,
                count(DISTINCT job_id) FILTER (WHERE held) AS held,
                min(created) AS first_seen, max(created) AS last_seen,
                array_agg(DISTINCT entrypoint ORDER BY entrypoint) AS entrypoints,
                (array_agg(id ORDER BY created DESC, id DESC))[1] AS sample_id
            FROM keyed GROUP BY exception_type, masked, frame
        ), trend AS (
            SELECT exception_type, masked, frame,
                array_agg(hours_ago) AS hours, array_agg(n) AS counts
            FROM (SELECT exception_type, masked, frame, hours_ago, count(*) AS n
                  FROM keyed GROUP BY exception_type, masked, frame, hours_ago) AS h
            GROUP BY exception_type, masked, frame
        ), shown AS (
            SELECT g.*, t.hours, t.counts, count(*) OVER () AS total,
                (SELECT count(*) FROM recent) AS scanned,
                (SELECT count(*) FROM {settings.queue_table_log} AS c
                 WHERE c.created > $1 AND c.status IN ('exception', 'failed')) AS exceptions
            FROM groups AS g JOIN trend AS t USING (exception_type, masked, frame)
            ORDER BY g.last_seen DESC, g.sample_id DESC
            LIMIT {int(limit)}
        )
        SELECT shown.*, s.job_id AS sample_job_id,
            coalesce(s.traceback->>'exception_message', '') AS sample_message,
            coalesce(s.traceback->>'traceback', '') AS sample_traceback
        FROM shown JOIN {settings.queue_table_log} AS s ON s.id = shown.sample_id
        ORDER BY shown.last_seen DESC, shown.sample_id DESC""",
        now - window,
        now,
        max(1, int(window.total_seconds() // 3600)),
        *args,
    )
    groups = []
    for r in rows:
        hourly = [0] * max(1, int(window.total_seconds() // 3600))
        for hours_ago, n in zip(r["hours"], r["counts"], strict=True):
            hourly[len(hourly) - 1 - int(hours_ago)] += int(n)
        groups.append(
            FailureGroup(
                fingerprint=Fingerprint(
                    str(r["exception_type"]), str(r["masked"]), str(r["frame"])
                ),
                count=int(r["n"]),
                held=int(r["held"]),
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                entrypoints=tuple(str(e) for e in r["entrypoints"]),
                hourly=tuple(hourly),
                sample_message=str(r["sample_message"]),
                sample_traceback=str(r["sample_traceback"]),
                sample_job_id=int(r["sample_job_id"]),
                since=now - window,
            )
        )
    if not rows:
        return FailureGroups((), 0)
    first = rows[0]
    return FailureGroups(
        tuple(groups), int(first["total"]), int(first["scanned"]), int(first["exceptions"])
    )


HELD_FILTER = JobFilter("status:failed", (Predicate("job.status = 'failed'", (), "held"),))
