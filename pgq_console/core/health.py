"""The database's health as far as the queue is concerned, read from the statistics views.

Why each part matters to a queue:
- dead tuples and autovacuum: every job is an INSERT, UPDATEs and a DELETE; a queue table whose
  dead tuples outgrow its live ones makes every dequeue slower;
- long transactions and idle-in-transaction sessions hold back the xmin horizon, so (auto)vacuum
  cannot remove those dead tuples, however often it runs (idle in one for over 5 s: a client
  between two statements of a short transaction, this console's included, is not a problem);
- lock waits on the queue tables stall workers (and this console's reads);
- `pg_notification_queue_usage()`: a listener stuck in a transaction stops the NOTIFY queue from
  draining; at 100 % every NOTIFY (every enqueue) fails;
- listeners: PostgreSQL exposes no catalog of other sessions' LISTENs. A connection dedicated to
  LISTEN (pgqueuer's pool and psycopg drivers, this console) sits idle with `LISTEN "<channel>"`
  as its last statement, which pg_stat_activity shows; a worker that LISTENs and dequeues on one
  connection shows its last dequeue instead, so the count is a lower bound, said so on screen.

Table sizes are read in a separate statement from the activity: `pg_total_relation_size` needs a
lock on the table, and when something holds an exclusive lock on it, that is exactly when the
lock waits below must still be shown.

One screen read is four statements sent at once (`fetch_health`; on a pool they run side by
side, so a key press waits one round trip, not one per statement): the activity with the
suggested indexes' states (core/indexes.py); the sizes with the schema catalog
(`catalog.combined_catalog_columns`: PgQueuer's own inspection in one SELECT instead of its 7
statements, twice), both of which wait for a lock on a queue table; the EXPLAIN of the held
count and that of the overview's hour read (an EXPLAIN cannot be part of a SELECT). At 50 ms
RTT the screen took 2.4 s to show, nearly all of it PgQueuer's 14 catalog statements over its
pool driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions import Action, ActionPreview
from pgq_console.core.index_cache import index_state_sql
from pgq_console.core.indexes import (
    IndexState,
    SuggestedIndex,
    held_failures_index,
    index_state,
    statistics_created_index,
)
from pgq_console.core.stats import int_array
from pgq_console.core.text import error_line, one_line

if TYPE_CHECKING:
    from pgqueuer.domain.schema.model import Schema
    from pgqueuer.domain.settings import DBSettings

    from pgq_console.core.backend import Backend, Tx

log = logging.getLogger(__name__)

LONG_TRANSACTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TableHealth:
    name: str
    total_bytes: int | None  # None: the size could not be read (table locked)
    live_tuples: int
    dead_tuples: int
    last_autovacuum: datetime | None
    last_vacuum: datetime | None
    last_autoanalyze: datetime | None
    persistence: str

    @property
    def dead_ratio(self) -> float:
        total = self.live_tuples + self.dead_tuples
        return self.dead_tuples / total if total else 0.0


@dataclass(frozen=True)
class Session:
    pid: int
    application_name: str
    user: str
    client: str
    state: str
    xact_start: datetime | None
    query_start: datetime | None
    wait_event: str
    query: str
    blocked_by: tuple[int, ...] = ()
    relation: str = ""


@dataclass(frozen=True)
class SchemaStatus:
    installed: bool
    pending: tuple[str, ...]  # statements `upgrade` would run
    notes: tuple[str, ...]
    pgqueuer_version: str
    problem: str | None = None

    @property
    def summary(self) -> str:
        if self.problem:
            return f"cannot inspect: {self.problem}"
        if not self.installed:
            return "PgQueuer is not installed"
        if self.pending:
            return f"older than pgqueuer {self.pgqueuer_version}: {len(self.pending)} changes"
        return f"up to date with pgqueuer {self.pgqueuer_version}"


@dataclass(frozen=True)
class HealthSnapshot:
    taken_at: datetime  # the database's now()
    server_version: str
    tables: tuple[TableHealth, ...]
    sizes_problem: str | None
    long_transactions: tuple[Session, ...]  # open longer than LONG_TRANSACTION, or idle in one
    lock_waits: tuple[Session, ...]  # waiting for a lock on a queue table
    listeners: tuple[Session, ...]
    notify_queue_usage: float  # 0..1
    schema: SchemaStatus
    held_index: IndexState | None = None  # None: could not be read
    statistics_index: IndexState | None = None  # None: could not be read
    standby: bool = False  # pg_is_in_recovery(): no index is offered
    # Seconds of the reading the server worked, as the screen's budget counts them (`fetch_health`).
    read_cost_s: float = 0.0


def _table_names(backend: Backend) -> list[str]:
    s = backend.installation.settings
    return [s.queue_table, s.queue_table_log, s.statistics_table, s.schedules_table]


def _schema_expr(backend: Backend) -> str:
    return "coalesce(nullif($2::text, ''), current_schema())"


def activity_sql(backend: Backend) -> str:
    return f"""
