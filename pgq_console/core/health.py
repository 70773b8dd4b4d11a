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

One screen read is three statements sent at once (`fetch_health`; on a pool they run side by
side, so a key press waits one round trip, not one per statement): the activity with the
held-failures index's state; the sizes with the schema catalog
(`catalog.combined_catalog_columns`: PgQueuer's own inspection in one SELECT instead of its 7
statements, twice), both of which wait for a lock on a queue table; the EXPLAIN of the held
count (an EXPLAIN cannot be part of a SELECT). At 50 ms RTT the screen
took 2.4 s to show, nearly all of it PgQueuer's 14 catalog statements over its pool driver.
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
from pgq_console.core.jobs.held import forget_held_index, held_index_name
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
    held_index: HeldIndex | None = None  # None: could not be read
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


def held_index_state_sql(name_param: int, schema_param: int) -> str:
    """The held-failures index, if any: valid, and how far a build has come (one row at most)."""
    return (
        "SELECT i.indisvalid AS valid, p.phase::text AS phase, p.blocks_done, p.blocks_total "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.indexrelid "
        f"WHERE c.relname = ${name_param} "
        f"AND n.nspname = coalesce(nullif(${schema_param}::text, ''), current_schema())"
    )


def health_sql(backend: Backend) -> tuple[str, list[object]]:
    """The activity (`activity_sql`) and the held-failures index's state in one statement (the
    index state rides on the 'server' row): neither needs a lock on a queue table."""
    settings = backend.installation.settings
    args: list[object] = [
        _table_names(backend),
        settings.db_schema or "",
        LONG_TRANSACTION,
        settings.channel,
        held_index_name(backend),
    ]
    held = held_index_state_sql(5, 2)
    sql = (
        f"SELECT a.*, s.held_index FROM ({activity_sql(backend)}) AS a\n"
        f"LEFT JOIN (SELECT (SELECT json_agg(h) FROM ({held}) AS h)::text AS held_index) AS s\n"
        "    ON a.kind = 'server'"
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
    reads: list[Awaitable[Any]] = [
        backend.read(sql, *args),
        backend.read_heavy(sized_sql, *sized_args),
        backend.read("EXPLAIN " + held_count_sql(backend)),
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
    rows, sized, plan = results[0], results[1], results[2]
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
        assert isinstance(results[3], SchemaStatus)
        schema = results[3]
    elif isinstance(sized, BaseException):
        schema = SchemaStatus(False, (), (), version("pgqueuer"), error_line(sized, limit=200))
    else:
        schema = _schema_from(sized[0], settings)
    server = next(row for row in rows if row["kind"] == "server")
    held_index: HeldIndex | None = None
    if not isinstance(plan, BaseException):  # else unknown: the rest of the screen still matters
        held_index = _held_index(backend, json.loads(server["held_index"] or "[]"), plan)
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


# -- the index PgQueuer does not have: held failures ----------------------------------------------

# PgQueuer indexes queued and picked rows (partial indexes) but not held failures
# (status = 'failed'): counting them, or a `status:failed` page when they are rare and old, reads
# the whole queue table. The Database screen offers this index as a guarded action.


def held_index_sql(backend: Backend) -> str:
    names = backend.installation.settings.qualified
    index = held_index_name(backend)  # CREATE INDEX puts it in the table's schema
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} "
        f"ON {names.queue_table} (entrypoint, id) WHERE status = 'failed'"
    )


def held_count_sql(backend: Backend) -> str:
    """The statement whose plan is shown: held failures per entrypoint (the overview's count)."""
    queue = backend.installation.settings.qualified.queue_table
    return f"SELECT entrypoint, count(*) FROM {queue} WHERE status = 'failed' GROUP BY entrypoint"


@dataclass(frozen=True)
class HeldIndex:
    name: str
    exists: bool
    valid: bool  # False: a CREATE INDEX CONCURRENTLY that failed left it INVALID (unused)
    plan: tuple[str, ...]  # EXPLAIN of `held_count_sql` as it runs now
    building: str | None = None  # a build in progress: its phase and how far

    @property
    def usable(self) -> bool:
        return self.exists and self.valid


async def fetch_held_index(backend: Backend) -> HeldIndex:
    """The index's state (a build's progress with it) and the plan: two statements at once."""
    schema = backend.installation.settings.db_schema or ""
    rows, plan = await asyncio.gather(
        backend.read(held_index_state_sql(1, 2), held_index_name(backend), schema),
        backend.read("EXPLAIN " + held_count_sql(backend)),
    )
    return _held_index(backend, rows, plan)


