"""Indexes PgQueuer does not have that this console's reads need, offered as guarded actions.

Each is one `SuggestedIndex`: its name (per installation, in the table's schema), its CREATE
statement, the statement whose plan it changes and what the preview notes say. One action
(`IndexAction`) previews, builds and audits any of them; the Database screen shows each one's
state and the plan of its statement.

- held failures (`status = 'failed'`): PgQueuer indexes queued and picked rows only, so counting
  held failures, or a `status:failed` page when they are rare and old, reads the whole queue
  table;
- the statistics table on `created`: it has only its primary key and its unique index
  (priority first), and nothing prunes it, so the overview's hour reads (rates, done and errors
  per minute, sparkline) and the Charts' minutes read all of its history: on 30 days of sparse
  history (5.3M rows) the windows read took 0.77-1.0 s, 0.15-0.21 s with the index
  (bench/statistics_history_bench.py), and the overview paces its rates by that cost.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions import Action, ActionPreview
from pgq_console.core.audit import AuditRecord
from pgq_console.core.index_cache import (
    forget_index,
    index_state_sql,
    statistics_index_name,
    table_rows,
)
from pgq_console.core.jobs.held import forget_held_index, held_index_name
from pgq_console.core.stats import windows_sql

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

log = logging.getLogger(__name__)

# The plan lines a preview shows (the scan of the table first: `focus_plan`); more are counted.
PLAN_LINES_SHOWN = 8


@dataclass(frozen=True)
class SuggestedIndex:
    """An index the console offers: what it is, what it is for, how its effect is shown."""

    name: str  # bare: CREATE INDEX puts it in its table's schema
    table: str  # the table's bare name (catalog lookups)
    schema: str  # the installation's schema, "" for the search path
    definition: str  # what follows ON: the qualified table, its columns, any WHERE
    explained: str  # the statement whose plan it changes (EXPLAIN only, never ANALYZE)
    plan_of: str  # how the screen and the preview name that statement
    notes: tuple[str, ...]
    # Shown of the plan: the scan of this table and its details (None: the whole plan).
    plan_focus: str | None = None
    built: Callable[[Backend], None] | None = None  # after a build (forget a cached state)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def create(self) -> str:
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.definition}"

    @property
    def drop(self) -> str:
        return f"DROP INDEX CONCURRENTLY IF EXISTS {self.qualified_name}"


def held_failures_index(backend: Backend) -> SuggestedIndex:
    settings = backend.installation.settings
    queue = settings.qualified.queue_table
    return SuggestedIndex(
        name=held_index_name(backend),
        table=settings.queue_table,
        schema=settings.db_schema or "",
        definition=f"{queue} (entrypoint, id) WHERE status = 'failed'",
        explained=held_count_sql(backend),
        plan_of=held_count_sql(backend),
        notes=(
            "CONCURRENTLY: PgQueuer's workers keep writing; it reads the whole queue table "
            "(minutes on millions of rows) and runs without the console's statement timeout.",
            "Each hold and requeue then also updates this small index.",
        ),
        built=forget_held_index,  # `status:failed` pages read exactly from now on
    )


def held_count_sql(backend: Backend) -> str:
    """The statement whose plan is shown: held failures per entrypoint (the overview's count)."""
    queue = backend.installation.settings.qualified.queue_table
    return f"SELECT entrypoint, count(*) FROM {queue} WHERE status = 'failed' GROUP BY entrypoint"


def statistics_created_index(backend: Backend) -> SuggestedIndex:
    settings = backend.installation.settings
    return SuggestedIndex(
        name=statistics_index_name(backend),
        table=settings.statistics_table,
        schema=settings.db_schema or "",
        definition=f"{settings.qualified.statistics_table} (created)",
        explained=windows_sql(backend.installation),
        plan_of="the overview's hour read (rates, done/1m, sparkline)",
        notes=(
            "Nothing prunes the statistics table: without this index the overview's hour "
            "reads and the Charts' minutes scan all of its history, and the overview reads "
            "its rates less often the longer that takes.",
            "CONCURRENTLY: PgQueuer keeps writing; it reads the whole table once and runs "
            "without the console's statement timeout. Each aggregation then also updates it.",
        ),
        plan_focus=settings.statistics_table,
        built=forget_statistics_index,  # the overview stops blaming its slow rates on it
    )


def forget_statistics_index(backend: Backend) -> None:
    forget_index(backend, statistics_index_name(backend))


@dataclass(frozen=True)
class IndexState:
    name: str
    exists: bool
    valid: bool  # False: a CREATE INDEX CONCURRENTLY that failed left it INVALID (unused)
    plan: tuple[str, ...]  # EXPLAIN of its statement as it runs now (`SuggestedIndex.plan_focus`)
    building: str | None = None  # a build in progress: its phase and how far
    table_rows: int | None = None  # the table's row estimate (None: never analyzed, or no table)

    @property
    def usable(self) -> bool:
        return self.exists and self.valid


def plan_sample(plan: tuple[str, ...]) -> tuple[tuple[str], ...]:
    """The plan lines a preview shows, one per row; the lines left out counted on the last."""
    shown = [(line,) for line in plan[:PLAN_LINES_SHOWN]]
    if len(plan) > PLAN_LINES_SHOWN:
        shown.append((f"… {len(plan) - PLAN_LINES_SHOWN} more plan lines",))
    return tuple(shown)


def focus_plan(plan: list[str], focus: str | None) -> tuple[str, ...]:
    """The whole plan, or each node scanning the table `focus` with what is under it (its
    Filter or Index Cond, a bitmap's index scan), unindented."""
    if focus is None:
        return tuple(plan)
    node = re.compile(rf" on {re.escape(focus)}(\s|$)")
    shown: list[str] = []
    depth: int | None = None
    for line in plan:
        indent = len(line) - len(line.lstrip())
        if depth is not None and indent > depth:
            shown.append(line.replace("->", "").strip())
            continue
        depth = None
        if node.search(line):
            shown.append(line.replace("->", "").strip())
            depth = indent
    return tuple(shown) or tuple(plan)


def index_state(
    index: SuggestedIndex, rows: list[dict[str, Any]], plan: list[dict[str, Any]]
) -> IndexState:
    """`IndexState` from `index_state_sql`'s rows and the EXPLAIN's."""
    row = rows[0] if rows else None
    building = None
    if row is not None and row["present"] and not row["valid"] and row["phase"] is not None:
        total = int(row["blocks_total"] or 0)
        done = f", {100 * int(row['blocks_done'] or 0) // total}% of blocks" if total else ""
        building = f"{row['phase']}{done}"
    return IndexState(
        name=index.name,
        exists=bool(row and row["present"]),
        valid=bool(row and row["valid"]),
        plan=focus_plan([str(next(iter(r.values()))) for r in plan], index.plan_focus),
        building=building,
        table_rows=table_rows(row),
    )


async def fetch_index_state(backend: Backend, index: SuggestedIndex) -> IndexState:
    """The index's state (a build's progress with it) and the plan: two statements at once,
    on the primary (the replica's heavy reads never decide a write)."""
    rows, plan = await asyncio.gather(
        backend.read(index_state_sql(1, 2, 3), index.table, index.name, index.schema),
        backend.read("EXPLAIN " + index.explained),
    )
    return index_state(index, rows, plan)


async def fetch_held_index(backend: Backend) -> IndexState:
    return await fetch_index_state(backend, held_failures_index(backend))


async def fetch_statistics_index(backend: Backend) -> IndexState:
    return await fetch_index_state(backend, statistics_created_index(backend))


# Index builds started by IndexAction, by qualified index name (they outlive the dialog).
INDEX_BUILDS: dict[str, asyncio.Task[None]] = {}


async def _build(backend: Backend, index: SuggestedIndex, statements: tuple[str, ...]) -> None:
    connection = await backend.new_connection()
    try:
        driver = backend.new_driver(connection)
        await driver.execute("SET statement_timeout = 0")  # minutes on millions of rows
        for statement in statements:
            await driver.execute(statement)
        if index.built is not None:
            index.built(backend)
    except Exception as exc:
        log.warning("building %s failed: %s", index.qualified_name, exc)
        raise
    finally:
        close = getattr(connection, "close", None)
        if close is not None:
            await close()


@dataclass
class IndexAction(Action):
    """`CREATE INDEX CONCURRENTLY` of a `SuggestedIndex`, previewed with the plan it changes.

    CONCURRENTLY cannot run in a transaction, so it runs on a connection of its own (without
    the console's statement timeout: on 10M rows it takes minutes), started by `apply`; the
    framework's transaction carries the audit announcement. An INVALID index left by a failed
    attempt is dropped (concurrently) first. The plan after is what the Database screen shows.
    Refused on a standby (the target's own connection, not only `--read-only`).
    """

    backend: Backend | None = None
    before: IndexState | None = None
    index: SuggestedIndex | None = None
    build: asyncio.Task[None] | None = None  # started by `apply` (also in INDEX_BUILDS)

    def __post_init__(self) -> None:
        # An index, not rows: `apply` counts it, the audit names it (`audited`) without ids.
        self.changed_ids_are = ""

    @abstractmethod
    def describe(self, backend: Backend) -> SuggestedIndex:
        """The index, for this installation."""

    def statements(self) -> tuple[str, ...]:
        assert self.index is not None
        if self.before is not None and self.before.exists and not self.before.valid:
            return (self.index.drop, self.index.create)
        return (self.index.create,)

    async def preview(self, backend: Backend) -> ActionPreview:
        from pgq_console.core.errors import ConsoleError

        self.backend = backend
        self.index = index = self.describe(backend)
        [standby], self.before = await asyncio.gather(
            backend.read("SELECT pg_is_in_recovery() AS standby"),
            fetch_index_state(backend, index),
        )
        if standby["standby"]:
            raise ConsoleError(
                "the target is a standby (read-only): create the index on the primary"
            )
        before = self.before
        statements = () if before.usable else self.statements()
        notes = list(index.notes)
        if before.exists and not before.usable:
            notes.insert(0, f"{index.qualified_name} is INVALID (a failed build): dropped first")
        if before.table_rows is not None:
            notes.append(f"{index.table}: ~{before.table_rows:,} rows (the planner's estimate)")
        return ActionPreview(
            action=self.name,
            title=self.title,
            verb=self.verb,
            count=len(statements) and 1,
            matching=len(statements) and 1,
            ids=(),
            columns=(f"plan now of: {index.plan_of}",),
            sample=plan_sample(before.plan),
            sample_lines=True,
            statement=";\n".join(statements),
            statement_label="statement",  # no placeholders: nothing is bound to it
            predicate=f"{backend.installation.label}: index {index.qualified_name}",
            notes=tuple(notes),
            noun="index",
            nothing=f"{index.qualified_name} exists already" if before.usable else None,
        )

    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        """Start the build and return: CONCURRENTLY waits for every transaction older than
        it, this action's own (which carries the audit) included, so it cannot finish inside
        it. The build goes on aside on its own connection; the Database screen shows its
        progress, then the plan after. If the console quits first, the build is cancelled and
        leaves an INVALID index, which this action drops the next time."""
        assert self.backend is not None and self.index is not None
        key = self.index.qualified_name
        running = INDEX_BUILDS.get(key)
        if running is not None and not running.done():
            from pgq_console.core.errors import ConsoleError

            raise ConsoleError(f"{key} is being built already")
        self.build = INDEX_BUILDS[key] = asyncio.create_task(
            _build(self.backend, self.index, self.statements()), name=f"build {key}"
        )
        return (1,)  # one index (not an id: see `changed_ids_are`)

    def audited(self, record: AuditRecord) -> AuditRecord:
        assert self.index is not None
        index = self.index
        table = f"{index.schema}.{index.table}" if index.schema else index.table
        return replace(record, index=index.qualified_name, table=table)

    def predicate_description(self) -> str:
        return f"index {self.index.qualified_name if self.index else ''}"


@dataclass
class HeldIndexAction(IndexAction):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.name, self.title = "held-index", "Index held failures (status = 'failed')"
        self.verb = "create"

    def describe(self, backend: Backend) -> SuggestedIndex:
        return held_failures_index(backend)


@dataclass
class StatisticsIndexAction(IndexAction):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.name, self.title = "statistics-index", "Index the statistics table on created"
        self.verb = "create"

    def describe(self, backend: Backend) -> SuggestedIndex:
        return statistics_created_index(backend)