WITH queue_tables AS (
    SELECT c.oid, c.relname, c.relpersistence
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = ANY($1::text[]) AND n.nspname = {_schema_expr(backend)} AND c.relkind = 'r'
),
tables AS (
    SELECT 'table' AS kind, t.relname::text AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
        s.last_autovacuum, s.last_vacuum, s.last_autoanalyze,
        CASE t.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'logged' END AS persistence
    FROM queue_tables t JOIN pg_stat_all_tables s ON s.relid = t.oid
),
sessions AS (
    SELECT a.pid, coalesce(a.application_name, '') AS application_name,
        coalesce(a.usename::text, '') AS usename,
        coalesce(host(a.client_addr), 'local') AS client, coalesce(a.state, '') AS state,
        a.xact_start, a.query_start, a.state_change,
        coalesce(a.wait_event_type || ':' || a.wait_event, '') AS wait_event,
        left(a.query, 200) AS query,
        pg_blocking_pids(a.pid)::text AS blocked_by
    FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
        AND a.backend_type = 'client backend'
)
SELECT 'table' AS kind, name, live, dead, last_autovacuum, last_vacuum, last_autoanalyze,
    persistence, NULL::int AS pid, NULL AS application_name, NULL AS usename, NULL AS client,
    NULL AS state, NULL::timestamptz AS xact_start, NULL::timestamptz AS query_start,
    NULL AS wait_event, NULL AS query, NULL::text AS blocked_by, NULL AS relation,
    NULL::float8 AS usage, NULL AS version, now() AS db_now
FROM tables
UNION ALL
SELECT 'long', NULL, NULL, NULL, NULL, NULL, NULL, NULL, pid, application_name, usename, client,
    state, xact_start, query_start, wait_event, query, blocked_by, NULL, NULL, NULL, now()
FROM sessions
WHERE (state LIKE 'idle in transaction%' AND state_change < now() - interval '5 seconds')
    OR xact_start < now() - $3::interval
UNION ALL
SELECT DISTINCT ON (s.pid) 'lock', NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.pid,
    s.application_name, s.usename, s.client, s.state, s.xact_start, s.query_start, s.wait_event,
    s.query, s.blocked_by, t.relname::text, NULL, NULL, now()
FROM sessions s JOIN pg_locks l ON l.pid = s.pid AND NOT l.granted
    JOIN queue_tables t ON t.oid = l.relation
UNION ALL
SELECT 'listen', NULL, NULL, NULL, NULL, NULL, NULL, NULL, pid, application_name, usename,
    client, state, xact_start, query_start, wait_event, query, blocked_by, NULL, NULL, NULL, now()
FROM sessions
WHERE query ~* '^[[:space:]]*listen[[:space:]]'
    AND regexp_replace(btrim(query, E' ;\n'), '^[[:space:]]*listen[[:space:]]+', '', 'i')
        IN ($4::text, '"' || $4::text || '"')
UNION ALL
SELECT 'server', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, pg_notification_queue_usage(), current_setting('server_version'),
    now()