def _held_index(
    backend: Backend, rows: list[dict[str, Any]], plan: list[dict[str, Any]]
) -> HeldIndex:
    """`HeldIndex` from `held_index_state_sql`'s rows and the EXPLAIN's."""
    building = None
    if rows and not rows[0]["valid"] and rows[0]["phase"] is not None:
        p = rows[0]
        total = int(p["blocks_total"] or 0)
        done = f", {100 * int(p['blocks_done'] or 0) // total}% of blocks" if total else ""
        building = f"{p['phase']}{done}"
    return HeldIndex(
        name=held_index_name(backend),
        exists=bool(rows),
        valid=bool(rows and rows[0]["valid"]),
        plan=tuple(str(next(iter(r.values()))) for r in plan),
        building=building,
    )


# Index builds started by HeldIndexAction, by index name (they outlive the dialog).
HELD_INDEX_BUILDS: dict[str, asyncio.Task[None]] = {}


async def _build_held_index(backend: Backend, statements: tuple[str, ...]) -> None:
    connection = await backend.new_connection()
    try:
        driver = backend.new_driver(connection)
        await driver.execute("SET statement_timeout = 0")  # minutes on millions of rows
        for statement in statements:
            await driver.execute(statement)
        forget_held_index(backend)  # `status:failed` pages read exactly from now on
    except Exception as exc:
        log.warning("building the held-failures index failed: %s", exc)
        raise
    finally:
        close = getattr(connection, "close", None)
        if close is not None:
            await close()


@dataclass
class HeldIndexAction(Action):
    """`CREATE INDEX CONCURRENTLY` on held failures, previewed with the plan it changes.

    CONCURRENTLY cannot run in a transaction, so it runs on a connection of its own (without
    the console's statement timeout: on 10M rows it takes minutes), started by `apply`; the
    framework's transaction carries the audit announcement. An INVALID index left by a failed
    attempt is dropped (concurrently) first. The plan after is what the Database screen shows.
    """

    backend: Backend | None = None
    before: HeldIndex | None = None

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = (
            "held-index",
            "Index held failures (status = 'failed')",
            "create index",
        )

    def statements(self, backend: Backend) -> tuple[str, ...]:
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {held_index_name(backend)}"
        create = held_index_sql(backend)
        if self.before is not None and self.before.exists and not self.before.valid:
            return (drop, create)
        return (create,)

    async def preview(self, backend: Backend) -> ActionPreview:
        self.backend = backend
        self.before = await fetch_held_index(backend)
        statements = () if self.before.usable else self.statements(backend)
        notes = [
            "CONCURRENTLY: PgQueuer's workers keep writing; it reads the whole queue table "
            "(minutes on millions of rows) and runs without the console's statement timeout.",
            "Each hold and requeue then also updates this small index.",
        ]
        if self.before.usable:
            notes.insert(0, f"{self.before.name} exists already: nothing to do")
        elif self.before.exists:
            notes.insert(0, f"{self.before.name} is INVALID (a failed build): dropped first")
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(statements) and 1,
            matching=len(statements) and 1,
            ids=(),
            columns=(f"plan now of: {held_count_sql(backend)}",),
            sample=tuple((line,) for line in self.before.plan[:8]),
            statement=";\n".join(statements),
            predicate=f"{backend.installation.label}: index {self.before.name}",
            notes=tuple(notes),
            noun="index",
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        """Start the build and return: CONCURRENTLY waits for every transaction older than
        it, this action's own (which carries the audit) included, so it cannot finish inside
        it. The build goes on aside on its own connection; the Database screen shows its
        progress, then the plan after. If the console quits first, the build is cancelled and
        leaves an INVALID index, which this action drops the next time."""
        assert self.backend is not None
        backend = self.backend
        key = held_index_name(backend)
        running = HELD_INDEX_BUILDS.get(key)
        if running is not None and not running.done():
            from pgq_console.core.errors import ConsoleError

            raise ConsoleError(f"{key} is being built already")
        HELD_INDEX_BUILDS[key] = asyncio.create_task(
            _build_held_index(backend, self.statements(backend)), name=f"build {key}"
        )
        return (1,)

    def predicate_description(self) -> str:
        return f"index {held_index_name(self.backend) if self.backend else ''}"