"""


def suggested_indexes(backend: Backend) -> tuple[SuggestedIndex, SuggestedIndex]:
    """The indexes the screen offers (core/indexes.py): held failures, statistics on created."""
    return held_failures_index(backend), statistics_created_index(backend)


def health_sql(backend: Backend) -> tuple[str, list[object]]:
    """The activity (`activity_sql`), whether the server is a standby and the suggested
    indexes' states in one statement (riding on the 'server' row): none needs a lock on a
    queue table."""
    settings = backend.installation.settings
    held, statistics = suggested_indexes(backend)
    args: list[object] = [
        _table_names(backend),
        settings.db_schema or "",
        LONG_TRANSACTION,
        settings.channel,
        held.table,
        held.name,
        statistics.table,
        statistics.name,
    ]
    held_state = index_state_sql(5, 6, 2)
    statistics_state = index_state_sql(7, 8, 2)
    sql = (
        f"SELECT a.*, s.* FROM ({activity_sql(backend)}) AS a\n"
        "LEFT JOIN (SELECT pg_is_in_recovery() AS standby,\n"
        f"    (SELECT json_agg(h) FROM ({held_state}) AS h)::text AS held_index,\n"
        f"    (SELECT json_agg(h) FROM ({statistics_state}) AS h)::text AS statistics_index\n"
        ") AS s ON a.kind = 'server'"
    )
    return sql, args


def sizes_and_catalog_sql(backend: Backend) -> tuple[str, list[object], bool]:
    """The table sizes and the schema catalog (`catalog.combined_catalog_columns`) in one
    statement: both wait for a lock on a queue table (`pg_total_relation_size`,
    `pg_get_indexdef`), the activity must not. The arguments; and whether the catalog is in it
    (False: PgQueuer's queries cannot be combined any more, `fetch_schema_status` reads it)."""
    from pgq_console.core.backend.catalog import NotCombinable, combined_catalog_columns

    settings = backend.installation.settings
    args: list[object] = [_table_names(backend), settings.db_schema or ""]
    try:
        columns, catalog_args = combined_catalog_columns(settings, first=len(args) + 1)
    except NotCombinable:
        columns, catalog_args = [], ()
    sizes = f"(SELECT coalesce(json_agg(z), '[]'::json) FROM ({sizes_sql(backend)}) AS z)::text"
    sql = "SELECT " + ",\n       ".join([f"{sizes} AS sizes", *columns])
    return sql, [*args, *catalog_args], bool(catalog_args)


def sizes_sql(backend: Backend) -> str:
    return f"""
SELECT c.relname::text AS name, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = ANY($1::text[]) AND n.nspname = {_schema_expr(backend)} AND c.relkind = 'r'
"""


def _session(row: dict[str, Any]) -> Session:
    return Session(
        pid=int(row["pid"]),
        application_name=str(row["application_name"] or ""),
        user=str(row["usename"] or ""),
        client=str(row["client"] or ""),
        state=str(row["state"] or ""),
        xact_start=row["xact_start"],
        query_start=row["query_start"],
        wait_event=str(row["wait_event"] or ""),
        query=str(row["query"] or ""),
        # As text: asyncpg reads int4[] only after a catalog lookup per connection (6 round
        # trips, 0.3 s at 50 ms RTT, on the first key press that lands on that connection).
        blocked_by=tuple(int_array(row["blocked_by"])),
        relation=str(row["relation"] or ""),
    )


def _schema_status(live: Schema, settings: DBSettings) -> SchemaStatus:
    """Installed, and what `upgrade` would change: PgQueuer's planner over the schema read."""
    from pgqueuer.adapters.persistence import schema_plan
    from pgqueuer.domain.schema.declaration import target

    installed = bool(live.tables or live.enums)
    plan = schema_plan.plan(live, target(settings), settings) if installed else None
    return SchemaStatus(
        installed=installed,
        pending=tuple(plan.statements) if plan else (),
        notes=tuple(plan.notes) if plan else (),
        pgqueuer_version=version("pgqueuer"),
    )


async def fetch_schema_status(backend: Backend) -> SchemaStatus:
    """Installed, and what `upgrade` would change, by pgqueuer's own catalog diff (read-only),
    from one reading of the catalog (`catalog.read_schema`: one statement)."""
    from pgq_console.core.backend.catalog import read_schema

    settings = backend.installation.settings
    try:
        await backend.ensure_connected()
        return _schema_status(await read_schema(backend, settings), settings)
    except Exception as exc:
        return SchemaStatus(False, (), (), version("pgqueuer"), error_line(exc, limit=200))


def _schema_from(row: dict[str, Any], settings: DBSettings) -> SchemaStatus:
    from pgq_console.core.backend.catalog import schema_from_row

    try:
        return _schema_status(schema_from_row(row, settings), settings)
    except Exception as exc:
        return SchemaStatus(False, (), (), version("pgqueuer"), error_line(exc, limit=200))


async def fetch_health(
    backend: Backend, long_transaction: timedelta = LONG_TRANSACTION
) -> HealthSnapshot:
    """The screen's reading: its statements sent at once (see the module), one round trip on a
    pool; a connection of one takes them in turn."""
    settings = backend.installation.settings
    names = _table_names(backend)
    sql, args = health_sql(backend)
    args[2] = long_transaction
    sized_sql, sized_args, with_catalog = sizes_and_catalog_sql(backend)
    held, statistics = suggested_indexes(backend)
    reads: list[Awaitable[Any]] = [
        backend.read(sql, *args),
        backend.read_heavy(sized_sql, *sized_args),
        backend.read("EXPLAIN " + held.explained),
        backend.read("EXPLAIN " + statistics.explained),
    ]
    if not with_catalog:
        reads.append(fetch_schema_status(backend))
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended: list[float] = []  # when each read that succeeded came back

    async def timed(read: Awaitable[Any]) -> Any:
        result = await read
        ended.append(loop.time())
        return result

    results = await asyncio.gather(*(timed(read) for read in reads), return_exceptions=True)
    # The reading cost the server until its last good answer: the statements that failed
    # (sizes, catalog, EXPLAIN: catalog lookups, cheap unless they wait) waited for a lock on
    # a queue table, which costs the server nothing, and counting their statement timeout
    # would slow this screen to one read every 100 s exactly while a lock stalls the queue.
    cost = max(ended, default=loop.time()) - started
    rows, sized, plan, statistics_plan = results[0], results[1], results[2], results[3]
    if isinstance(rows, BaseException):
        raise rows
    sizes: dict[str, int] = {}
    sizes_problem = None
    if isinstance(sized, BaseException):  # a lock on a queue table: the rest still matters
        sizes_problem = error_line(sized, limit=120)
    else:
        sizes = {str(r["name"]): int(r["bytes"]) for r in json.loads(sized[0]["sizes"])}
    schema: SchemaStatus
    if not with_catalog:
        assert isinstance(results[4], SchemaStatus)
        schema = results[4]
    elif isinstance(sized, BaseException):
        schema = SchemaStatus(False, (), (), version("pgqueuer"), error_line(sized, limit=200))
    else:
        schema = _schema_from(sized[0], settings)
    server = next(row for row in rows if row["kind"] == "server")
    # An EXPLAIN that failed (it waits for a lock on its table): that index's state unknown,
    # the rest of the screen still matters.
    held_index: IndexState | None = None
    if not isinstance(plan, BaseException):
        held_index = index_state(held, json.loads(server["held_index"] or "[]"), plan)
    statistics_index: IndexState | None = None
    if not isinstance(statistics_plan, BaseException):
        statistics_index = index_state(
            statistics, json.loads(server["statistics_index"] or "[]"), statistics_plan
        )
    tables: list[TableHealth] = []
    long: list[Session] = []
    locks: list[Session] = []
    listeners: list[Session] = []
    usage = 0.0
    server_version = ""
    taken_at = None
    for row in rows:
        taken_at = row["db_now"]
        kind = row["kind"]
        if kind == "table":
            tables.append(
                TableHealth(
                    name=str(row["name"]),
                    total_bytes=sizes.get(str(row["name"])),
                    live_tuples=int(row["live"] or 0),
                    dead_tuples=int(row["dead"] or 0),
                    last_autovacuum=row["last_autovacuum"],
                    last_vacuum=row["last_vacuum"],
                    last_autoanalyze=row["last_autoanalyze"],
                    persistence=str(row["persistence"]),
                )
            )
        elif kind == "long":
            long.append(_session(row))
        elif kind == "lock":
            locks.append(_session(row))
        elif kind == "listen":
            listeners.append(_session(row))
        else:
            usage = float(row["usage"] or 0.0)
            server_version = str(row["version"])
    assert taken_at is not None  # the 'server' row is always there
    order = {name: i for i, name in enumerate(names)}
    return HealthSnapshot(
        taken_at=taken_at,
        server_version=server_version,
        tables=tuple(sorted(tables, key=lambda t: order.get(t.name, 99))),
        sizes_problem=sizes_problem,
        long_transactions=tuple(sorted(long, key=lambda s: s.xact_start or taken_at)),
        lock_waits=tuple(locks),
        listeners=tuple(listeners),
        notify_queue_usage=usage,
        schema=schema,
        held_index=held_index,
        statistics_index=statistics_index,
        standby=bool(server["standby"]),
        read_cost_s=cost,
    )


# -- guarded schema actions ------------------------------------------------------------------------


@dataclass
class SchemaAction(Action):
    """Install or upgrade the PgQueuer schema with pgqueuer's own `install()`/`apply_upgrade()`.

    DDL cannot share one transaction with pgqueuer's upgrade (ALTER TYPE ... ADD VALUE), so
    `apply` runs pgqueuer's call on its own connection; the framework's transaction only carries
    the audit announcement. The preview is the exact SQL (install) or plan (upgrade).
    """

    upgrade: bool = True
    backend: Backend | None = None
    planned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.upgrade:
            self.name, self.title, self.verb = (
                "schema-upgrade",
                "Upgrade the PgQueuer schema",
                "upgrade",
            )
        else:
            self.name, self.title, self.verb = (
                "schema-install",
                "Install the PgQueuer schema",
                "install",
            )
        self.changed_ids_are = ""  # statements, not rows: the audit records no ids

    async def preview(self, backend: Backend) -> ActionPreview:
        self.backend = backend
        status = await fetch_schema_status(backend)
        if status.problem:
            from pgq_console.core.errors import ConsoleError

            raise ConsoleError(f"cannot inspect the schema: {status.problem}")
        if self.upgrade:
            statements = status.pending if status.installed else ()
            notes = status.notes
        else:
            statements = () if status.installed else (backend.queries.qbe.build_install_query(),)
            notes = ("already installed",) if status.installed else ()
        self.planned = tuple(statements)
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(statements),
            matching=len(statements),
            ids=(),
            columns=("statement",),
            sample=tuple((one_line(s, limit=120),) for s in statements[:5]),
            statement="\n\n".join(statements),
            statement_label="statements",  # PgQueuer's own DDL: nothing is bound to it
            predicate=f"{backend.installation.label} ({len(statements)} statements)",
            notes=tuple(notes),
            noun="statement",
            nothing=(
                ("The schema is up to date" if status.installed else "The schema is not installed")
                if self.upgrade
                else "The schema is already installed"
            ),
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        assert self.backend is not None
        backend = self.backend
        connection = await backend.new_connection()
        try:
            queries = backend.installation.queries(backend.new_driver(connection))
            if self.upgrade:
                await queries.apply_upgrade()
            else:
                await queries.install()
        finally:
            close = getattr(connection, "close", None)
            if close is not None:
                await close()
        return tuple(range(1, len(self.planned) + 1))

    def predicate_description(self) -> str:
        return "the PgQueuer schema"
